"""Training throughput and CPU inference speed of a model (default conv_bilstm_attn).

Usage: python benchmarks/bench_model.py [--model conv_bilstm_attn] [--threads 2] [--fs 100]

Prints training ECGs/s (forward + backward + AdamW step, batch 64, full 10 s records and 2.5 s
crops), batched inference ECGs/s (batch 256) and the latency of one ECG (median of 50 calls).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="conv_bilstm_attn")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fs", type=int, default=100)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args(argv)

    import torch

    from common.models import count_parameters, create_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(args.model)
    n_t = 10 * args.fs
    print(f"{args.model}: {count_parameters(model):,} parameters, {args.threads} threads, {args.fs} Hz, 10 s records")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for label, length in (("train, full 10 s", n_t), ("train, 2.5 s crops", n_t // 4)):
        x, d, y = torch.randn(64, 12, length), torch.randn(64, 5), (torch.rand(64) < 0.1).float()
        model.train()
        for step in range(args.steps + 2):
            if step == 2:  # two warm-up steps
                t0 = time.perf_counter()
            opt.zero_grad()
            loss_fn(model(x, d), y).backward()
            opt.step()
        dt = time.perf_counter() - t0
        print(f"  {label:<22} {64 * args.steps / dt:8.1f} ECG/s")
    model.eval()
    with torch.no_grad():
        x, d = torch.randn(256, 12, n_t), torch.randn(256, 5)
        model(x, d)
        t0 = time.perf_counter()
        for _ in range(3):
            model(x, d)
        dt = time.perf_counter() - t0
        print(f"  {'inference, batch 256':<22} {3 * 256 / dt:8.1f} ECG/s")
        x1, d1 = x[:1], d[:1]
        times = []
        for _ in range(55):
            t0 = time.perf_counter()
            model(x1, d1)
            times.append(time.perf_counter() - t0)
        print(f"  {'inference, one ECG':<22} {1000 * statistics.median(times[5:]):8.2f} ms (median of 50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
