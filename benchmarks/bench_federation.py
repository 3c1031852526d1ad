"""Federation overhead: federated wall time / pooled wall time at the same passes over the data.

Usage: python benchmarks/bench_federation.py [--clients 3] [--rounds 15] [--local-epochs 1] [--strategy fedavg]
       [--local-batch-size B] [--server-lr LR] [--server-momentum M] [--n-ecgs N] [--model conv_bilstm_attn]
       [--seeds 0 1 2] [--noise-floor] [--keep-cohorts] [--out DIR]
       python benchmarks/bench_federation.py --summary DIR [DIR ...]

Runs, in one process and on the same synthetic GAH fold, the federated arm (Flower simulation,
Ray backend, one CPU per hospital) for R rounds of E local epochs and the pooled arm for R x E
epochs, so both make the same number of passes over the training data. Both evaluate on the
validation split once per pass or round; the pooled time includes loading its data, as a client's
first round does; both read the splits preprocessed once, before either arm, from the stores'
caches. Prints both wall times, their ratio, and where the federated time went: Ray's start and
stop, the first round (client processes start, import torch and map their hospital's data), the
later rounds, and the final test round; the per-round ratio after round 1; and both arms' test
AUROC over all hospitals. With several ``--seeds`` (each seeds a new cohort, its splits and all
training) it repeats this per seed and ends with the mean, spread and a 95% CI of the mean of both
ratios: one test set's AUROC CI is wide, so one seed's federated/pooled AUROC ratio is a noisy
estimate. ``--noise-floor`` also trains the pooled arm a second time with another training seed
(same cohort, splits and passes) and prints pooled/pooled AUROC: how far two runs of the very
same method differ, the yardstick for reading one federated/pooled ratio.

Each seed's cohort takes about 0.8 GB on disk at the default size, so a cohort the benchmark
generated is deleted after its seed unless ``--keep-cohorts``; one that was already there is kept.

``--summary`` reads the ``--out`` folders of earlier runs instead (every finished ``seed-*`` in them;
they must share every setting but the seed) and prints the per-seed AUROCs and the same summary over
all of them, so seeds run in several invocations can be pooled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from common.config import RunConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
NOISE_FLOOR_SEED_OFFSET = 1000
"""The reseeded pooled run trains with ``seed + 1000`` (the cohort and splits keep ``seed``)."""


def _options() -> tuple[Any, ...]:
    """The run command's options this benchmark takes: their defaults are the typed settings'."""
    from common.config import options as O

    data = [o for o in O.DATA_OPTIONS if o.flag in ("--clients", "--n-ecgs", "--difficulty")]
    train = [o for o in O.TRAIN_OPTIONS if o.flag in ("--model", "--batch-size", "--lr")]
    return (*data, *train, *O.FEDERATED_OPTIONS)


def build_parser() -> argparse.ArgumentParser:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from common.config import RunConfig
    from common.config import options as O

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    O.add_options(p, RunConfig, _options())
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument(
        "--noise-floor", action="store_true", help="also retrain pooled with another training seed: pooled/pooled AUROC"
    )
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--keep-cohorts", action="store_true", help="keep the cohorts generated here (0.8 GB per seed)")
    p.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--summary", type=Path, nargs="+", default=None, help="summarise the --out folders of earlier runs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.summary is not None:
        rows = read_seed_runs(args.summary)
        print(seed_table(rows))
    else:
        os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
        rows = [bench_seed(args, seed) for seed in args.seeds]
    if len(rows) > 1:
        print(summary_over_seeds(rows))
    return 0


def summary_over_seeds(rows: Sequence[dict[str, float]]) -> str:
    """The mean, CI and range over seeds of each ratio, and each arm's mean AUROC."""
    lines = [f"over seeds {', '.join(str(int(r['seed'])) for r in rows)}:"]
    for name, key in (
        ("overhead, federated / pooled wall time", "wall"),
        ("test AUROC ratio, federated / pooled", "auroc"),
        ("noise floor, pooled / pooled (reseeded)", "noise"),
    ):
        values = [r[key] for r in rows if key in r]
        if len(values) > 1:
            lines.append(f"  {name:<40} {summarise_ratios(np.array(values))}")
    fed, pooled = (np.mean([r[arm] for r in rows]) for arm in ("federated", "pooled"))
    lines.append(f"  mean test AUROC: federated {fed:.3f}, pooled {pooled:.3f} (ratio of the means {fed / pooled:.3f})")
    for label, key in (("best (the round or epoch each arm keeps)", "val"), ("after the last pass", "last_val")):
        fed_val, pooled_val = (np.array([r[f"{key}_{arm}"] for r in rows]) for arm in ("federated", "pooled"))
        lines.append(
            f"  validation AUROC, {label}: federated {fed_val.mean():.3f}, pooled {pooled_val.mean():.3f}; "
            f"federated lower at {int((fed_val < pooled_val).sum())} of {len(rows)} seeds"
        )
    return "\n".join(lines)


