"""Paper scale on this machine: the study's cohort size, one federated round against one pooled epoch, memory, disk.

Usage: python benchmarks/bench_scale.py [--fraction 1.0] [--clients 3] [--curves] [--data-dir DIR] [--out DIR]
                                        [--plan-only] [--set KEY=VALUE ...]

The cohort is ``fedami run --preset paper`` (145,656 synthetic ECGs from about 96,800 patients, stored at
the training rate) times ``--fraction``, over ``--clients`` hospitals. Three timed steps, each a command
anyone can run alone, each sampled for memory (the resident and the proportional set size, PSS, summed
over the command's process tree every half second; PSS counts a page shared by k processes 1/k times,
so it adds up to what the job holds):

1. the plan (hospital sizes, patients, prevalence, disk) from the generator's own plan, no signal;
2. ``fedami ingest --preset paper ...``: generate the cohort and preprocess every split at 100 Hz;
3. ``fedami run --preset paper ... --rounds 2 --arms federated,pooled``: two federated rounds of one
   local epoch at every hospital, and two pooled epochs over the same training data, in the same run.
   The goal's figure is the second round against the second epoch: the round's time is the ServerApp's
   (``history.json``: every hospital's training pass, with the first round's validation, which Flower's
   exchange carries in the next round's messages), the epoch's the pooled arm's (its training pass and
   validation). A profile says where the round's time went: each hospital's reading, validation and
   training by its own clock, how long it waited for the slowest, and the rest. The first round also
   reads each hospital's data: it is set beside the first epoch plus the pooled arm's reading of the same
   data (neither with a validation). The arms' whole wall times, start-up included, are in ``scale.json``.

``--data-dir`` keeps the cohort for a later run (default: a temporary folder, deleted at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3


class TreeMemory:
    """Peak resident (RSS) and proportional (PSS) memory of a process and its descendants, sampled."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        self.root, self.every_s = psutil.Process(pid), every_s
        self.peak_rss = self.peak_pss = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = pss = 0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            for p in procs:
                try:
                    info = p.memory_full_info()
                except psutil.Error:  # ended between the listing and the reading
                    continue
                rss, pss = rss + info.rss, pss + info.pss
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_processes = max(self.peak_processes, len(procs))
            self._stop.wait(self.every_s)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(argv: list[str], log: Path) -> dict[str, Any]:
    """Run a command with its output in ``log``; its wall time, exit status and peak memory."""
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    print("$ " + " ".join(argv), flush=True)
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        with TreeMemory(proc.pid) as mem:
            rc = proc.wait()
    result = {
        "seconds": round(time.perf_counter() - t0, 1),
        "rc": rc,
        "peak_rss_gib": round(mem.peak_rss / GIB, 2),
        "peak_pss_gib": round(mem.peak_pss / GIB, 2),
        "peak_processes": mem.peak_processes,
    }
    if rc != 0:
        print(log.read_text()[-3000:], file=sys.stderr)
        raise SystemExit(f"command failed ({rc}); its output: {log}")
    return result


def disk_bytes(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.rglob(pattern) if p.is_file())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fraction", type=float, default=1.0, help="of the paper cohort's 145,656 ECGs")
    p.add_argument("--clients", type=int, default=3, help="hospitals")
    p.add_argument(
        "--curves",
        action="store_true",
        help=f"measure every point of the scale curves instead: {', '.join(f'{f:g}x/{c}' for f, c in CURVES)} "
        "(fraction of the cohort / hospitals)",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="keep the cohorts here (default: a temporary folder)")
    p.add_argument("--out", type=Path, default=None, help="keep the runs and the logs here (default: temporary)")
    p.add_argument("--plan-only", action="store_true", help="print the plan and stop")
    p.add_argument("--set", dest="set_", action="append", default=[], metavar="KEY=VALUE", help="passed to the run")
    return p


CURVES: tuple[tuple[float, int], ...] = ((1.0, 3), (0.5, 3), (0.25, 3), (0.25, 5), (0.25, 10))
"""The scale curves' points: the cohort at all, half and a quarter of the study's size over 3 hospitals, and
a quarter over 5 and 10 hospitals (a fixed total size). Each point is generated just before it runs, so its
files are in the page cache as in a run after ingest (the largest first: written later, the smaller cohorts
cannot push it out)."""


