"""A real deployment on loopback: TLS, SuperNode authentication, and the faults a hospital network has.

Slow (each run starts real SuperLink and SuperNode processes; a lost node is noticed after Flower's
heartbeat patience, about a minute): run with ``make test-slow``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.config import CohortConfig
from sim.deploy import make_keys

from .deployment import Deployment

pytestmark = pytest.mark.slow

HOSPITALS = ["hospital_a", "hospital_b", "hospital_c"]
COHORT = CohortConfig(seed=5, n_ecgs=300)
RUN = {"cohort.seed": COHORT.seed, "cohort.n-ecgs": COHORT.n_ecgs, "federated.hospital-wait-s": 90.0}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Keys for every hospital (and one nobody registers) and the hospitals' prepared stores."""
    root = tmp_path_factory.mktemp("deployment")
    make_keys([*HOSPITALS, "stranger"], ["localhost", "127.0.0.1"], root / "secrets")
    argv = ["ingest", "--data", "synthetic", "--n-ecgs", str(COHORT.n_ecgs), "--seed", str(COHORT.seed)]
    proc = subprocess.run([sys.executable, "-m", "sim.cli", *argv, "--data-dir", str(root / "data")],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (stores,) = (root / "data").glob("synthetic-*")
    return root / "secrets", stores


@pytest.fixture
def deployment(prepared: tuple[Path, Path], tmp_path: Path) -> Iterator[Deployment]:
    secrets, stores = prepared
    dep = Deployment(tmp_path, secrets, stores)
    try:
        yield dep
    finally:
        dep.close()


def _outputs(out: Path) -> dict[str, Any]:
    return {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}


def test_tls_and_authenticated_nodes_complete_a_run_and_a_stranger_is_refused(
    deployment: Deployment, tmp_path: Path
) -> None:
    # Prepare: hospitals a and b run warm workers, c handles messages in its ClientApp processes
    dep = deployment
    dep.start_superlink(database=tmp_path / "state.db")
    dep.register(HOSPITALS)
    for h in HOSPITALS:
        dep.start_node(h, h, worker=dep.start_worker(h) if h != "hospital_c" else None)
    stranger = dep.start_node("stranger", "hospital_a", key=dep.secrets / "stranger" / "stranger.key")

    # Execute: hospital_a's worker is killed after round 1
    run_id = dep.submit({**RUN, "federated.rounds": 2, "output.dir": str(tmp_path / "out")})
    dep.wait_for(lambda: (tmp_path / "out" / "last.json").is_file(), 300, "round 1's checkpoint")
    dep.stop("hospital_a-worker")
    status = dep.wait_finished(run_id, 400)

    # Assert: completed; the workers served, and hospital_a's ClientApp handled its later messages itself
    out = _outputs(tmp_path / "out")
    assert status == "finished:completed", dep.log("superlink")[-3000:]
    assert "train message replied" in dep.log("hospital_a-worker")
    assert dep.log("hospital_b-worker").count("message replied") == 4  # 2 train, the last validation, the test
    assert "did not answer" in dep.log("hospital_a") and "did not answer" not in dep.log("hospital_b")
    assert [h["round"] for h in out["history"]] == [1, 2]
    assert set(out["test"]["sites"]) == set(HOSPITALS)
    lo, hi = out["test"]["all"]["auroc_ci"]
    assert lo <= out["test"]["all"]["auroc"] <= hi  # from the hospitals' replicates
    assert [r["test_site"] for r in out["results"]["scores"]] == [*HOSPITALS, "all"]
    report = (tmp_path / "out" / "results.md").read_text().splitlines()
    sections = {h: i for i, h in enumerate(report) if h.startswith("## ")}
    table = [line for line in report[: min(sections.values())] if line.startswith("| hospital_")]
    assert [line.split(" | ")[0] for line in table] == [f"| {h}" for h in HOSPITALS]  # the test table
    # subgroups and calibration, from histograms and sums only
    assert "## Subgroups (all hospitals)" in sections and "## Calibration" in sections
    assert [g["subgroup"] for g in out["test"]["subgroups"]] == ["<50", "50-64", "65-79", ">=80", "male", "female"]
    assert 0 <= out["test"]["all"]["calibration"]["brier"] <= 1 and (tmp_path / "out" / "calibration.png").is_file()
    dep.wait_for(lambda: stranger.poll() is not None or "Failed to activate" in dep.log("stranger"), 60, "the refusal")
    assert "Failed to activate SuperNode" in dep.log("stranger")


def test_two_nodes_claiming_one_hospital_are_refused_before_round_one(
    prepared: tuple[Path, Path], tmp_path: Path
) -> None:
    secrets, stores = prepared
    dep = Deployment(tmp_path, secrets, stores, tls=False, auth=False)  # names from --node-config: nothing binds them
    try:
        dep.start_superlink()
        dep.start_node("a1", "hospital_a")
        dep.start_node("a2", "hospital_a")
        dep.start_node("b", "hospital_b")

        run_id = dep.submit({**RUN, "output.dir": str(tmp_path / "out"), "federated.hospital-wait-s": 30.0})
        status = dep.wait_finished(run_id, 300)
    finally:
        dep.close()

    stopped = json.loads((tmp_path / "out" / "stopped.json").read_text())
    assert status == "finished:failed"
    assert "hospital_a (nodes" in stopped["reason"] and "more than one node" in stopped["reason"]
    assert stopped["round"] == 0 and not (tmp_path / "out" / "last.pt").exists()  # nothing trained


def test_a_lost_hospital_leaves_the_run_and_a_poisoned_one_is_rejected(deployment: Deployment, tmp_path: Path) -> None:
    dep = deployment
    dep.start_superlink()
    dep.register(HOSPITALS)
    dep.start_node("hospital_a", "hospital_a")
    dep.start_node("hospital_b", "hospital_b")
    dep.start_node("hospital_c", "hospital_c", FEDAMI_INJECT_FAULT="nan-weights")
    out = tmp_path / "out"

    run_id = dep.submit({**RUN, "federated.rounds": 3, "federated.min-hospitals": 1, "output.dir": str(out)})
    dep.wait_for(lambda: (out / "last.json").is_file(), 300, "round 1's checkpoint")
    dep.stop("hospital_b")  # mid-run: lost from round 2 on
    status = dep.wait_finished(run_id, 600)

    history = json.loads((out / "history.json").read_text())
    assert status == "finished:completed", dep.log("superlink")[-3000:]
    assert [h["round"] for h in history] == [1, 2, 3]
    assert all("train:hospital_c" in h["rejected"] and "NaN" in h["rejected"]["train:hospital_c"] for h in history)
    assert list(history[0]["trained"]) == ["hospital_a", "hospital_b"]  # c's NaN weights never aggregated
    assert [list(h["trained"]) for h in history[1:]] == [["hospital_a"], ["hospital_a"]]  # b gone, c rejected
    assert all(h["did_not_train"] == ["hospital_b", "hospital_c"] for h in history[1:])


def test_a_superlink_killed_mid_run_is_resumed_to_the_full_round_count(deployment: Deployment, tmp_path: Path) -> None:
    dep = deployment
    database = tmp_path / "state.db"
    dep.start_superlink(database=database)
    dep.register(HOSPITALS)
    for h in HOSPITALS:
        dep.start_node(h, h)
    first, second = tmp_path / "first", tmp_path / "second"
    run_id = dep.submit({**RUN, "federated.rounds": 3, "output.dir": str(first)})
    dep.wait_for(lambda: (first / "last.json").is_file(), 300, "round 1's checkpoint")

    dep.stop("superlink", signal.SIGKILL)
    dep.start_superlink(database=database)  # the nodes reconnect; the interrupted run is over (failed or gone)
    dep.register(HOSPITALS)  # the registrations survived in the database: registering again is a no-op
    with contextlib.suppress(RuntimeError):
        assert dep.status(run_id)["status"] != "finished:completed"
    resumed = dep.submit({**RUN, "federated.rounds": 3, "output.dir": str(second), "output.resume": str(first)})
    status = dep.wait_finished(resumed, 600)

    history = json.loads((second / "history.json").read_text())
    done = json.loads((first / "last.json").read_text())["round"]
    assert status == "finished:completed", dep.log("superlink")[-3000:]
    assert [h["round"] for h in history][-1] == 3 and history[0]["round"] == 1  # the history carried over
    assert json.loads((second / "last.json").read_text())["round"] == 3 and done >= 1


def test_a_hospital_lost_below_min_hospitals_stops_the_run_clearly_keeping_its_checkpoint(
    deployment: Deployment, tmp_path: Path
) -> None:
    dep = deployment
    dep.start_superlink()
    dep.register(HOSPITALS)
    for h in HOSPITALS:
        dep.start_node(h, h)
    out = tmp_path / "out"

    run_id = dep.submit({**RUN, "federated.rounds": 4, "federated.hospital-wait-s": 20.0, "output.dir": str(out)})
    dep.wait_for(lambda: (out / "last.json").is_file(), 300, "round 1's checkpoint")
    dep.stop("hospital_c")  # min-hospitals defaults to every training hospital: 3
    status = dep.wait_finished(run_id, 600)

    stopped = json.loads((out / "stopped.json").read_text())
    last = json.loads((out / "last.json").read_text())
    assert status == "finished:failed"
    assert "hospital_c" in stopped["reason"] and "min-hospitals" in stopped["reason"], stopped
    assert 1 <= last["round"] < 4 and stopped["round"] == last["round"]  # the last completed round is kept
    assert (out / "last.pt").is_file()
