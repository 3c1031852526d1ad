"""Training throughput and CPU inference speed of a model.

Usage: python benchmarks/bench_model.py [--model conv_bilstm_attn] [--threads 2] [--fs 100] [--batch-size 64]

Prints training ECGs/s (forward + backward + AdamW step, full 10 s records and 2.5 s crops),
batched inference ECGs/s (batch 256) and the latency of one ECG (median of 50 calls). The model,
threads, rate and training batch default to the typed training settings (``train.*``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from common.config import RunConfig, TrainConfig
    from common.config import flat as F
    from common.config import options as O

    options = [o for o in O.TRAIN_OPTIONS if o.flag in ("--model", "--threads", "--batch-size")]
    options.append(O.Option("--fs", ("train.target-fs",)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    O.add_options(p, RunConfig, options)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args(argv)
    cfg = F.parse(TrainConfig, {k.removeprefix("train."): v for k, v in O.given(args, options, "synthetic").items()})

    import torch

    from common.models import count_parameters, create_model

    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(0)
    model = create_model(cfg.model)
    n_t = 10 * cfg.target_fs
    batch = cfg.batch_size
    print(
        f"{cfg.model}: {count_parameters(model):,} parameters, {cfg.num_threads} threads, {cfg.target_fs} Hz, "
        f"10 s records, training batch {batch}"
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for label, length in (("train, full 10 s", n_t), ("train, 2.5 s crops", n_t // 4)):
        x, d, y = torch.randn(batch, 12, length), torch.randn(batch, 5), (torch.rand(batch) < 0.1).float()
        model.train()
        for step in range(args.steps + 2):
            if step == 2:  # two warm-up steps
                t0 = time.perf_counter()
            opt.zero_grad()
            loss_fn(model(x, d), y).backward()
            opt.step()
        dt = time.perf_counter() - t0
        print(f"  {label:<22} {batch * args.steps / dt:8.1f} ECG/s")
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