def plan_of(fraction: float, clients: int) -> tuple[list[str], Any, Any]:
    """The data options of one point, its cohort config and the generator's plan."""
    from common.config import RunConfig
    from common.config.sections import STUDY_ECGS
    from common.synthetic.cohort import cohort_plan
    from sim.cli import paths, settings
    from sim.run import OPTIONS
    from sim.run import build_parser as run_parser

    data_args = ["--preset", "paper", "--n-ecgs", str(round(STUDY_ECGS * fraction)), "--clients", str(clients)]
    run_args = run_parser().parse_args([*data_args, "--out", "unused"])
    cohort = settings(run_args, RunConfig, OPTIONS, **paths(run_args, "run")).data.cohort  # type: ignore[union-attr]
    return data_args, cohort, cohort_plan(cohort)


def print_plan(cohort: Any, plan: Any) -> None:
    device = plan["ecgs"] * 12 * round(cohort.duration_s) * plan["device_fs"] * 4
    print(
        plan.assign(store_gib=(plan["store_bytes"] / GIB).round(2)).drop(columns="store_bytes").to_string(index=False)
    )
    print(
        f"{plan['ecgs'].sum():,} ECGs, {plan['patients'].sum():,} patients, prevalence "
        f"{plan['prevalence'].min():.1%}-{plan['prevalence'].max():.1%}; signals on disk "
        f"{plan['store_bytes'].sum() / GIB:.1f} GiB stored at {cohort.store_fs} Hz "
        f"({device.sum() / GIB:.1f} GiB at the devices' rates)"
    )


def measure(
    data_args: list[str], cohort: Any, plan: Any, data_dir: Path, out: Path, extra: list[str]
) -> dict[str, Any]:
    """Ingest and one round of one point (module docstring)."""
    from common.synthetic.key import synthetic_cohort_dir

    out.mkdir(parents=True, exist_ok=True)
    folder = synthetic_cohort_dir(cohort, data_dir)
    cached = folder.is_dir()  # then ingest only checks it: no generation figure
    common = [*data_args, "--data-dir", str(data_dir)]
    fedami = [str(Path(sys.executable).with_name("fedami"))]
    ingest = timed([*fedami, "ingest", *common], out / "ingest.log")
    run_dir = out / "run"
    run = timed(
        [*fedami, "run", *common, "--rounds", "2", "--arms", "federated,pooled", "--out", str(run_dir), *extra],
        out / "run.log",
    )
    results = json.loads((run_dir / "results.json").read_text())
    fold = results["folds"][0]["fold"]
    fed_timing = json.loads((run_dir / fold / "federated" / "timing.json").read_text())
    first, second = json.loads((run_dir / fold / "federated" / "history.json").read_text())
    pooled = json.loads((run_dir / fold / "pooled" / "timing.json").read_text())
    arms = {a["arm"]: a for a in results["folds"][0]["arms"]}
    round_s = second["train_s"]
    epoch_1, epoch = pooled["epochs"]
    epoch_s = epoch["train_s"] + epoch["val_s"]
    return {
        "ecgs": int(plan["ecgs"].sum()), "hospitals": len(plan), "plan": plan.to_dict(orient="records"),
        "ingest": {**ingest, "cached": cached, "store_gib": round(disk_bytes(folder, "signals.npy") / GIB, 2),
                   "cache_gib": round(disk_bytes(folder, "cache/*.npy") / GIB, 2)},
        "run": run,
        "federated_round": {"round_s": round_s, "first_round_s": first["train_s"],
                            "last_validation_s": second["evaluate_s"],
                            "wait_for_hospitals_s": fed_timing["wait_for_hospitals_s"],
                            "test_round_s": fed_timing.get("test_round_s"), "arm_s": arms["federated"]["seconds"]},
        "pooled_epoch": {"train_s": epoch["train_s"], "val_s": epoch["val_s"], "epoch_s": epoch_s,
                         "first_train_s": epoch_1["train_s"], "load_s": pooled["load_s"],
                         "arm_s": arms["pooled"]["seconds"]},
        "round_over_epoch": round(round_s / epoch_s, 3),
        "profile": round_profile(second),
        "first_round_over_epoch": round(first["train_s"] / (epoch_1["train_s"] + pooled["load_s"]), 3),
    }  # fmt: skip


