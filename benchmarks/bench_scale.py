"""Paper scale on this machine: the study's cohort size, one federated round against one pooled epoch, memory, disk.

Usage: python benchmarks/bench_scale.py [--fraction 1.0] [--clients 3] [--data-dir DIR] [--out DIR]
                                        [--plan-only] [--set KEY=VALUE ...]

The cohort is ``fedami run --preset paper`` (145,656 synthetic ECGs from about 96,800 patients, stored at
the training rate) times ``--fraction``, over ``--clients`` hospitals. Three timed steps, each a command
anyone can run alone, each sampled for memory (the resident and the proportional set size, PSS, summed
over the command's process tree every half second; PSS counts a page shared by k processes 1/k times,
so it adds up to what the job holds):

1. the plan (hospital sizes, patients, prevalence, disk) from the generator's own plan, no signal;
2. ``fedami ingest --preset paper ...``: generate the cohort and preprocess every split at 100 Hz;
3. ``fedami run --preset paper ... --rounds 1 --arms federated,pooled``: one federated round with one
   local epoch at every hospital, and one pooled epoch over the same training data, in the same run.
   The round's time is the ServerApp's (training and validation of the round, ``timing.json`` and
   ``history.json``), the epoch's the pooled arm's (its training pass and validation); their ratio is
   the goal's figure. The arms' whole wall times, start-up included, are printed beside them.

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
    p.add_argument("--data-dir", type=Path, default=None, help="keep the cohort here (default: a temporary folder)")
    p.add_argument("--out", type=Path, default=None, help="keep the run and the logs here (default: temporary)")
    p.add_argument("--plan-only", action="store_true", help="print the plan and stop")
    p.add_argument("--set", dest="set_", action="append", default=[], metavar="KEY=VALUE", help="passed to the run")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from common.config import RunConfig
    from common.config.sections import STUDY_ECGS
    from common.synthetic.cohort import cohort_plan
    from sim.cli import paths, settings
    from sim.run import OPTIONS
    from sim.run import build_parser as run_parser

    n_ecgs = round(STUDY_ECGS * args.fraction)
    data_args = ["--preset", "paper", "--n-ecgs", str(n_ecgs), "--clients", str(args.clients)]
    run_args = run_parser().parse_args([*data_args, "--out", "unused"])
    cohort = settings(run_args, RunConfig, OPTIONS, **paths(run_args, "run")).data.cohort  # type: ignore[union-attr]
    plan = cohort_plan(cohort)
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
    if args.plan_only:
        return 0

    scratch = Path(tempfile.mkdtemp(prefix="fedami-scale-"))
    data_dir = args.data_dir or scratch / "data"
    out = args.out or scratch / "out"
    out.mkdir(parents=True, exist_ok=True)
    common = [*data_args, "--data-dir", str(data_dir)]
    fedami = [str(Path(sys.executable).with_name("fedami"))]
    try:
        ingest = timed([*fedami, "ingest", *common], out / "ingest.log")
        run_dir = out / "run"
        extra = [a for s in args.set_ for a in ("--set", s)]
        run = timed(
            [*fedami, "run", *common, "--rounds", "1", "--arms", "federated,pooled", "--out", str(run_dir), *extra],
            out / "run.log",
        )
        fold = json.loads((run_dir / "results.json").read_text())["folds"][0]["fold"]
        fed_timing = json.loads((run_dir / fold / "federated" / "timing.json").read_text())
        (first,) = json.loads((run_dir / fold / "federated" / "history.json").read_text())
        pooled = json.loads((run_dir / fold / "pooled" / "timing.json").read_text())
        arms = {a["arm"]: a for a in json.loads((run_dir / "results.json").read_text())["folds"][0]["arms"]}
        round_s = first["train_s"] + first["evaluate_s"]
        (epoch,) = pooled["epochs"]
        epoch_s = epoch["train_s"] + epoch["val_s"]
        report = {
            "command": "python benchmarks/bench_scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": {"cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / GIB, 1)},
            "plan": plan.to_dict(orient="records"),
            "ingest": {**ingest, "store_gib": round(disk_bytes(data_dir, "signals.npy") / GIB, 2),
                       "cache_gib": round(disk_bytes(data_dir, "cache/*.npy") / GIB, 2)},
            "run": run,
            "federated_round": {"train_s": first["train_s"], "evaluate_s": first["evaluate_s"], "round_s": round_s,
                                "wait_for_hospitals_s": fed_timing["wait_for_hospitals_s"],
                                "test_round_s": fed_timing.get("test_round_s"), "arm_s": arms["federated"]["seconds"]},
            "pooled_epoch": {"train_s": epoch["train_s"], "val_s": epoch["val_s"], "epoch_s": epoch_s,
                             "load_s": pooled["load_s"], "arm_s": arms["pooled"]["seconds"]},
            "round_over_epoch": round(round_s / epoch_s, 3),
        }  # fmt: skip
        (out / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
        print(
            f"\ningest (generate + preprocess): {ingest['seconds']:.0f} s, peak PSS {ingest['peak_pss_gib']} GiB "
            f"(RSS {ingest['peak_rss_gib']}); store {report['ingest']['store_gib']} GiB + cache "
            f"{report['ingest']['cache_gib']} GiB\n"
            f"run (1 round, federated + pooled): {run['seconds']:.0f} s, peak PSS {run['peak_pss_gib']} GiB "
            f"(RSS {run['peak_rss_gib']}, {run['peak_processes']} processes)\n"
            f"federated round: train {first['train_s']:.1f} s + validation {first['evaluate_s']:.1f} s "
            f"= {round_s:.1f} s "
            f"(arm {arms['federated']['seconds']:.0f} s with start-up and test round)\n"
            f"pooled epoch:    train {epoch['train_s']:.1f} s + validation {epoch['val_s']:.1f} s = {epoch_s:.1f} s "
            f"(arm {arms['pooled']['seconds']:.0f} s with loading and test)\n"
            f"round / epoch: {report['round_over_epoch']:.2f}\nreport: {out / 'scale.json'}"
        )
    finally:
        for given, folder in ((args.out, out), (args.data_dir, data_dir)):
            if given is None:  # only what this benchmark made up itself
                shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
