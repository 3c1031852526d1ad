"""Strategy registry: the Flower 1.42 Message-API strategies by exact name, made resumable.

A resumed run restarts Flower's round counter at 1, and FedAdam/FedYogi (m_t, v_t) and FedAvgM
(momentum) keep a server-optimiser state between rounds. Every registered strategy therefore
numbers its rounds globally (``round_offset``: the round the checkpoint was taken at; FedAdam's
bias correction uses it, and clients seed their training with it) and can hand out and take back
that state (:func:`server_state`, :func:`load_server_state`), so a resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
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
    eta = 0.01 if cfg.server_lr is None else cfg.server_lr
    return {
        "fedavg": {},
        "fedprox": {"proximal_mu": cfg.proximal_mu},
        "fedadam": {"eta": eta},
        "fedyogi": {"eta": eta},
        "fedavgm": {
            "server_learning_rate": 1.0 if cfg.server_lr is None else cfg.server_lr,
            "server_momentum": cfg.server_momentum,
        },
        "fedmedian": {},
        "fedtrimmedavg": {"beta": cfg.trim_beta},
        "krum": {"num_malicious_nodes": cfg.krum_malicious},
    }


class _Resumable(FedAvg):
    """Passes the training hooks the global round: Flower's round plus ``round_offset``.

    (``server.app.train_rounds`` drives the rounds and validates through the training messages, so the
    strategies' evaluation hooks are never called.)
    """

    round_offset: int = 0

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return super().configure_train(server_round + self.round_offset, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return super().aggregate_train(server_round + self.round_offset, replies)


def _resumable(cls: type[FedAvg]) -> type[_Resumable]:
    # Same class name, so logs and ``type(s).__name__`` still read "FedAdam" etc.
    return type(cls.__name__, (_Resumable, cls), {"__doc__": cls.__doc__})


_FLOWER: Final[dict[str, type[FedAvg]]] = {
    "fedavg": FedAvg,
    "fedprox": FedProx,
    "fedadam": FedAdam,
    "fedyogi": FedYogi,
    "fedavgm": FedAvgM,
    "fedmedian": FedMedian,
    "fedtrimmedavg": FedTrimmedAvg,
    "krum": Krum,
}
STRATEGIES: Final[dict[str, type[_Resumable]]] = {name: _resumable(cls) for name, cls in _FLOWER.items()}

_STATE: Final[tuple[str, ...]] = ("m_t", "v_t", "momentum_vector")
"""Server-optimiser state that outlives a round: FedAdam/FedYogi's moments (dicts by parameter
name), FedAvgM's momentum (a list in parameter order). The strategies' ``current_arrays`` need no
saving: they are the global weights, which a resumed run starts from."""


def server_state(strategy: FedAvg) -> dict[str, np.ndarray]:
    """The strategy's server-optimiser state as flat named arrays (empty for stateless strategies)."""
    out: dict[str, np.ndarray] = {}
    for attr in _STATE:
        value = getattr(strategy, attr, None)
        if isinstance(value, dict):
            out.update({f"{attr}|{k}": np.asarray(v) for k, v in value.items()})
        elif isinstance(value, list):
            out.update({f"{attr}|{i}": np.asarray(v) for i, v in enumerate(value)})
    return out


def load_server_state(strategy: FedAvg, state: dict[str, np.ndarray]) -> None:
    """Put back what :func:`server_state` returned (``momentum_vector`` is a list, the rest dicts)."""
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        attr, _, name = key.partition("|")
        if attr not in _STATE or not hasattr(strategy, attr):
            raise ValueError(f"server state {key!r} does not belong to {type(strategy).__name__}")
        grouped.setdefault(attr, {})[name] = value
    for attr, values in grouped.items():
        if attr == "momentum_vector":
            setattr(strategy, attr, [values[str(i)] for i in range(len(values))])
        else:
            setattr(strategy, attr, values)


def create_strategy(cfg: FederatedConfig, n_nodes: int, *, round_offset: int = 0, **hooks: Any) -> _Resumable:
    """The named strategy with ``min_*_nodes`` equal to the training hospitals, so it never waits forever.

    ``round_offset`` is the round a resumed run continues after.
    """
    try:
        cls = STRATEGIES[cfg.strategy]
    except KeyError:
        raise UnknownStrategyError(f"unknown strategy {cfg.strategy!r}; known: {', '.join(STRATEGIES)}") from None
    nodes: dict[str, Any] = {"min_train_nodes": n_nodes, "min_evaluate_nodes": n_nodes, "min_available_nodes": n_nodes}
    strategy = cls(**nodes, **_options(cfg)[cfg.strategy], **hooks)
    strategy.round_offset = round_offset
    return strategy
