"""Bytes a hospital sends and receives per federated round, and what update compression costs in AUROC.

Usage: python benchmarks/bench_communication.py [--models NAME[,NAME...]]
       python benchmarks/bench_communication.py --auroc [--seeds 0 1 2] [--n-ecgs N] [--rounds R] [--model M]

A round sends each hospital the global weights once (the train message, in which it also validates them:
they are the previous round's model) and takes its update back once, beside small configs, metrics and the
validation histograms; the run adds one validation message for the last round's model and the test round
(``benchmarks/bench_test_reply.py`` sizes its reply). The table builds the weights' records as the handlers
build them (``ArrayRecord``) and prints their size as Flower serialises them (protobuf), per message and per
round and hospital (down: 1 x, up: 1 x), and the upload as ``federated.update-compression`` sends it
(``common.federation.compression``): float16, or 8-bit codes with a float32 range per tensor.

``--auroc`` trains the federated arm of the main job (synthetic GAH fold, every other setting the typed
default's) once per training seed and compression, on one cohort, and prints each run's test AUROC over all
hospitals with its CI, and per compression the mean over seeds and the mean and range of its difference from
the uncompressed run of the same seed: what compression costs, against how much a training seed moves it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def record_bytes(state: dict[str, object]) -> int:
    """Size of ``{"arrays": ArrayRecord(state)}`` as Flower serialises a message's content."""
    from flwr.common import Array, ArrayRecord, RecordDict
    from flwr.common.serde import recorddict_to_proto

    from common.federation import protocol as P

    arrays = ArrayRecord({k: Array(v) for k, v in state.items()})  # type: ignore[arg-type]
    return int(recorddict_to_proto(RecordDict({P.ARRAYS: arrays})).ByteSize())


def upload(state: dict[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
    """What a hospital sends for ``state`` under ``method``: the real encoder, here of a non-zero update."""
    from common.federation import compression as C

    rng = np.random.default_rng(0)
    sent = {k: v - rng.normal(0, 1e-3, v.shape).astype(v.dtype) if v.dtype.kind == "f" else v for k, v in state.items()}
    return C.encode(state, sent, method)


def size_table(names: list[str]) -> None:
    from common.models import count_parameters, create_model

    print(f"{'model':<26}{'parameters':>12}{'weights MB':>12}{'round MB':>10}{'float16 MB':>12}{'8-bit MB':>10}")
    for name in names:
        model = create_model(name)
        state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        full = record_bytes(state)
        half, q8 = (record_bytes(upload(state, m)) for m in ("float16", "int8"))
        print(
            f"{name:<26}{count_parameters(model):>12,}{full / 1e6:>12.3f}{2 * full / 1e6:>10.3f}"
            f"{half / 1e6:>12.3f}{q8 / 1e6:>10.3f}"
        )
    print(
        "weights: one message's weights (float32); round: per hospital and round (1 x down, 1 x up) without "
        "compression;\nfloat16, 8-bit: one upload under federated.update-compression float16 / int8"
    )


def auroc_cost(args: argparse.Namespace) -> None:
    """The federated arm once per (training seed, compression) on one cohort: test AUROC and its change."""
    import tempfile

    from common.config import RunConfig
    from common.config import options as O
    from common.config.paths import default_data_dir
    from common.data.sources import prepare, warm_splits
    from common.experiments.comparison import ALL_SITES, run_comparison
    from common.federation.compression import METHODS
    from sim.simulation import run_federation

    data_dir = (args.data_dir or default_data_dir()).resolve()
    given = O.given(args, _options(), "synthetic")
    aurocs: dict[str, dict[int, float]] = {m: {} for m in METHODS}
    print(f"{'seed':>4}  {'compression':<12}{'test AUROC [95% CI]':>26}{'seconds':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = O.build(RunConfig, "synthetic", given, data_dir=data_dir, out_dir=Path(tmp))
        prepared = prepare(cfg.data, cfg.data_dir)  # one cohort for every run: only training seeds and encodings vary
        warm_splits(prepared.stores, cfg.train.target_fs)
        for seed in args.seeds:
            for method in METHODS:
                run = {**given, "train.seed": seed, "federated.update-compression": method, "arms": "federated"}
                cfg = O.build(RunConfig, "synthetic", run, data_dir=data_dir, out_dir=Path(tmp) / f"{seed}-{method}")
                t0 = time.perf_counter()
                res = run_comparison(cfg, prepared, run_federation, echo=lambda _: None).to_dict()
                (s,) = (s for s in res["scores"] if s["test_site"] == ALL_SITES and s["arm"] == "federated")
                aurocs[method][seed] = s["auroc"]
                ci = f"{s['auroc']:.3f} [{s['auroc_lo']:.3f}-{s['auroc_hi']:.3f}]"
                print(f"{seed:>4}  {method:<12}{ci:>26}{time.perf_counter() - t0:>9.1f}", flush=True)
    f = cfg.federated
    print(
        f"{cfg.train.model}, {f.strategy}, {f.rounds} rounds, {cfg.data.cohort.n_ecgs} ECGs (cohort seed "
        f"{cfg.data.cohort.seed}), training seeds {', '.join(map(str, args.seeds))}:"
    )
    base = aurocs["none"]
    for method in METHODS:
        mean = np.mean(list(aurocs[method].values()))
        line = f"  {method:<8} mean test AUROC {mean:.3f}"
        if method != "none":
            d = np.array([aurocs[method][s] - base[s] for s in args.seeds])
            line += f"; minus none, same seed: mean {d.mean():+.4f} (min {d.min():+.4f}, max {d.max():+.4f})"
        print(line)
    if len(args.seeds) > 1:
        spread = np.array(list(base.values()))
        print(f"  seed-to-seed range without compression: {spread.max() - spread.min():.4f}")


def _options() -> tuple[Any, ...]:
    from common.config import options as O

    data = [o for o in O.DATA_OPTIONS if o.flag == "--n-ecgs"]
    train = [o for o in O.TRAIN_OPTIONS if o.flag == "--model"]
    return (*data, *train, *[o for o in O.FEDERATED_OPTIONS if o.flag in ("--rounds", "--strategy")])


def main(argv: list[str] | None = None) -> int:
    from common.config import RunConfig
    from common.config import options as O
    from common.models import list_models

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=None, help="comma-separated (default: every registered model)")
    p.add_argument("--auroc", action="store_true", help="measure what update compression costs in test AUROC")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="--auroc: training seeds")
    p.add_argument("--data-dir", type=Path, default=None)
    O.add_options(p, RunConfig, _options())
    args = p.parse_args(argv)
    if args.auroc:
        os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
        auroc_cost(args)
    else:
        size_table(args.models.split(",") if args.models else list(list_models()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