def seed_table(rows: Sequence[dict[str, float]]) -> str:
    """One line per seed: both arms' test AUROC over all hospitals, their ratio (and the noise floor)."""
    lines = ["seed  federated  pooled  fed/pooled  pooled again  pooled/pooled  wall ratio"]
    for r in rows:
        again = f"{r['pooled_again']:12.3f}  {r['noise']:13.3f}" if "noise" in r else f"{'-':>12}  {'-':>13}"
        arms = f"{r['federated']:9.3f}  {r['pooled']:6.3f}  {r['auroc']:10.3f}"
        lines.append(f"{int(r['seed']):4d}  {arms}  {again}  {r['wall']:10.2f}")
    return "\n".join(lines)


def read_seed_runs(folders: Sequence[Path]) -> list[dict[str, float]]:
    """Every finished seed under ``folders`` (their ``seed-*/results.json``), in seed order.

    An unfinished seed (no ``results.json`` yet) is skipped with a message. Seeds run with different
    settings, or the same seed twice, are an error: their ratios would not estimate one quantity.
    """
    rows: dict[int, dict[str, float]] = {}
    settings: dict[str, list[str]] = {}
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"no benchmark output folder {folder}")
        for run in sorted(folder.glob("seed-*")):
            results = run / "results.json"
            if not results.is_file():
                print(f"skipped {run}: no results.json (an unfinished seed)")
                continue
            res = json.loads(results.read_text())
            seed = int(res["config"]["data"]["cohort"]["seed"])
            if seed in rows:
                raise ValueError(f"seed {seed} appears twice (again in {run}): summarise each seed once")
            settings.setdefault(_setting(res["config"]), []).append(str(run))
            again = run / "noise-floor" / "results.json"
            pooled_again = all_sites_auroc(json.loads(again.read_text()))["pooled"] if again.is_file() else None
            rows[seed] = seed_row(res, pooled_again)
    if len(settings) > 1:
        groups = "; ".join(f"{runs[0]} and {len(runs) - 1} more" for runs in settings.values())
        raise ValueError(f"these runs differ in more than the seed, so they cannot be pooled: {groups}")
    if not rows:
        raise FileNotFoundError(f"no finished seed-*/results.json under {', '.join(map(str, folders))}")
    return [rows[s] for s in sorted(rows)]


def _setting(config: dict[str, Any]) -> str:
    """A run's configuration without what differs between seeds of one benchmark."""
    reduced = {
        **config,
        "data": {**config["data"], "cohort": {**config["data"]["cohort"], "seed": None}},
        "train": {**config["train"], "seed": None},
        "data_dir": None,
        "out_dir": None,
    }
    return json.dumps(reduced, sort_keys=True)


