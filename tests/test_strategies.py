from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, FedProx, FedTrimmedAvg

from common.config import FederatedConfig
from common.federation import protocol as P
from server.strategies import STRATEGIES, UnknownStrategyError, create_strategy, load_server_state, server_state


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


def _record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()})


class _Nodes:
    def get_node_ids(self) -> list[int]:
        return [11, 12]


def _round(strategy: FedAvg, server_round: int, arrays: ArrayRecord) -> tuple[ArrayRecord, list[int]]:
    """One training round in which each node moves the weights by its own fixed step."""
    messages = list(strategy.configure_train(server_round, arrays, ConfigRecord(), _Nodes()))  # type: ignore[arg-type]
    sent_rounds = [int(P.number(m.content.config_records[P.CONFIG], P.SERVER_ROUND)) for m in messages]
    replies = []
    for m in messages:
        step = 0.1 * (m.metadata.dst_node_id - 10) * (1 + sent_rounds[0] % 3)
        moved = {k: v.numpy() + step for k, v in m.content.array_records[P.ARRAYS].items()}
        content = RecordDict({P.ARRAYS: _record(moved), P.METRICS: MetricRecord({P.NUM_EXAMPLES: 10})})
        replies.append(Message(content, reply_to=m))
    new, _ = strategy.aggregate_train(server_round, replies)
    assert new is not None
    return new, sent_rounds


@pytest.mark.usefixtures("as_server_task")
@pytest.mark.parametrize("name", ["fedadam", "fedyogi", "fedavgm", "fedavg"])
def test_a_resumed_strategy_continues_exactly(name: str) -> None:
    cfg = FederatedConfig(strategy=name)
    start = _record({"w": np.zeros((2, 3)), "b": np.ones(3)})
    straight = create_strategy(cfg, 2)
    arrays = start
    for r in (1, 2, 3):
        arrays, _ = _round(straight, r, arrays)

    first = create_strategy(cfg, 2)
    after_one, _ = _round(first, 1, start)
    saved = server_state(first)
    resumed = create_strategy(cfg, 2, round_offset=1)
    load_server_state(resumed, saved)
    continued = after_one
    sent = []
    for r in (1, 2):  # Flower counts from 1 again after a resume
        continued, rounds = _round(resumed, r, continued)
        sent += rounds

    assert sent == [2, 2, 3, 3]  # clients see the global round
    for k in ("w", "b"):
        np.testing.assert_array_equal(continued[k].numpy(), arrays[k].numpy())
    assert bool(saved) == (name != "fedavg")


@pytest.mark.usefixtures("as_server_task")
@pytest.mark.parametrize("name", ["fedadam", "fedavgm"])
def test_without_its_server_state_a_resumed_strategy_drifts(name: str) -> None:
    cfg = FederatedConfig(strategy=name)
    start = _record({"w": np.zeros((2, 3))})
    straight = create_strategy(cfg, 2)
    a1, _ = _round(straight, 1, start)
    a2, _ = _round(straight, 2, a1)

    forgetful = create_strategy(cfg, 2, round_offset=1)
    b2, _ = _round(forgetful, 1, a1)

    assert not np.array_equal(a2["w"].numpy(), b2["w"].numpy())


def test_server_state_of_another_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="does not belong to FedAvg"):
        load_server_state(create_strategy(FederatedConfig(), 2), {"m_t|w": np.zeros(2)})


def test_default_server_learning_rates_follow_each_strategy() -> None:
    adam = create_strategy(FederatedConfig(strategy="fedadam"), 2)
    avgm = create_strategy(FederatedConfig(strategy="fedavgm"), 2)

    assert isinstance(adam, FedAdam) and adam.eta == 0.01
    assert isinstance(avgm, FedAvgM) and avgm.server_learning_rate == 1.0
