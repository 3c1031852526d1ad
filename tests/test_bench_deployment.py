"""benchmarks/bench_deployment.py's process sampler on real process trees; the whole benchmark is run by hand."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import bench_deployment as B

pytest.importorskip("psutil")

# a child that holds about 200 MiB, then waits
HOLDER = "import time; block = bytearray(200 * 2**20); block[::4096] = b'x' * len(block[::4096]); time.sleep(30)"


def test_processes_are_told_apart_by_their_command_lines() -> None:
    assert B.kind_of(["/venv/bin/python", "/venv/bin/flwr-clientapp", "--token", "1"]) == "ClientApp"
    assert B.kind_of(["python", "/venv/bin/flower-supernode", "--superlink", "x"]) == "SuperNode"
    assert B.kind_of(["python", "/venv/bin/flower-superexec", "--plugin-type", "clientapp"]) == "SuperExec"
    assert B.kind_of(["python", "-c", "pass"]) == "other"


def test_the_sampler_sees_a_childs_memory_in_its_tree() -> None:
    spawn = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {HOLDER!r}])"
    parent = subprocess.Popen([sys.executable, "-c", spawn])
    try:
        sampler = B.MemorySampler({"tree": parent.pid})
        sampler.start()
        time.sleep(3)
        sampler.halt.set()
        sampler.join()
    finally:
        import psutil

        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait()

    assert 200 * 2**20 <= sampler.tree_peak["tree"] < 400 * 2**20
    assert sampler.kind_peak["other"] >= 200 * 2**20
    assert len(sampler.started["other"]) == 2  # the parent and its child
    # both were idle after the start-up: a fraction of a second of CPU each, counted under their kind
    assert set(sampler.cpu_by_kind()) == {"other"} and 0 < sampler.cpu_by_kind()["other"] < 3


def test_the_sampler_counts_the_cpu_a_busy_process_used() -> None:
    spin = "import time\nwhile time.process_time() < 1.5: pass"  # 1.5 s of CPU, however busy the cores are
    busy = subprocess.Popen([sys.executable, "-c", spin])
    sampler = B.MemorySampler({"busy": busy.pid})
    sampler.start()
    busy.wait()
    time.sleep(0.5)
    sampler.halt.set()
    sampler.join()
    # the last sample may miss up to one interval of it
    assert 1.5 - 2 * B.SAMPLE_S <= sampler.cpu_by_kind()["other"] <= 2.0


def test_read_through_reads_every_file_under_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.npy").write_bytes(b"1" * 3000)
    (tmp_path / "y.csv").write_bytes(b"2" * 500)
    assert B.read_through(tmp_path, chunk=1024) == 3500


def _run_folder(folder: Path, rounds: list[tuple[float, dict[str, float]]], auroc: float) -> Path:
    folder.mkdir()
    (folder / "timing.json").write_text(json.dumps({"rounds_s": 10.0, "test_round_s": 2.0, "server_app_s": 14.0}))
    (folder / "test.json").write_text(json.dumps({"all": {"auroc": auroc}}))
    history = [
        {"round": i + 1, "train_s": round_s, "trained": {h: {"handler_s": s} for h, s in handlers.items()}}
        for i, (round_s, handlers) in enumerate(rounds)
    ]
    (folder / "history.json").write_text(json.dumps(history))
    return folder


def test_a_round_beyond_its_slowest_handler_is_read_and_reported(tmp_path: Path) -> None:
    # Prepare: a simulated and a deployed run of two rounds, by the ServerApp's and each hospital's clock
    sim = B.read_run(_run_folder(tmp_path / "sim", [(6.0, {"a": 5.9, "b": 4.0}), (5.0, {"a": 4.8, "b": 4.9})], 0.9))
    dep = B.read_run(_run_folder(tmp_path / "dep", [(12.0, {"a": 6.0, "b": 4.5}), (13.0, {"a": 5.0, "b": 6.0})], 0.9))
    memory = {"superlink_mib": 1.0, "supernode_mib": {}, "process_mib": {}, "clientapp_processes": 4,
              "clientapp_lifetimes_s": [], "cpu_s": {}}  # fmt: skip

    # Execute
    text = B.report({**sim, "wall_s": 15.0}, {**dep, "wall_s": 20.0, "memory": memory, "worker_message_s": []},
                        B.build_parser().parse_args([]))  # fmt: skip

    # Assert: the time beyond the slowest handler, each round, and its mean in the table
    assert sim["round_outside_handlers_s"] == [0.1, 0.1] and dep["round_outside_handlers_s"] == [6.0, 7.0]
    assert re.search(r"a round beyond handlers \(s\)\s+0\.1\s+6\.5\s", text)
