"""End-to-end federated runs through Flower's simulation runtime (Ray): slow, run by `make test-slow`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from common.training.engine import load_checkpoint
from sim.simulation import run_federation

from .conftest import TINY

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, name: str, **extra: str | int | float) -> dict[str, str | int | float]:
    return {
        "seed": TINY.seed, "n-ecgs": TINY.n_ecgs, "num-sites": TINY.n_sites, "data-dir": str(tmp_path / "data"),
        "out-dir": str(tmp_path / name), "num-server-rounds": 2, "local-epochs": 1, **extra,
    }  # fmt: skip


def test_loho_never_trains_on_the_held_out_hospital(tmp_path: Path) -> None:
    res = run_federation(_config(tmp_path, "loho", **{"train-sites": "0,2", "strategy": "fedprox"}), 2)

    audit = res["messages"]
    train_nodes = {node for kind, node in audit["sent"] if kind == "train"}
    assert len(train_nodes) == 2
    assert {audit["node_site"][str(n)] for n in train_nodes} == {0, 2}  # hospital 1 never got a train message
    assert [h["round"] for h in res["history"]] == [1, 2]
    assert all(h["trained_sites"] == [0, 2] for h in res["history"])
    assert set(res["test"]["sites"]) == {"0", "2"} and res["test"]["threshold"] is not None
    assert res["test"]["pooled"]["n"] == sum(s["n"] for s in res["test"]["sites"].values())
    timing = res["timing"]
    assert timing["server_app_s"] >= timing["rounds_s"] >= sum(h["train_s"] + h["evaluate_s"] for h in res["history"])


@pytest.mark.parametrize("strategy", ["fedavg", "fedadam"])  # FedAdam: server-optimiser state and round count
def test_resume_from_a_checkpoint_gives_the_uninterrupted_weights(tmp_path: Path, strategy: str) -> None:
    run_federation(_config(tmp_path, "straight", strategy=strategy), 3)
    run_federation(_config(tmp_path, "interrupted", strategy=strategy, **{"num-server-rounds": 1}), 3)
    resumed = run_federation(_config(tmp_path, "resumed", strategy=strategy, resume=str(tmp_path / "interrupted")), 3)

    assert [h["round"] for h in resumed["history"]] == [1, 2]
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "resumed" / "last.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k  # replies are aggregated in hospital order: bit-identical
