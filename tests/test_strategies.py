from __future__ import annotations

import pytest
from flwr.serverapp.strategy import FedProx, FedTrimmedAvg

from common.config import FederatedConfig
from server.strategies import STRATEGIES, UnknownStrategyError, create_strategy


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_waits_for_exactly_the_training_hospitals(name: str) -> None:
    strategy = create_strategy(FederatedConfig(strategy=name), 2)

    assert (strategy.min_train_nodes, strategy.min_evaluate_nodes, strategy.min_available_nodes) == (2, 2, 2)
    assert type(strategy).__name__.lower() == name


def test_strategy_options_come_from_the_config() -> None:
    prox = create_strategy(FederatedConfig(strategy="fedprox", proximal_mu=0.3), 3)
    trimmed = create_strategy(FederatedConfig(strategy="fedtrimmedavg", trim_beta=0.1), 3)

    assert isinstance(prox, FedProx) and prox.proximal_mu == 0.3
    assert isinstance(trimmed, FedTrimmedAvg) and trimmed.beta == 0.1


def test_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(UnknownStrategyError, match="known: fedavg, fedprox"):
        create_strategy(FederatedConfig(strategy="fedsgd"), 2)
