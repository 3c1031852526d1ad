"""Training throughput and CPU inference speed of a model, and what pays for inference.

Usage: python benchmarks/bench_model.py [--model NAME] [--threads 2] [--fs 100] [--batch-size 64] [--crop-s S]

Prints training ECGs/s (forward + backward + AdamW step, on whole 10 s records and on the training
crops), then inference on 10 s records scored as ``fedami predict`` scores them (the model card's
``crop_s``: half-overlapping windows averaged; or the whole record in one pass) for several variants
measured in this one run: ``torch.no_grad`` as the engine runs it, ``torch.inference_mode``, windows of
a batch stacked into one forward pass, batch sizes, ONNX Runtime as ``fedami predict`` runs it
(its default engine) and with int8 dynamic quantisation, and ONNX Runtime's own profile by operator.
Each figure is batched ECGs/s (the fastest of 3 passes) and the median latency of one ECG. ``--brief``
measures only what training and ``fedami predict`` run (both training rows; the whole record in torch and in
ONNX Runtime, at batch 256), for the suite's table of every model, which would otherwise take hours on 2 cores.
Model, threads, rate, batch and crop default to the typed training settings (``train.*``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


BATCHES = (64, 256, 1024)


def _rate(fn: Callable[[int], object], n: int, batch: int, repeats: int = 3) -> float:
    """ECGs/s of the fastest of ``repeats`` passes over ``n`` ECGs: a shared machine only ever slows a pass down."""
    fn(batch)  # warm-up
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n // batch):
            fn(batch)
        best = max(best, (n // batch) * batch / (time.perf_counter() - t0))
    return best


def _latency_ms(fn: Callable[[int], object], calls: int = 50) -> float:
    times = []
    for _ in range(calls + 5):
        t0 = time.perf_counter()
        fn(1)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times[5:])


def main(argv: list[str] | None = None) -> int:
    from common.config import RunConfig, TrainConfig
    from common.config import flat as F
    from common.config import options as O

    options = [o for o in O.TRAIN_OPTIONS if o.flag in ("--model", "--threads", "--batch-size", "--crop-s")]
    options.append(O.Option("--fs", ("train.target-fs",)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    O.add_options(p, RunConfig, options)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--ecgs", type=int, default=1024, help="ECGs per inference measurement")
    p.add_argument("--brief", action="store_true", help="inference as fedami predict runs it, at batch 256 only")
    args = p.parse_args(argv)
    cfg = F.parse(TrainConfig, {k.removeprefix("train."): v for k, v in O.given(args, options, "synthetic").items()})

    import torch

    from common.models import count_parameters, create_model
    from common.training.engine import window_starts

    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(0)
    model = create_model(cfg.model)
    n_t = 10 * cfg.target_fs
    crop = None if cfg.crop_s is None else round(cfg.crop_s * cfg.target_fs)
    starts = [0] if crop is None else window_starts(n_t, crop)
    length = n_t if crop is None else crop
    batch = cfg.batch_size
    print(
        f"{cfg.model}: {count_parameters(model):,} parameters, {cfg.num_threads} threads, {cfg.target_fs} Hz, "
        f"10 s records, training batch {batch}, training crops of {length} samples; fedami predict scores "
        + ("the whole record" if cfg.window_aggregate == "whole" or crop is None else f"{len(starts)} windows")
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for label, n in (("train, whole 10 s", n_t), (f"train, {length}-sample crops", length)):
        x, d, y = torch.randn(batch, 12, n), torch.randn(batch, 5), (torch.rand(batch) < 0.1).float()
        model.train()
        for step in range(args.steps + 2):
            if step == 2:  # two warm-up steps
                t0 = time.perf_counter()
            opt.zero_grad()
            loss_fn(model(x, d), y).backward()
            opt.step()
        print(f"  {label:<34} {batch * args.steps / (time.perf_counter() - t0):8.1f} ECG/s")

    model.eval()
    x, d = torch.randn(max(BATCHES), 12, n_t), torch.randn(max(BATCHES), 5)

    def windows_loop(b: int) -> object:  # what common.training.engine.predict does
        with torch.no_grad():
            return torch.stack([torch.sigmoid(model(x[:b, :, s : s + length], d[:b])) for s in starts]).mean(0)

    def windows_stacked(b: int) -> object:
        with torch.inference_mode():
            w = torch.stack([x[:b, :, s : s + length] for s in starts], 1).reshape(-1, 12, length)
            logits = model(w, d[:b].repeat_interleave(len(starts), 0))
            return torch.sigmoid(logits).reshape(b, len(starts)).mean(1)

    def whole(b: int) -> object:
        with torch.inference_mode():
            return torch.sigmoid(model(x[:b], d[:b]))

    variants: list[tuple[str, Callable[[int], object]]] = [
        ("torch no_grad, windows one by one", windows_loop),
        ("torch inference_mode, windows stacked", windows_stacked),
        ("torch inference_mode, whole record", whole),
    ]
    if args.brief:
        variants = [v for v in variants if v[1] is whole]
    from common.inference.runtime import RuntimeUnavailable

    try:
        variants += _onnx_variants(model, x, d, starts, length, cfg.num_threads, brief=args.brief)
    except RuntimeUnavailable as err:
        print(f"  (ONNX Runtime not measured: {err})")
    batches = (256,) if args.brief else BATCHES
    print(f"  {'inference':<42}" + "".join(f"{f'batch {b}':>11}" for b in batches) + f"{'one ECG':>10}")
    for label, fn in variants:
        rates = [_rate(fn, max(args.ecgs, 2 * b), b) for b in batches]
        print(f"  {label:<42}" + "".join(f"{r:9.0f}/s" for r in rates) + f"{_latency_ms(fn):7.2f} ms")
    return 0


def _onnx_variants(
    model: object, x: object, d: object, starts: list[int], length: int, threads: int, *, brief: bool = False
) -> list[tuple[str, Callable[[int], object]]]:
    """ONNX Runtime as ``fedami predict --engine onnx`` runs it (one export; any record length); ``brief``: the
    whole record only, without the int8 variant and the profile."""
    import torch

    from common.inference.runtime import OnnxRuntimeModel, session_feed

    assert isinstance(model, torch.nn.Module) and isinstance(x, torch.Tensor) and isinstance(d, torch.Tensor)
    ort_model = OnnxRuntimeModel(model, x.shape[-1], threads)

    def ort_windows(b: int) -> object:
        w = torch.stack([x[:b, :, s : s + length] for s in starts], 1).reshape(-1, 12, length)
        logits = ort_model(w, d[:b].repeat_interleave(len(starts), 0))
        return torch.sigmoid(logits).reshape(b, len(starts)).mean(1)

    def ort_whole(b: int) -> object:
        return torch.sigmoid(ort_model(x[:b], d[:b]))

    variants: list[tuple[str, Callable[[int], object]]] = [
        ("ONNX Runtime, windows stacked", ort_windows),
        ("ONNX Runtime, whole record", ort_whole),
    ]
    if brief:
        return [v for v in variants if v[1] is ort_whole]
    xn, dn = x.numpy(), d.numpy()
    int8 = _int8_session(ort_model.onnx, threads)
    variants.append(
        (
            "ONNX Runtime int8 (dynamic), whole record",
            lambda b: int8.run(None, session_feed(int8, x=xn[:b], demo=dn[:b])),
        )
    )
    _profile(ort_model.onnx, xn[:256], dn[:256], threads)
    return variants


def _int8_session(onnx: bytes, threads: int) -> Any:
    """The exported network with int8 dynamic quantisation (int8 weights, activations quantised on the fly)."""
    import logging
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from common.inference.runtime import cpu_session

    logging.getLogger().setLevel(logging.ERROR)  # the quantiser's advice on pre-processing floods the output
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "model.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(onnx)
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        return cpu_session(dst.read_bytes(), threads)


def _profile(onnx: bytes, x: Any, d: Any, threads: int, calls: int = 5) -> None:
    """Print where ONNX Runtime's time goes, by operator type, from its own profiler."""
    import collections
    import json
    import tempfile

    from common.inference.runtime import cpu_session, session_feed

    with tempfile.TemporaryDirectory() as tmp:
        session = cpu_session(onnx, threads, enable_profiling=True, profile_file_prefix=str(Path(tmp) / "ort"))
        for _ in range(calls):
            session.run(None, session_feed(session, x=x, demo=d))
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and "op_name" in e.get("args", {}):
            by_op[e["args"]["op_name"]] += e["dur"]
    total = sum(by_op.values()) or 1
    shares = ", ".join(f"{op} {100 * t / total:.0f} %" for op, t in by_op.most_common(6))
    print(f"  ONNX Runtime's time by operator (batch {len(x)}, whole record): {shares}")


if __name__ == "__main__":
    sys.exit(main())