def summarise_ratios(values: np.ndarray) -> str:
    """Mean, sd, the t-based 95% CI of the mean, and the range of per-seed ratios."""
    from scipy import stats

    mean, sd = values.mean(), values.std(ddof=1)
    half = stats.t.ppf(0.975, len(values) - 1) * sd / np.sqrt(len(values))
    return (
        f"mean {mean:.3f} [95% CI {mean - half:.3f}-{mean + half:.3f}], sd {sd:.3f} "
        f"(min {values.min():.3f}, max {values.max():.3f}, {len(values)} seeds)"
    )


def bench_config(args: argparse.Namespace, seed: int, data_dir: Path, out: Path) -> RunConfig:
    """The benchmark's run: the GAH fold, federated and pooled arms, ``seed`` seeding cohort and training."""
    from common.config import RunConfig
    from common.config import options as O

    given = {**O.given(args, _options(), "synthetic"), "data.cohort.seed": seed, "train.seed": seed}
    given.update({"arms": "federated,pooled", "n-boot": 10})  # scoring is outside both timings; keep it short
    cfg: RunConfig = O.build(RunConfig, "synthetic", given, data_dir=data_dir, out_dir=out)
    return cfg


def bench_seed(args: argparse.Namespace, seed: int) -> dict[str, float]:
    """One seed's runs and their printout; returns its :func:`seed_row`."""
    from common.config.paths import default_data_dir
    from common.data.sources import prepare, warm_splits
    from common.experiments.comparison import run_comparison
    from common.synthetic.key import synthetic_cohort_dir
    from sim.simulation import run_federation

    data_dir = (args.data_dir or default_data_dir()).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        out = (args.out / f"seed-{seed}" if args.out else Path(tmp)).resolve()
        cfg = bench_config(args, seed, data_dir, out)
        assert cfg.data.kind == "synthetic"
        with generated_cohort(synthetic_cohort_dir(cfg.data.cohort, data_dir), keep=args.keep_cohorts):
            prepared = prepare(cfg.data, cfg.data_dir)
            # Both arms then map the same cached preprocessed splits, so neither pays for preprocessing.
            t0 = time.perf_counter()
            warm_splits(prepared.stores, cfg.train.target_fs)
            warm_s = time.perf_counter() - t0
            res = run_comparison(cfg, prepared, run_federation, echo=lambda _: None).to_dict()
            fed_dir = out / "gah" / "federated"
            server = json.loads((fed_dir / "timing.json").read_text())
            history = json.loads((fed_dir / "history.json").read_text())
            reseeded = None
            if args.noise_floor:
                again = noise_floor_config(cfg)
                reseeded = all_sites_auroc(run_comparison(again, prepared, None, echo=lambda _: None).to_dict())[
                    "pooled"
                ]

    f = cfg.federated
    arms = {a["arm"]: a for a in res["folds"][0]["arms"]}
    fed, pooled, passes = arms["federated"]["seconds"], arms["pooled"]["seconds"], f.passes
    n_train = history[0]["train_examples"]
    rounds = [h["train_s"] + h["evaluate_s"] for h in history]
    later = rounds[1:]
    print(
        f"seed {seed}, {len(arms['pooled']['trained_with']['hospitals'])} hospitals, {n_train} training ECGs, "
        f"{cfg.train.model}: {f.strategy} {f.rounds} rounds x {f.local_epochs} local epoch(s) vs pooled {passes} epochs"
    )
    print(f"  preprocessing every split into the stores' caches (before both arms)  {warm_s:.1f} s")
    print(f"  pooled (load data, train, validate each epoch)   {pooled:8.1f} s  ({pooled / passes:.1f} s per epoch)")
    print(f"  federated                                        {fed:8.1f} s")
    parts = [
        ("Ray start and stop, outside the ServerApp", fed - server["server_app_s"]),
        ("hospitals connecting", server["wait_for_hospitals_s"]),
        ("round 1 (clients start, load data, train, validate)", rounds[0]),
        (f"rounds 2-{len(rounds)}" if later else "later rounds", sum(later)),
        ("final test round", server["test_round_s"]),
    ]
    for name, seconds in parts:
        print(f"    {name:<52} {seconds:8.1f} s")
    print(f"  overhead: federated / pooled wall time           {fed / pooled:8.2f}")
    if later:
        per_round = sum(later) / len(later)
        pooled_per_round = pooled / f.rounds
        print(
            f"  after round 1: {per_round:.1f} s per round vs {pooled_per_round:.1f} s pooled per "
            f"{f.local_epochs} epoch(s): {per_round / pooled_per_round:.2f}"
        )
        fixed = fed - per_round * f.rounds
        print(f"  fixed federated cost (Ray, client start-up, test round): {fixed:.1f} s")
    auroc = all_sites_auroc(res)
    print(
        f"  test AUROC, all hospitals: federated {auroc['federated']:.3f}, pooled {auroc['pooled']:.3f} "
        f"(ratio {auroc['federated'] / auroc['pooled']:.3f})"
    )
    row = seed_row(res, reseeded)
    if reseeded is not None:
        print(
            f"  noise floor: pooled again with training seed {seed + NOISE_FLOOR_SEED_OFFSET}: {reseeded:.3f} "
            f"(pooled / pooled {row['noise']:.3f})"
        )
    return row