def round_profile(entry: dict[str, Any]) -> dict[str, Any]:
    """Where one round's time went: each hospital's handler by its own clock (``history.json``), and the rest.

    ``waited_s``: how long a hospital had finished before the slowest one; ``outside_s``: the round's time beyond
    the slowest handler (Flower's messages and process hops, the server's aggregation).
    """
    hospitals = {name: {k: v for k, v in t.items() if k.endswith("_s")} for name, t in entry["trained"].items()}
    slowest = max((t.get("handler_s", 0.0) for t in hospitals.values()), default=0.0)
    for t in hospitals.values():
        if "handler_s" in t:
            t["waited_s"] = round(slowest - t["handler_s"], 3)
    return {"round_s": entry["train_s"], "hospitals": hospitals, "outside_s": round(entry["train_s"] - slowest, 3)}


def print_profile(profile: dict[str, Any]) -> None:
    columns = ("read_s", "validate_s", "train_s", "handler_s", "waited_s")
    print(f"where the second round's {profile['round_s']:.1f} s went, by each hospital's clock:")
    print(f"{'hospital':<12}" + "".join(f"{c:>12}" for c in columns))
    for name, t in profile["hospitals"].items():
        print(f"{name:<12}" + "".join(f"{t[c]:>12.1f}" if c in t else f"{'n/a':>12}" for c in columns))
    print(f"beyond the slowest hospital's handler (messages, process hops, aggregation): {profile['outside_s']:.1f} s")


def summary_line(r: dict[str, Any]) -> str:
    f, e, i = r["federated_round"], r["pooled_epoch"], r["ingest"]
    ingest = f"{'cached':>8} {'':>8}" if i["cached"] else f"{i['seconds']:>8.0f} {i['peak_pss_gib']:>8.2f}"
    return (
        f"{r['ecgs']:>8,} {r['hospitals']:>4} {ingest} {i['store_gib'] + i['cache_gib']:>7.2f} "
        f"{f['round_s']:>8.1f} {e['epoch_s']:>8.1f} {r['round_over_epoch']:>6.2f} "
        f"{f['first_round_s']:>8.1f} {e['first_train_s'] + e['load_s']:>8.1f} {r['first_round_over_epoch']:>6.2f} "
        f"{r['run']['peak_pss_gib']:>8.2f} {r['run']['peak_rss_gib']:>8.2f}"
    )


HEADER = (
    f"{'ECGs':>8} {'hosp':>4} {'ingest s':>8} {'PSS GiB':>8} {'disk GiB':>7} {'round s':>8} {'epoch s':>8} "
    f"{'ratio':>6} {'round 1':>8} {'epoch 1':>8} {'ratio 1':>6} {'run PSS':>8} {'run RSS':>8}"
)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    points = CURVES if args.curves else ((args.fraction, args.clients),)
    plans = [plan_of(f, c) for f, c in points]
    for (_, cohort, plan), (f, c) in zip(plans, points, strict=True):
        print(f"\n{f:g}x the study's cohort over {c} hospitals:")
        print_plan(cohort, plan)
    if args.plan_only:
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="fedami-scale-"))
    data_dir = args.data_dir or scratch / "data"
    out = args.out or scratch / "out"
    extra = [a for s in args.set_ for a in ("--set", s)]
    reports = []
    try:
        for (data_args, cohort, plan), (f, c) in zip(plans, points, strict=True):
            print(f"\n{f:g}x over {c} hospitals", flush=True)
            reports.append(measure(data_args, cohort, plan, data_dir, out / f"{f:g}x-{c}", extra))
            print(HEADER + "\n" + summary_line(reports[-1]))
            print_profile(reports[-1]["profile"])
        report = {
            "command": "python benchmarks/bench_scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": {"cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / GIB, 1)},
            "points": reports,
        }
        out.mkdir(parents=True, exist_ok=True)
        (out / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
        print("\nround: the second federated round (training + the first round's validation, the ServerApp's clock);")
        print("epoch: the second pooled epoch (training + validation); ratio = round / epoch. round 1: the first round")
        print("(reading each hospital's data + training); epoch 1: the pooled arm's reading of the same data + its")
        print("first training pass; ratio 1 = their ratio. PSS and RSS: peaks summed over the process tree")
        print(HEADER)
        for r in reports:
            print(summary_line(r))
        for r in reports:
            print(f"\n{r['ecgs']:,} ECGs over {r['hospitals']} hospitals: ", end="")
            print_profile(r["profile"])
        if args.out is not None:
            print(f"report: {out / 'scale.json'}")
    finally:
        for given, folder in ((args.out, out), (args.data_dir, data_dir)):
            if given is None:  # only what this benchmark made up itself
                shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
