from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from common.config import CohortConfig, FederatedConfig, RunConfig, TrainConfig
from common.experiments.comparison import federated_run_config
from common.federation import protocol as P
from server.app import wait_for_hospitals

REPO = Path(__file__).resolve().parents[1]


def test_pyproject_defaults_give_the_default_cohort() -> None:
    app_config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]

    s = P.settings_from_run_config(app_config)

    assert s.cohort == CohortConfig()
    assert s.train.model == app_config["model"] and s.train.batch_size == app_config["batch-size"]
    assert s.federated.rounds == app_config[P.NUM_SERVER_ROUNDS] and s.federated.strategy == app_config["strategy"]
    assert s.train_sites == (0, 1, 2) and s.out_dir is None and s.resume is None
    assert {P.NUM_SERVER_ROUNDS, P.LOCAL_EPOCHS, P.NUM_SITES} <= set(app_config)


def test_settings_take_the_data_dir_from_the_run_config(tmp_path: Path) -> None:
    assert P.settings_from_run_config({"data-dir": str(tmp_path)}).data_dir == tmp_path


def test_nodes_must_match_the_training_hospitals() -> None:
    s = P.settings_from_run_config({})

    assert s.site_of({P.PARTITION_ID: 2, P.NUM_PARTITIONS: 3}) == 2
    with pytest.raises(ValueError, match="start exactly 3 supernodes"):
        s.site_of({P.PARTITION_ID: 1, P.NUM_PARTITIONS: 2})
    with pytest.raises(KeyError, match="partition-id"):
        s.site_of({"region": "north"})
    with pytest.raises(ValueError, match="distinct hospital indices"):
        P.settings_from_run_config({P.TRAIN_SITES: "0,3"})


class _Grid:
    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes

    def get_node_ids(self) -> list[int]:
        return self.nodes


def test_server_fails_clearly_when_hospitals_are_missing() -> None:
    assert wait_for_hospitals(_Grid([4, 5, 6]), 3, timeout_s=0) == [4, 5, 6]  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="2 of 3 hospitals connected"):
        wait_for_hospitals(_Grid([4, 5]), 3, timeout_s=0)  # type: ignore[arg-type]


def test_every_federated_setting_reaches_the_apps_through_the_run_config(tmp_path: Path) -> None:
    fed = FederatedConfig(
        strategy="fedavgm", rounds=7, local_epochs=2, local_batch_size=16, proximal_mu=0.1, server_lr=2.0,
        server_momentum=0.5, trim_beta=0.3, krum_malicious=1,
    )  # fmt: skip
    train = TrainConfig(model="bilstm", lr=1e-3, batch_size=32, seed=4)
    cfg = RunConfig(
        cohort=CohortConfig(seed=4), train=train, federated=fed, data_dir=tmp_path, out_dir=tmp_path / "out"
    )

    s = P.settings_from_run_config(federated_run_config(cfg, [0, 2], 3, tmp_path / "fed"))

    assert s.federated == fed
    assert (s.train.model, s.train.lr, s.train.batch_size, s.train.seed) == ("bilstm", 1e-3, 32, 4)
    assert s.train_sites == (0, 2) and s.data_dir == tmp_path and s.out_dir == tmp_path / "fed"


def test_run_config_zero_means_automatic_and_bad_values_name_their_setting() -> None:
    s = P.settings_from_run_config({P.LOCAL_BATCH_SIZE: 0, "server-lr": 0.0, "lr": 1})

    assert s.federated.local_batch_size is None and s.federated.server_lr is None
    assert s.train.lr == 1.0 and s.train.num_threads == 1
    with pytest.raises(ValidationError, match="lr"):
        P.settings_from_run_config({"lr": "fast"})
    with pytest.raises(ValidationError, match="local_epochs"):
        P.settings_from_run_config({P.LOCAL_EPOCHS: 0})


def test_run_config_of_round_trips_the_typed_settings() -> None:
    cohort, train = CohortConfig(seed=3, n_ecgs=500, difficulty=0.2), TrainConfig(model="bilstm", lr=0.01, seed=3)
    fed = FederatedConfig(local_batch_size=8, server_lr=0.5)

    s = P.settings_from_run_config(P.run_config_of(cohort, train, fed))

    assert (s.cohort, s.federated) == (cohort, fed)
    assert s.train == train.model_copy(update={"num_threads": 1})
