"""Strategy registry: the Flower 1.42 Message-API strategies by exact name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from flwr.serverapp.strategy import (
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
)

from common.config import FederatedConfig


class UnknownStrategyError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def _options(cfg: FederatedConfig) -> dict[str, dict[str, Any]]:
    """Strategy-specific arguments taken from the config (the rest use Flower's defaults)."""
    return {
        "fedavg": {},
        "fedprox": {"proximal_mu": cfg.proximal_mu},
        "fedadam": {"eta": cfg.server_lr, "eta_l": cfg.server_lr},
        "fedyogi": {"eta": cfg.server_lr, "eta_l": cfg.server_lr},
        "fedavgm": {"server_learning_rate": cfg.server_lr, "server_momentum": cfg.server_momentum},
        "fedmedian": {},
        "fedtrimmedavg": {"beta": cfg.trim_beta},
        "krum": {"num_malicious_nodes": cfg.krum_malicious},
    }


STRATEGIES: Final[dict[str, Callable[..., FedAvg]]] = {
    "fedavg": FedAvg,
    "fedprox": FedProx,
    "fedadam": FedAdam,
    "fedyogi": FedYogi,
    "fedavgm": FedAvgM,
    "fedmedian": FedMedian,
    "fedtrimmedavg": FedTrimmedAvg,
    "krum": Krum,
}


def create_strategy(cfg: FederatedConfig, n_nodes: int, **hooks: Any) -> FedAvg:
    """The named strategy with ``min_*_nodes`` equal to the training hospitals, so it never waits forever."""
    try:
        cls = STRATEGIES[cfg.strategy]
    except KeyError:
        raise UnknownStrategyError(f"unknown strategy {cfg.strategy!r}; known: {', '.join(STRATEGIES)}") from None
    nodes = {"min_train_nodes": n_nodes, "min_evaluate_nodes": n_nodes, "min_available_nodes": n_nodes}
    return cls(**nodes, **_options(cfg)[cfg.strategy], **hooks)
