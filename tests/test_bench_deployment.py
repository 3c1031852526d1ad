"""benchmarks/bench_deployment.py's process sampler on real process trees; the whole benchmark is run by hand."""

from __future__ import annotations

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
