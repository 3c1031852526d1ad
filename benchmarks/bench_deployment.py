"""The cost of a deployed run: real SuperLink and SuperNode processes against the simulation, same run.

Usage: python benchmarks/bench_deployment.py [--n-ecgs 600 | --preset paper] [--rounds 2] [--model NAME] [--insecure]
    [--worker] [--out DIR]

In one invocation, on one prepared synthetic cohort of ``--hospitals`` hospitals (3) and the same run settings, it runs
the ServerApp twice: in Flower's simulation (Ray, ``sim/simulation.py``) and deployed on loopback (a
``flower-superlink`` with TLS and SuperNode authentication, one ``flower-supernode`` per hospital, the run
submitted as ``fedami deploy run`` submits it). It prints both wall times as the ServerApp measures them
(``timing.json``: the rounds, the final test round, the whole app), their ratio, the mean time a round took beyond
its slowest hospital's handler (``history.json``: Flower's messages and process hops, the aggregation), both runs'
test AUROC, and,
for the deployed run, the peak resident memory of the SuperLink (with its ServerApp), of each SuperNode's
processes together, and of one ClientApp process, sampled every 0.25 s, with the number of ClientApp
processes started (Flower starts one per message) and how long each lived; with ``--worker`` also the seconds the
workers took per message (their logs). ``--out`` keeps both runs and writes ``deployment.json``.

On one machine every hospital trains at once in the deployment, one thread each, while the simulation runs
as many hospitals at a time as there are cores (``sim.simulation.ray_cpus``): with more hospitals than cores
the deployed rounds also pay for time-slicing, which hospitals on machines of their own do not;
``--hospitals`` equal to the cores compares the two at the same concurrency.

``--preset paper`` measures at the clinical study's size (``fedami ingest --preset paper``: 145,656 ECGs, stored
at the training rate), where a round's training, not Flower's cost per message, takes most of the time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_S = 0.25
DEFAULT_ECGS = 600
WORKER_TIME = re.compile(r"message replied in ([0-9.]+) s")  # client/worker.py's log line per message
# what a process is, by the words of its command line (the first that matches)
KINDS = (
    ("deploy worker", "worker"),
    ("flwr-clientapp", "ClientApp"),
    ("flwr-serverapp", "ServerApp"),
    ("superexec", "SuperExec"),
    ("flower-supernode", "SuperNode"),
    ("flower-superlink", "SuperLink"),
)


def kind_of(cmdline: list[str]) -> str:
    text = " ".join(cmdline)
    return next((kind for word, kind in KINDS if word in text), "other")


class MemorySampler(threading.Thread):
    """Peak resident memory of process trees, by tree (the sum of its processes) and by kind of process, and
    the CPU seconds each process had used when last seen (a lower bound: up to one sampling interval of a
    process that ends is missed)."""

    def __init__(self, roots: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.tree_peak: dict[str, int] = defaultdict(int)
        self.kind_peak: dict[str, int] = defaultdict(int)
        self.started: dict[str, set[int]] = defaultdict(set)
        self.seen: dict[int, list[float]] = {}  # a ClientApp process's start and the last time it was seen
        self.cpu: dict[int, tuple[str, float]] = {}  # a process's kind and its CPU seconds when last seen
        self.halt = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.halt.wait(SAMPLE_S):
            for name, pid in self.roots.items():
                try:
                    root = psutil.Process(pid)
                    procs = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                total = 0
                for proc in procs:
                    try:
                        rss, kind, cpu = proc.memory_info().rss, kind_of(proc.cmdline()), proc.cpu_times()
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
                    self.cpu[proc.pid] = (kind, cpu.user + cpu.system)
                    total += rss
                    self.kind_peak[kind] = max(self.kind_peak[kind], rss)
                    self.started[kind].add(proc.pid)
                    if kind == "ClientApp":
                        self.seen.setdefault(proc.pid, [proc.create_time(), 0.0])[1] = time.time()
                self.tree_peak[name] = max(self.tree_peak[name], total)

    def cpu_by_kind(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for kind, seconds in self.cpu.values():
            out[kind] += seconds
        return dict(out)


def cohort_settings(args: argparse.Namespace) -> dict[str, object]:
    """The cohort's settings as the Flower app names them (``cohort.*``): ``--preset``'s, then the options."""
    from common.config.options import preset

    prefix = "data."  # a preset names the run's keys (data.cohort.n-ecgs); the app's are cohort.n-ecgs
    settings: dict[str, object] = {k.removeprefix(prefix): v for k, v in preset(args).items()}
    if args.n_ecgs is not None or not settings:
        settings["cohort.n-ecgs"] = args.n_ecgs or DEFAULT_ECGS
    return {**settings, "cohort.n-sites": args.hospitals, "cohort.seed": args.seed}


def hospitals(args: argparse.Namespace) -> tuple[str, ...]:
    from common.config import CohortConfig

    return CohortConfig(n_sites=args.hospitals).site_names()


def read_through(folder: Path, chunk: int = 2**23) -> int:
    """Read every file under ``folder`` once (into the page cache, as far as memory holds it); the bytes read."""
    total = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with path.open("rb", buffering=0) as f:
            while block := f.read(chunk):
                total += len(block)
    return total


def run_settings(args: argparse.Namespace) -> dict[str, object]:
    return {
        **cohort_settings(args),
        "federated.rounds": args.rounds,
        "train.model": args.model,
        "data.hospitals": ",".join(hospitals(args)),
    }


def ingest_args(args: argparse.Namespace) -> list[str]:
    """``fedami ingest`` preparing the cohort of :func:`cohort_settings`."""
    flags = {"cohort.n-ecgs": "--n-ecgs", "cohort.n-sites": "--clients", "cohort.seed": "--seed"}
    out = ["ingest", "--data", "synthetic"] + (["--preset", args.preset] if args.preset else [])
    for key, value in cohort_settings(args).items():
        out += [flags[key], str(value)] if key in flags else []
    return out


def simulated(args: argparse.Namespace, data_dir: Path, out: Path) -> dict[str, Any]:
    from common.config import AppConfig
    from common.config import flat as F
    from sim.simulation import run_federation

    config = F.flatten(F.parse(AppConfig, {**run_settings(args), "data.dir": str(data_dir), "output.dir": str(out)}))
    t0 = time.perf_counter()
    run_federation(config, args.hospitals)
    return {"wall_s": time.perf_counter() - t0, **read_run(out)}


def deployed(args: argparse.Namespace, root: Path, stores: Path, out: Path) -> dict[str, Any]:
    from sim.deploy import make_keys
    from tests.deployment import Deployment

    names = hospitals(args)
    make_keys(list(names), [], root / "secrets")
    dep = Deployment(root / "run", root / "secrets", stores, tls=not args.insecure, auth=not args.insecure)
    (root / "run").mkdir()
    try:
        dep.start_superlink()
        if not args.insecure:
            dep.register(list(names))
        for h in names:
            dep.start_node(h, h, worker=dep.start_worker(h) if args.worker else None)
        sampler = MemorySampler({name: proc.pid for name, proc in dep.procs.items()})
        sampler.start()
        t0 = time.perf_counter()
        run_id = dep.submit({**run_settings(args), "output.dir": str(out), "federated.hospital-wait-s": 120.0})
        status = dep.wait_finished(run_id, timeout=3600)
        wall = time.perf_counter() - t0
        sampler.halt.set()
        sampler.join()
    finally:
        dep.close()
    worker_s = [float(t) for h in names if args.worker for t in WORKER_TIME.findall(dep.log(f"{h}-worker"))]
    if status != "finished:completed":
        raise RuntimeError(f"the deployed run ended {status}: logs in {root / 'run'}")
    memory = {
        "superlink_mib": sampler.tree_peak["superlink"] / 2**20,
        # with a worker, a hospital's figure adds the worker's peak to its SuperNode tree's (an upper bound)
        "supernode_mib": {h: (sampler.tree_peak[h] + sampler.tree_peak[f"{h}-worker"]) / 2**20 for h in names},
        "process_mib": {k: v / 2**20 for k, v in sampler.kind_peak.items()},
        "clientapp_processes": len(sampler.started["ClientApp"]),
        "clientapp_lifetimes_s": sorted(round(last - first, 1) for first, last in sampler.seen.values()),
        "cpu_s": sampler.cpu_by_kind(),
    }
    return {"wall_s": wall, **read_run(out), "memory": memory, "worker_message_s": worker_s}


def read_run(out: Path) -> dict[str, Any]:
    """The run's timings and test AUROC, and each round's time beyond its slowest hospital's handler."""
    from benchmarks.bench_scale import round_profile

    timing = json.loads((out / "timing.json").read_text())
    test = json.loads((out / "test.json").read_text())
    history = json.loads((out / "history.json").read_text())
    outside = [round_profile(entry)["outside_s"] for entry in history]
    return {"timing": timing, "test_auroc": test["all"]["auroc"], "round_outside_handlers_s": outside}


