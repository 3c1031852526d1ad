"""End-to-end federated runs through Flower's simulation runtime (Ray): slow, run by `make test-slow`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from common.config import AppConfig, FederatedConfig, OutputConfig, StoresConfig
from common.config import flat as F
from common.data.store import SiteStore
from common.training.engine import load_checkpoint
from sim.simulation import run_federation

from .conftest import TINY

pytestmark = pytest.mark.slow


def _config(
    data_dir: Path, out: Path, hospitals: tuple[str, ...] = (), resume: Path | None = None, **fed: Any
) -> F.FlatConfig:
    app = AppConfig(
        cohort=TINY,
        data=StoresConfig(dir=data_dir, hospitals=hospitals),
        federated=FederatedConfig(rounds=2, **fed),
        output=OutputConfig(dir=out, resume=resume),
    )
    return F.flatten(app)


def test_loho_never_trains_on_the_held_out_hospital(
    tiny_cohort: list[SiteStore], tiny_data_dir: Path, tmp_path: Path
) -> None:
    cfg = _config(tiny_data_dir, tmp_path / "loho", ("hospital_a", "hospital_c"), strategy="fedprox")

    res = run_federation(cfg, 2)

    audit = res.messages
    train_nodes = {node for kind, node in audit["sent"] if kind == "train"}
    assert len(train_nodes) == 2
    # one exchange per round (round 2's training validates round 1's model), the last round's validation, the test
    kinds = [kind for kind, _ in audit["sent"] if kind != "query"]
    assert kinds.count("train") == 2 * 2 and kinds.count("evaluate") == 2 + 2
    assert {audit["node_site"][str(n)] for n in train_nodes} == {"hospital_a", "hospital_c"}  # b never trained
    assert [h["round"] for h in res.history] == [1, 2]
    assert all(list(h["trained"]) == ["hospital_a", "hospital_c"] for h in res.history)
    assert set(res.test["sites"]) == {"hospital_a", "hospital_c"} and res.test["threshold"] is not None
    assert res.test["all"]["n"] == sum(s["n"] for s in res.test["sites"].values())
    # every hospital reported training with the run's settings (FedProx's mu from the server's message)
    assert {r["proximal_mu"] for rounds in res.trained_with.values() for r in rounds} == {0.01}
    assert res.app_config == F.parse(AppConfig, cfg).model_dump(mode="json")
    timing = res.timing
    assert timing["server_app_s"] >= timing["rounds_s"] >= sum(h["train_s"] + h["evaluate_s"] for h in res.history)


@pytest.mark.parametrize("strategy", ["fedavg", "fedadam"])  # FedAdam: server-optimiser state and round count
def test_resume_from_a_checkpoint_gives_the_uninterrupted_weights(
    tiny_cohort: list[SiteStore], tiny_data_dir: Path, tmp_path: Path, strategy: str
) -> None:
    run_federation(_config(tiny_data_dir, tmp_path / "straight", strategy=strategy), 3)
    interrupted = F.flatten(
        F.parse(AppConfig, _config(tiny_data_dir, tmp_path / "interrupted", strategy=strategy)).model_copy(
            update={"federated": FederatedConfig(rounds=1, strategy=strategy)}
        )
    )
    run_federation(interrupted, 3)
    resumed = run_federation(
        _config(tiny_data_dir, tmp_path / "resumed", resume=tmp_path / "interrupted", strategy=strategy), 3
    )

    assert [h["round"] for h in resumed.history] == [1, 2]
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "resumed" / "last.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k  # replies are aggregated in hospital order: bit-identical