@contextmanager
def generated_cohort(cohort_dir: Path, *, keep: bool) -> Iterator[None]:
    """Delete ``cohort_dir`` on exit if it did not exist on entry (a benchmark of many seeds fills the disk)."""
    existed = cohort_dir.exists()
    try:
        yield
    finally:
        if not existed and not keep and cohort_dir.exists():
            shutil.rmtree(cohort_dir)


def noise_floor_config(cfg: RunConfig) -> RunConfig:
    """The pooled arm once more, on the same cohort and splits, with another training seed."""
    return cfg.model_copy(
        update={
            "train": cfg.train.model_copy(update={"seed": cfg.train.seed + NOISE_FLOOR_SEED_OFFSET}),
            "arms": ("pooled",),
            "out_dir": cfg.out_dir / "noise-floor",
        }
    )


def seed_row(results: dict[str, Any], pooled_again: float | None) -> dict[str, float]:
    """One seed's summary row from its ``run_comparison`` results (and the reseeded pooled AUROC, if run)."""
    auroc = all_sites_auroc(results)
    row = {
        "seed": float(results["config"]["data"]["cohort"]["seed"]),
        **auroc,
        **val_auroc(results),
        "auroc": auroc["federated"] / auroc["pooled"],
        "wall": results["federation_overhead"]["ratio"],
    }
    if pooled_again is not None:
        row["pooled_again"] = pooled_again
        row["noise"] = pooled_again / auroc["pooled"]
    return row


def val_auroc(results: dict[str, Any]) -> dict[str, float]:
    """Each arm's validation AUROC over all training hospitals (GAH), best and after the last pass.

    The best one picks the model an arm keeps; as the maximum of a noisy curve it flatters the arm whose
    curve is noisier, which the last pass does not.
    """
    arms = {a["arm"]: a for a in results["folds"][0]["arms"]}
    fed, pooled = ([p["val_auroc"] for p in arms[arm]["curve"]] for arm in ("federated", "pooled"))
    return {
        "val_federated": max(fed),
        "val_pooled": max(pooled),
        "last_val_federated": fed[-1],
        "last_val_pooled": pooled[-1],
    }


def all_sites_auroc(results: dict[str, Any]) -> dict[str, float]:
    """Each arm's test AUROC over all hospitals from ``run_comparison``'s results."""
    from common.experiments.comparison import ALL_SITES

    return {s["arm"]: s["auroc"] for s in results["scores"] if s["test_site"] == ALL_SITES}


if __name__ == "__main__":
    sys.exit(main())
