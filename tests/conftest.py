from __future__ import annotations

import os
from pathlib import Path

import pytest
from flwr.supercore.task_identity import TaskIdentity

from common.config import CohortConfig
from common.data.store import SiteStore
from common.synthetic.cohort import ensure_synthetic_cohort

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

TINY = CohortConfig(seed=7, n_ecgs=300)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cohorts")


@pytest.fixture(scope="session")
def tiny_cohort(tiny_data_dir: Path) -> list[SiteStore]:
    """A 3-hospital, 300-ECG synthetic cohort, generated once per test session."""
    return ensure_synthetic_cohort(TINY, tiny_data_dir, progress=False)


@pytest.fixture
def as_server_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Instruction messages take their sender from the running task; pose as the ServerApp's."""
    for attr, value in (("_task_id", 1), ("_run_id", 1), ("_node_id", 1)):
        monkeypatch.setattr(TaskIdentity, attr, value)
