"""Federated pieces without Ray: client handlers, the FedProx term, round tracking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from client.app import make_client_app
from common.config import TrainConfig
from common.data.store import SiteStore
from common.federation import histograms as H
from common.federation import protocol as P
from common.federation.hospital import local_train, round_seed
from common.models import create_model

from .conftest import TINY
from .test_engine import _toy

pytestmark = pytest.mark.usefixtures("as_server_task")  # tests build instruction messages


def _context(data_dir: Path, partition: int, n_partitions: int = 3) -> Context:
    return Context(
        run_id=1,
        node_id=10 + partition,
        node_config={P.PARTITION_ID: partition, P.NUM_PARTITIONS: n_partitions},
        state=RecordDict(),
        run_config={"seed": TINY.seed, P.NUM_SITES: TINY.n_sites, "n-ecgs": TINY.n_ecgs, "data-dir": str(data_dir)},
    )


def _message(kind: str, config: dict[str, float | int | str]) -> Message:
    content = RecordDict({P.ARRAYS: ArrayRecord(create_model("cnn1d").state_dict()), P.CONFIG: ConfigRecord(config)})
    return Message(content=content, dst_node_id=12, message_type=kind)


def test_train_reply_holds_weights_and_aggregates_only(tiny_cohort: list[SiteStore], tiny_data_dir: Path) -> None:
    msg = _message(MessageType.TRAIN, {P.SERVER_ROUND: 1})
    sent = msg.content.array_records[P.ARRAYS].to_numpy_ndarrays()

    reply = make_client_app()(msg, _context(tiny_data_dir, 2))

    assert set(reply.content.keys()) == {P.ARRAYS, P.METRICS}
    got = reply.content.array_records[P.ARRAYS].to_numpy_ndarrays()
    assert [a.shape for a in got] == [a.shape for a in sent]
    assert any(not np.array_equal(a, b) for a, b in zip(got, sent, strict=True))
    metrics = dict(reply.content.metric_records[P.METRICS])
    assert set(metrics) == {P.NUM_EXAMPLES, P.TRAIN_LOSS, P.SITE_INDEX}
    assert metrics[P.NUM_EXAMPLES] == int((tiny_cohort[2].metadata["split"] == "train").sum())
    assert metrics[P.SITE_INDEX] == 2


def test_hospitals_train_with_their_share_of_the_pooled_batch(
    tiny_cohort: list[SiteStore], tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import client.app

    batches: list[int] = []

    def spy(state: dict[str, torch.Tensor], data: object, cfg: TrainConfig, **kw: object) -> object:
        batches.append(cfg.batch_size)
        return local_train(state, data, cfg, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(client.app, "local_train", spy)
    ctx = _context(tiny_data_dir, 1)
    ctx.run_config["batch-size"] = 48

    make_client_app()(_message(MessageType.TRAIN, {P.SERVER_ROUND: 1}), ctx)
    ctx.run_config[P.TRAIN_SITES] = "0,1"
    ctx.node_config[P.NUM_PARTITIONS] = 2
    make_client_app()(_message(MessageType.TRAIN, {P.SERVER_ROUND: 1}), ctx)
    ctx.run_config[P.LOCAL_BATCH_SIZE] = 8
    make_client_app()(_message(MessageType.TRAIN, {P.SERVER_ROUND: 1}), ctx)

    assert batches == [16, 24, 8]


def test_evaluate_reply_is_histograms_and_counts(tiny_cohort: list[SiteStore], tiny_data_dir: Path) -> None:
    msg = _message(MessageType.EVALUATE, {P.SERVER_ROUND: 1, P.EVAL_SPLIT: "test", P.THRESHOLD: 0.5})

    reply = make_client_app()(msg, _context(tiny_data_dir, 0))

    assert set(reply.content.keys()) == {P.METRICS}
    m = dict(reply.content.metric_records[P.METRICS])
    test = tiny_cohort[0].metadata["split"] == "test"
    n, n_pos = int(test.sum()), int(tiny_cohort[0].metadata.loc[test, "label"].sum())
    assert set(m) == {P.NUM_EXAMPLES, P.SITE_INDEX, P.POS_HIST, P.NEG_HIST, P.TP, P.FP, P.TN, P.FN}
    assert len(m[P.POS_HIST]) == len(m[P.NEG_HIST]) == H.N_BINS  # fixed grid: no per-record list
    assert sum(m[P.POS_HIST]) == n_pos and sum(m[P.NEG_HIST]) == n - n_pos
    assert m[P.TP] + m[P.FN] == n_pos and m[P.TP] + m[P.FP] + m[P.TN] + m[P.FN] == n


def test_a_node_beyond_the_training_hospitals_is_refused(tiny_data_dir: Path) -> None:
    ctx = _context(tiny_data_dir, 2, n_partitions=3)
    ctx.run_config[P.TRAIN_SITES] = "0,2"  # LOHO fold holding out hospital 1: two nodes only

    with pytest.raises(ValueError, match="2 training hospitals"):
        make_client_app()(_message(MessageType.TRAIN, {P.SERVER_ROUND: 1}), ctx)


def test_loho_partition_maps_to_the_training_hospitals() -> None:
    s = P.settings_from_run_config({P.TRAIN_SITES: "0,2"})

    assert [s.site_of({P.PARTITION_ID: i, P.NUM_PARTITIONS: 2}) for i in (0, 1)] == [0, 2]


def test_fedprox_term_pulls_towards_the_global_weights() -> None:
    cfg = TrainConfig(batch_size=16, lr=1e-2, num_threads=1)
    torch.manual_seed(0)
    start = create_model("cnn1d").state_dict()

    def distance(mu: float) -> float:
        res = local_train({k: v.clone() for k, v in start.items()}, _toy(), cfg, epochs=2, seed=1, prox_mu=mu)
        return float(sum(((res.state[k].float() - start[k].float()) ** 2).sum() for k in start if "running" not in k))

    free, mild, strong = distance(0.0), distance(1.0), distance(100.0)
    assert strong < mild < free


def test_later_rounds_train_with_the_cosine_decayed_learning_rate() -> None:
    cfg = TrainConfig(batch_size=16, lr=1e-2, num_threads=1)
    torch.manual_seed(0)
    start = create_model("cnn1d").state_dict()

    def update(rounds: tuple[int, int] | None) -> dict[str, torch.Tensor]:
        res = local_train({k: v.clone() for k, v in start.items()}, _toy(), cfg, epochs=2, seed=1, rounds=rounds)
        return {k: res.state[k] - start[k] for k in start if start[k].is_floating_point() and "running" not in k}

    def size(delta: dict[str, torch.Tensor]) -> float:
        return float(sum((d**2).sum() for d in delta.values()))

    constant, first, last = update(None), update((1, 10)), update((10, 10))
    # round 1 of 10 begins at the full rate (factor 1), so its first epoch matches constant training
    assert size(last) < 0.2 * size(first)
    assert size(first) == pytest.approx(size(constant), rel=0.05)


def test_fedprox_term_value_is_half_mu_squared_norm() -> None:
    from common.training.engine import proximal_term

    params = [torch.tensor([1.0, 2.0]), torch.tensor([[0.5]])]
    anchor = [torch.tensor([0.0, 0.0]), torch.tensor([[1.5]])]

    # ||w - w0||^2 = 1 + 4 + 1 = 6 -> mu/2 * 6
    assert proximal_term(params, anchor, 0.1).item() == pytest.approx(0.3)


def test_round_seed_depends_on_seed_site_and_round_only() -> None:
    seeds = {round_seed(0, s, r) for s in range(3) for r in range(1, 4)}

    assert len(seeds) == 9
    assert round_seed(0, 1, 2) == round_seed(0, 1, 2) != round_seed(1, 1, 2)


def test_a_deployed_node_names_its_hospital_and_data_folder(tiny_cohort: list[SiteStore], tiny_data_dir: Path) -> None:
    ctx = Context(
        run_id=1,
        node_id=7,
        node_config={P.NODE_SITE: "hospital_b", P.NODE_DATA_DIR: str(tiny_data_dir)},
        state=RecordDict(),
        run_config={"seed": TINY.seed, P.NUM_SITES: TINY.n_sites, "n-ecgs": TINY.n_ecgs, "data-dir": "/nonexistent"},
    )

    reply = make_client_app()(_message(MessageType.TRAIN, {P.SERVER_ROUND: 1}), ctx)

    metrics = dict(reply.content.metric_records[P.METRICS])
    assert metrics[P.SITE_INDEX] == 1
    assert metrics[P.NUM_EXAMPLES] == int((tiny_cohort[1].metadata["split"] == "train").sum())


def test_a_deployed_node_outside_the_training_hospitals_is_refused() -> None:
    s = P.settings_from_run_config({P.TRAIN_SITES: "0,2"})

    assert s.site_of({P.NODE_SITE: "hospital_c"}) == 2 and s.site_of({P.NODE_SITE: "0"}) == 0
    with pytest.raises(ValueError, match="'hospital_b' is not a training hospital"):
        s.site_of({P.NODE_SITE: "hospital_b"})
    with pytest.raises(ValueError, match="not a training hospital"):
        s.site_of({P.NODE_SITE: "hospital_z"})