def report(sim: dict[str, Any], dep: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"{run_settings(args)['cohort.n-ecgs']} ECGs{f' (--preset {args.preset})' if args.preset else ''}, "
        f"{args.hospitals} hospitals, {args.rounds} rounds, {args.model}; deployed with "
        f"{'no TLS' if args.insecure else 'TLS and SuperNode authentication'}"
        f"{', a warm worker per hospital' if args.worker else ''}",
        f"{'':<28}{'simulated':>11}{'deployed':>11}{'ratio':>8}",
    ]
    for label, key in (
        ("rounds (s)", "rounds_s"),
        ("final test round (s)", "test_round_s"),
        ("ServerApp (s)", "server_app_s"),
    ):
        s, d = sim["timing"][key], dep["timing"][key]
        lines.append(f"{label:<28}{s:>11.1f}{d:>11.1f}{d / s:>8.2f}")
    s, d = (sum(r["round_outside_handlers_s"]) / len(r["round_outside_handlers_s"]) for r in (sim, dep))
    lines.append(f"{'a round beyond handlers (s)':<28}{s:>11.1f}{d:>11.1f}{'':>8}  (mean; Flower's hops, aggregation)")
    s, d = sim["wall_s"], dep["wall_s"]
    lines.append(f"{'submitted to finished (s)':<28}{s:>11.1f}{d:>11.1f}{d / s:>8.2f}")
    lines.append(f"{'test AUROC':<28}{sim['test_auroc']:>11.3f}{dep['test_auroc']:>11.3f}")
    mem = dep["memory"]
    lines.append("deployed peak resident memory (MiB):")
    lines.append(f"  SuperLink with its ServerApp {mem['superlink_mib']:.0f}")
    for h, mib in mem["supernode_mib"].items():
        lines.append(f"  {h}: all its processes      {mib:.0f}")
    for kind, mib in sorted(mem["process_mib"].items()):
        if kind == "other" or mib == 0:
            continue
        lines.append(f"  one {kind} process{'':<{14 - len(kind)}}{mib:.0f}")
    lives = mem["clientapp_lifetimes_s"]
    lines.append(f"  ClientApp processes started: {mem['clientapp_processes']}")
    if lives:
        lines.append(f"  ClientApp process lifetime (s, to {SAMPLE_S} s): {min(lives):.1f}-{max(lives):.1f}")
    if answered := dep["worker_message_s"]:
        span = f"{min(answered):.2f}-{max(answered):.2f}"
        lines.append(f"  worker, seconds per message: {span} ({len(answered)} messages)")
    cpu = mem["cpu_s"]
    lines.append(f"deployed CPU seconds by kind of process, all processes of a kind together (at least; the cores "
                 f"gave {os.cpu_count()} x {dep['wall_s']:.1f} s):")  # fmt: skip
    lines += [f"  {kind:<12}{seconds:>8.1f}" for kind, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]) if seconds]
    lines.append(f"  {'all':<12}{sum(cpu.values()):>8.1f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from common.config import TrainConfig
    from common.config.options import add_preset_option

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-ecgs", type=int, default=None, help=f"synthetic ECGs (default {DEFAULT_ECGS}, or the preset's)")
    add_preset_option(p)
    p.add_argument("--hospitals", type=int, default=3, help="synthetic hospitals, one SuperNode each (default 3)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=TrainConfig.model_fields["model"].default, help="default: train.model")
    p.add_argument("--insecure", action="store_true", help="deploy without TLS and authentication")
    p.add_argument("--worker", action="store_true", help="each hospital runs its warm worker (client/worker.py)")
    p.add_argument("--out", type=Path, default=None, help="keep both runs here (default: a temporary folder)")
    return p


def main(argv: list[str] | None = None) -> int:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    args = build_parser().parse_args(argv)
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    with tempfile.TemporaryDirectory(prefix="bench-deployment-") as tmp:
        root = (args.out or Path(tmp)).resolve()
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "sim.cli", *ingest_args(args), "--data-dir", str(root / "data")],
                       check=True, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)  # fmt: skip
        (stores,) = (root / "data").glob("synthetic-*")  # what `fedami ingest` prepares, as for a hospital
        read_through(stores)  # each run starts with the stores in the page cache, whatever ran before it
        sim = simulated(args, root / "data", root / "simulated")
        size = read_through(stores)
        dep = deployed(args, root / "deployment", stores, root / "deployed")
        print(report(sim, dep, args))
        print(f"(both runs started with the prepared stores, {size / 2**30:.2f} GiB, read into the page cache)")
        (root / "deployment.json").write_text(json.dumps({"simulated": sim, "deployed": dep}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
