"""`flwr run .` is a valid way in: the app's components and config run under a local SuperLink."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _kill_local_superlink(flwr_home: Path) -> None:
    """`flwr run` leaves its local SuperLink running; stop the one that uses our FLWR_HOME."""
    out = subprocess.run(["pgrep", "-f", f"flower-superlink.*{flwr_home}"], capture_output=True, text=True)
    for pid in out.stdout.split():
        os.kill(int(pid), signal.SIGTERM)


@pytest.mark.slow
def test_flwr_run_two_rounds_on_a_tiny_cohort(tmp_path: Path) -> None:
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "fedami-sim"\n\n'
        '[superlink.fedami-sim]\naddress = ":local:"\noptions.num-supernodes = 3\n'
    )
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FEDAMI_DATA_DIR": str(tmp_path / "data"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # Nodes only read prepared data: the explicit prepare step first, as a user (or a node's start-up) does
    prepare = subprocess.run(
        [sys.executable, str(REPO / "sim" / "ingest.py"), "--data", "synthetic", "--n-ecgs", "300"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert prepare.returncode == 0, prepare.stderr[-3000:]
    try:
        proc = subprocess.run(
            [
                str(bin_dir / "flwr"),
                "run",
                str(REPO),
                "--run-config",
                "cohort.n-ecgs=300 federated.rounds=2",
                "--stream",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=540,
        )
    finally:
        _kill_local_superlink(home)

    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "[ROUND 2/2]" in log
    assert "aggregate_train: Received 3 results and 0 failures" in log
    assert sorted(p.name for p in (tmp_path / "data").glob("synthetic-*/*")) == [
        "hospital_a",
        "hospital_b",
        "hospital_c",
    ]
