"""Every benchmark in one command, written to ``BENCHMARKS.md``: the figures the README links to.

Usage: python benchmarks/suite.py [--quick] [--only NAME[,NAME...]] [--update] [--out BENCHMARKS.md]
       (or ``make bench``, ``make bench ARGS=--quick``)

Runs each benchmark script of this folder as its own process, one after the other (so no two share the
cores), and writes its output verbatim under a heading with the exact command, the wall time and the exit
status, after a header with the command that produced the file, the commit, and the machine (cores,
memory, torch's threads and version). Each script takes the ratios it reports (federated against pooled,
deployed against simulated, one round against one epoch) in its own single run; nothing here is edited
by hand. ``--quick`` runs every stage on small sizes, in a few minutes, to show the suite works; its
figures are not the ones to quote. A stage that fails is reported as failed and the suite goes on; the
exit status is 1 if any failed.

Every stage's section opens with the command, the time and the commit of the run that wrote it.
``--update`` (with ``--only``) replaces the chosen stages' sections of the existing report and keeps the
others as they were, each with its own run's line: a report assembled from several runs says so, section by
section; two figures compared with each other always come from one script's one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    full: tuple[tuple[str, ...], ...]
    """Each tuple: a script of this folder and its arguments; the stage runs them in turn."""
    quick: tuple[tuple[str, ...], ...]


def _models() -> tuple[str, ...]:
    from common.models import list_models

    return tuple(list_models())


def stages() -> tuple[Stage, ...]:
    default = "conv_bilstm_attn"
    others = [m for m in _models() if m != default]
    return (
        Stage(
            "generation", "Synthetic cohort generation (one core)",
            (("bench_synthetic.py", "--n", "2048", "--full-cohort", "4000"),),
            (("bench_synthetic.py", "--n", "128"),),
        ),
        Stage(
            "ingest", "WFDB ingest and store reads",
            (("bench_ingest.py", "--n", "600"),),
            (("bench_ingest.py", "--n", "60"),),
        ),
        Stage(
            "default-model", f"Training and inference throughput of the default model ({default}) at 100 and 500 Hz",
            tuple(("bench_model.py", "--model", default, "--fs", str(fs)) for fs in (100, 500)),
            (("bench_model.py", "--model", default, "--fs", "100", "--steps", "2", "--ecgs", "128"),),
        ),
        Stage(
            "models", "Training and inference throughput of every other model at 100 and 500 Hz (as fedami "
            "predict runs it: the whole record in torch and in ONNX Runtime)",
            tuple(("bench_model.py", "--model", m, "--fs", str(fs), "--steps", "5", "--ecgs", "512", "--brief")
                  for m in others for fs in (100, 500)),
            (("bench_model.py", "--model", others[0], "--fs", "100", "--steps", "1", "--ecgs", "64", "--brief"),),
        ),
        Stage(
            "federation", "Federation overhead in the simulation (federated / pooled wall time, same passes)",
            (("bench_federation.py", "--seeds", "0"),),
            (("bench_federation.py", "--n-ecgs", "600", "--rounds", "2"),),
        ),
        Stage(
            "communication", "Communication: the weights per round and hospital of every model, and what update "
            "compression costs in AUROC; one hospital's test-round reply (size and build time)",
            (("bench_communication.py",), ("bench_communication.py", "--auroc"), ("bench_test_reply.py",)),
            (
                ("bench_communication.py", "--models", default),
                ("bench_communication.py", "--auroc", "--seeds", "0", "--n-ecgs", "600", "--rounds", "2"),
                ("bench_test_reply.py", "--n-ecgs", "600", "--n-boot", "20"),
            ),
        ),
        Stage(
            "deployment", "Deployed on loopback (SuperLink with TLS and node authentication, one SuperNode per "
            "hospital) against the simulation; 2 hospitals on 2 cores train at the simulation's concurrency",
            (("bench_deployment.py",), ("bench_deployment.py", "--worker"),
             ("bench_deployment.py", "--n-ecgs", "20000", "--hospitals", "2", "--worker")),
            (("bench_deployment.py", "--n-ecgs", "300", "--rounds", "1"),),
        ),
        Stage(
            "paper-scale", "Paper scale: 145,656 ECGs at 3 hospitals, one round against one pooled epoch, memory, "
            "disk; and the scale curves",
            (("bench_scale.py", "--curves"),),
            (("bench_scale.py", "--fraction", "0.01"),),
        ),
    )  # fmt: skip


def machine() -> str:
    import psutil
    import torch

    from common.config import TrainConfig

    mem = psutil.virtual_memory().total / 1024**3
    threads = TrainConfig.model_fields["num_threads"].default
    return (
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), {mem:.1f} GiB memory, "
        f"Python {platform.python_version()}, torch {torch.__version__} (train.num-threads = {threads}, "
        f"torch's default {torch.get_num_threads()}), {platform.system()} {platform.release()}"
    )


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


STAMP = re.compile(r"^_Run by `(?P<command>[^`]*)` on (?P<when>[^,]*), at commit (?P<commit>[^._]*)\._$", re.M)
WRITTEN = re.compile(r"^Written by `(?P<command>[^`]*)` on (?P<when>.*?) at commit (?P<commit>.+?), in ", re.M)


def stamp(command: str, when: str, at: str) -> str:
    return f"_Run by `{command}` on {when}, at commit {at}._"


def sections_of(report: str) -> dict[str, str]:
    """An existing report's sections by title, each with its run's line (taken from the header if it has none)."""
    header, *chunks = report.split("\n## ")
    written = WRITTEN.search(header)
    out: dict[str, str] = {}
    for chunk in chunks:
        title, _, body = chunk.partition("\n")
        if not STAMP.search(body) and written:  # a report from before sections carried their own line
            body = "\n" + stamp(written["command"], written["when"], written["commit"]) + "\n" + body
        out[title.strip()] = f"## {title.strip()}\n{body.rstrip()}\n"
    return out


def run_stage(stage: Stage, quick: bool, run_line: str = "") -> tuple[str, bool]:
    parts, ok = [f"## {stage.title}", "", *([run_line, ""] if run_line else [])], True
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    for script, *args in stage.quick if quick else stage.full:
        argv = [sys.executable, str(HERE / script), *args]
        shown = " ".join(["python", f"benchmarks/{script}", *args])
        print(f"[{stage.name}] {shown}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        status = "ok" if proc.returncode == 0 else f"FAILED (exit status {proc.returncode})"
        ok &= proc.returncode == 0
        text = proc.stdout if proc.returncode == 0 else proc.stdout + "\n" + proc.stderr[-4000:]
        parts += [f"`{shown}`: {seconds:.0f} s, {status}", "", "```", text.rstrip(), "```", ""]
        print(f"[{stage.name}] {status} in {seconds:.0f} s", flush=True)
    return "\n".join(parts), ok


def main(argv: list[str] | None = None) -> int:
    all_stages = stages()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes: a few minutes, figures not to quote")
    p.add_argument("--only", default=None, help=f"comma-separated stages of: {', '.join(s.name for s in all_stages)}")
    p.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md", help="default: BENCHMARKS.md at the top")
    p.add_argument(
        "--update", action="store_true", help="replace only the --only stages' sections of the existing --out"
    )
    args = p.parse_args(argv)
    if args.update and not (args.only and args.out.is_file()):
        p.error("--update replaces some stages of an existing report: give --only and an existing --out")
    chosen = all_stages
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in {s.name for s in all_stages}]
        if unknown:
            p.error(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(s.name for s in all_stages)}")
        chosen = tuple(s for s in all_stages if s.name in names)
    command = "python benchmarks/suite.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    t0, at, host = time.perf_counter(), commit(), machine()  # the code that runs: taken before any stage
    started = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    kept = sections_of(args.out.read_text()) if args.update else {}
    sections: dict[str, str] = {}
    failed: list[str] = []

    def write(done: int) -> None:
        """The report so far: rewritten after every stage, so a long suite that is stopped keeps what it measured."""
        left = [s.name for s in chosen[done:]]
        body = [sections.get(s.title) or kept.get(s.title, "") for s in all_stages]
        skipped = [s.name for s, text in zip(all_stages, body, strict=True) if not text]
        header = [
            "# fedami benchmarks",
            "",
            f"Written by `{command}` on {started} at commit {at}, in {(time.perf_counter() - t0) / 60:.0f} min"
            + (": it reran the stages it names; every section says which run wrote it." if kept else "."),
            "",
            f"Machine: {host}.",
            "",
            "Every figure below is a benchmark script's own output, unedited; rerun the command above to measure "
            "again." + (" **Quick mode: small sizes, not the figures to quote.**" if args.quick else ""),
            "",
        ]
        if skipped:
            header += [f"Stages not in this report: {', '.join(skipped)}.", ""]
        if left:
            header += [f"**Incomplete: still to run (or stopped before): {', '.join(left)}.**", ""]
        if failed:
            header += [f"**Failed stages: {', '.join(failed)}.**", ""]
        args.out.write_text("\n".join(header + [text for text in body if text]))

    for k, stage in enumerate(chosen):
        text, ok = run_stage(stage, args.quick, stamp(command, started, at))
        sections[stage.title] = text
        if not ok:
            failed.append(stage.name)
        write(k + 1)
    print(f"wrote {args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
