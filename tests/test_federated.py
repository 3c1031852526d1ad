"""Federated pieces without Ray: client handlers with a hand-built Message and Context, the FedProx term."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from client.handlers import make_client_app
from common.config import AppConfig, StoresConfig, TrainConfig
from common.config import flat as F
from common.data.arrays import EcgArrays
from common.data.store import SiteStore
from common.evaluation.subgroups import SUBGROUPS
from common.federation import compression as C
from common.federation import histograms as H
from common.federation import protocol as P
from common.federation.hospital import (
    Hospital,
    LocalTraining,
    NodeDataError,
    hospital_of,
    local_train,
    planned_training,
    round_seed,
)
from common.models import create_model
from common.models.card import InputSpec, store_spec
from common.training.engine import build_model

from .conftest import TINY
from .test_engine import _toy

pytestmark = pytest.mark.usefixtures("as_server_task")  # tests build instruction messages


FAST = TrainConfig(model="cnn1d")
"""The federation's mechanics do not depend on the model: these tests use a quick one."""


def _app(data_dir: Path, **sections: Any) -> AppConfig:
    sections.setdefault("train", FAST)
    return AppConfig(cohort=TINY, data=StoresConfig(dir=data_dir), **sections)


def _context(app: AppConfig, partition: int, n_partitions: int = 3) -> Context:
    return Context(
        run_id=1,
        node_id=10 + partition,
        node_config={P.PARTITION_ID: partition, P.NUM_PARTITIONS: n_partitions},
        state=RecordDict(),
        run_config=dict(F.flatten(app)),
    )


def _message(kind: str, config: dict[str, float | int | str], model: str | TrainConfig = "cnn1d") -> Message:
    net = create_model(model) if isinstance(model, str) else build_model(model)
    content = RecordDict({P.ARRAYS: ArrayRecord(net.state_dict()), P.CONFIG: ConfigRecord(config)})
    return Message(content=content, dst_node_id=12, message_type=kind)


def test_train_reply_holds_weights_aggregates_and_the_settings_used(
    tiny_cohort: list[SiteStore], tiny_data_dir: Path
) -> None:
    app = _app(tiny_data_dir)
    msg = _message(MessageType.TRAIN, {P.SERVER_ROUND: 1})
    sent = msg.content.array_records[P.ARRAYS].to_numpy_ndarrays()

    reply = make_client_app()(msg, _context(app, 2))

    assert set(reply.content.keys()) == {P.ARRAYS, P.METRICS, P.CONFIG}
    got = reply.content.array_records[P.ARRAYS].to_numpy_ndarrays()
    assert [a.shape for a in got] == [a.shape for a in sent]
    assert any(not np.array_equal(a, b) for a, b in zip(got, sent, strict=True))
    metrics = dict(reply.content.metric_records[P.METRICS])
    assert set(metrics) == {P.NUM_EXAMPLES, P.NUM_POSITIVES, P.TRAIN_LOSS, P.SITE_INDEX, *P.TIMINGS}
    # the handler's own clock: each part non-negative, the whole at least their sum
    parts = [metrics[k] for k in (P.VALIDATE_S, P.READ_S, P.TRAIN_S)]
    assert all(isinstance(v, float) and v >= 0 for v in parts) and metrics[P.HANDLER_S] >= sum(parts)
    train_rows = tiny_cohort[2].metadata["split"] == "train"
    assert metrics[P.NUM_EXAMPLES] == int(train_rows.sum())
    assert metrics[P.NUM_POSITIVES] == int(tiny_cohort[2].metadata.loc[train_rows, "label"].sum())
    spec = InputSpec.model_validate_json(str(reply.content.config_records[P.CONFIG][P.INPUT_SPEC]))
    assert spec == store_spec(tiny_cohort[2], app.train.target_fs)  # how its data were prepared, for the model card
    assert metrics[P.SITE_INDEX] == 2
    used = LocalTraining.model_validate_json(str(reply.content.config_records[P.CONFIG][P.TRAINED_WITH]))
    assert used == planned_training(app, Hospital(2, "hospital_c", Path()), 1, 0.0)


def test_a_training_message_that_asks_for_it_validates_the_weights_it_brings(
    tiny_cohort: list[SiteStore], tiny_data_dir: Path
) -> None:
    # Prepare: one model's weights, sent once to train with validation and once to evaluate on val
    app = _app(tiny_data_dir)
    train = _message(MessageType.TRAIN, {P.SERVER_ROUND: 2, P.VALIDATE: True})
    weights = train.content.array_records[P.ARRAYS]

    def sent(kind: str, config: dict[str, float | int | str]) -> Message:
        content = RecordDict({P.ARRAYS: weights, P.CONFIG: ConfigRecord(config)})
        return Message(content=content, dst_node_id=12, message_type=kind)

    evaluate, plain = sent(MessageType.EVALUATE, {P.EVAL_SPLIT: "val"}), sent(MessageType.TRAIN, {P.SERVER_ROUND: 2})

    # Execute
    fused = make_client_app()(train, _context(app, 1)).content
    alone = make_client_app()(evaluate, _context(app, 1)).content
    trained_only = make_client_app()(plain, _context(app, 1)).content

    # Assert: the validation is the evaluation reply's, and training is as without it
    assert dict(fused.metric_records[P.VAL_METRICS]) == dict(alone.metric_records[P.METRICS])
    assert P.VAL_METRICS not in trained_only.metric_records
    for (k, a), (_, b) in zip(fused.array_records[P.ARRAYS].items(), trained_only.array_records[P.ARRAYS].items(),
                              strict=True):  # fmt: skip
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)


def test_an_int8_hospital_sends_its_update_in_a_quarter_of_the_bytes(tiny_data_dir: Path) -> None:
    # Prepare: the same hospital and round, once without compression and once with int8
    plain = _app(tiny_data_dir)
    int8 = plain.model_copy(update={"federated": plain.federated.model_copy(update={"update_compression": "int8"})})
    msg = _message(MessageType.TRAIN, {P.SERVER_ROUND: 1})
    sent = {k: a.numpy() for k, a in msg.content.array_records[P.ARRAYS].items()}

    # Execute
    full = make_client_app()(msg, _context(plain, 0)).content
    small = make_client_app()(msg, _context(int8, 0)).content

    # Assert: one byte per value and a range per float tensor, decoding to the same training within the codes' step
    assert small.config_records[P.CONFIG][P.UPDATE_COMPRESSION] == "int8"
    encoded = {k: a.numpy() for k, a in small.array_records[P.ARRAYS].items()}
    assert {a.dtype for k, a in encoded.items() if not k.endswith(C.RANGE_SUFFIX) and sent[k].dtype.kind == "f"} == {
        np.dtype(np.uint8)
    }
    weights = C.decode(encoded, sent, "int8")
    trained = {k: a.numpy() for k, a in full.array_records[P.ARRAYS].items()}
    for k, w in trained.items():
        step = float(encoded[k + C.RANGE_SUFFIX][1]) if w.dtype.kind == "f" else 0.0
        np.testing.assert_allclose(weights[k], w, atol=step / 2 + 1e-6, rtol=0)
    nbytes = sum(a.nbytes for a in encoded.values())
    assert nbytes < 0.27 * sum(a.nbytes for a in trained.values())


def _every_training_field_changed() -> TrainConfig:
    """A TrainConfig in which every field differs from its default (the test fails for a new field until added)."""
    changed = TrainConfig(
        model="bilstm", batch_size=30, lr=3e-4, weight_decay=0.2, target_fs=250, seed=11, num_threads=3,
        loss="focal", pos_weight="none", focal_gamma=1.5, crop_s=5.0, window_aggregate="max", progress=True,
        auxiliary_targets=("superclass_HYP",), auxiliary_weight=0.5, augment_gain=0.1, augment_noise=0.05,
        augment_wander=0.1,
    )  # fmt: skip
    default = TrainConfig()
    same = [name for name in TrainConfig.model_fields if getattr(changed, name) == getattr(default, name)]
    assert not same, f"fields left at their defaults: {same}"
    return changed


def test_a_hospital_trains_with_exactly_the_settings_the_server_was_given(
    tiny_cohort: list[SiteStore], tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: every training field changed, the federated settings that shape local work too
    import client.handlers

    train = _every_training_field_changed()
    app = _app(tiny_data_dir, train=train).model_copy(
        update={
            "federated": AppConfig().federated.model_copy(
                update={"local_epochs": 2, "rounds": 4, "hospital_threads": 2}
            )
        }
    )
    used: list[LocalTraining] = []

    def spy(state: dict[str, torch.Tensor], data: Any, plan: LocalTraining) -> Any:
        used.append(plan)
        assert data.x.shape[-1] == 10 * train.target_fs  # the hospital's data at the run's model rate
        hyp = (data.meta["mimic"] == "lvh_strain").astype(int)  # the tiny cohort has no superclass columns
        return local_train(state, EcgArrays(data.x, data.demo, data.y, data.meta.assign(superclass_HYP=hyp)), plan)

    monkeypatch.setattr(client.handlers, "local_train", spy)

    # Execute: round 3, as the server sends it (FedProx's mu in the message)
    make_client_app()(_message(MessageType.TRAIN, {P.SERVER_ROUND: 3, P.PROXIMAL_MU: 0.05}, train), _context(app, 1))

    # Assert: the run's settings, with the hospital's share of the batch, its threads and its round's seed
    (plan,) = used
    expected = train.model_copy(update={"batch_size": 10, "num_threads": 2, "seed": round_seed(11, 1, 3)})
    assert plan.train == expected
    assert (plan.epochs, plan.first_epoch, plan.total_epochs, plan.proximal_mu) == (2, 4, 8, 0.05)
    assert plan.lr_first == pytest.approx(3e-4 * 0.5 * (1 + np.cos(np.pi * 4 / 8)))


def test_hospitals_train_with_their_share_of_the_pooled_batch(tiny_data_dir: Path) -> None:
    app = _app(tiny_data_dir, train=TrainConfig(batch_size=48))
    two = app.model_copy(update={"data": StoresConfig(dir=tiny_data_dir, hospitals=("hospital_a", "hospital_b"))})
    fixed = two.model_copy(update={"federated": app.federated.model_copy(update={"local_batch_size": 8})})

    batches = [
        planned_training(a, hospital_of(a, {P.PARTITION_ID: 1}), 1, 0.0).train.batch_size for a in (app, two, fixed)
    ]

    assert batches == [16, 24, 8]


def test_evaluate_reply_is_histograms_and_counts(tiny_cohort: list[SiteStore], tiny_data_dir: Path) -> None:
    config = {P.SERVER_ROUND: 1, P.EVAL_SPLIT: "test", P.THRESHOLD: 0.5, P.N_BOOT: 40}
    msg = _message(MessageType.EVALUATE, config)

    reply = make_client_app()(msg, _context(_app(tiny_data_dir), 0))

    assert set(reply.content.keys()) == {P.METRICS, P.REPLICATES}
    m = dict(reply.content.metric_records[P.METRICS])
    reps = {k: a.numpy() for k, a in reply.content.array_records[P.REPLICATES].items()}
    test = tiny_cohort[0].metadata["split"] == "test"
    n, n_pos = int(test.sum()), int(tiny_cohort[0].metadata.loc[test, "label"].sum())
    subgroup_keys = {k for k in m if k.startswith("sub-")}
    assert set(m) - subgroup_keys == {P.NUM_EXAMPLES, P.NUM_PATIENTS, P.SITE_INDEX, P.POS_HIST, P.NEG_HIST, P.TP, P.FP,
                                      P.TN, P.FN, P.REP_BINS, P.CAL_COUNT, P.CAL_SUM_P, P.CAL_SUM_Y,
                                      P.CAL_SQ_ERR}  # fmt: skip
    # every subgroup's patients; its ECGs a part of the hospital's, as counts in the bins they fill
    assert {P.subgroup_key(P.SUB_PATIENTS, i) for i in range(len(SUBGROUPS))} <= subgroup_keys
    for i in range(len(SUBGROUPS)):
        if m[P.subgroup_key(P.SUB_PATIENTS, i)]:
            bins = np.asarray(m[P.subgroup_key(P.SUB_BINS, i)])
            assert (np.asarray(m[P.subgroup_key(P.SUB_POS, i)]) <= np.asarray(m[P.POS_HIST])[bins]).all()
    assert sum(m[P.CAL_COUNT]) == n and sum(m[P.CAL_SUM_Y]) == n_pos
    assert len(m[P.POS_HIST]) == len(m[P.NEG_HIST]) == H.N_BINS  # fixed grid: no per-record list
    assert sum(m[P.POS_HIST]) == n_pos and sum(m[P.NEG_HIST]) == n - n_pos
    assert m[P.TP] + m[P.FN] == n_pos and m[P.TP] + m[P.FP] + m[P.TN] + m[P.FN] == n
    assert m[P.NUM_PATIENTS] == tiny_cohort[0].metadata.loc[test, "patient_id"].nunique()
    # the replicates: only the bins its ECGs fill, 40 rows of them, each drawing about n ECGs
    occupied = np.flatnonzero(np.add(m[P.POS_HIST], m[P.NEG_HIST]))
    assert m[P.REP_BINS] == occupied.tolist()
    assert reps[P.REP_POS].shape == reps[P.REP_NEG].shape == (40, len(occupied))
    assert reps[P.REP_POS].dtype == np.uint8  # the smallest type that holds the counts
    drawn = (reps[P.REP_POS].astype(int) + reps[P.REP_NEG]).sum(axis=1)
    assert 0.5 * n < drawn.mean() < 1.5 * n
    # each subgroup with ECGs sends its replicates over its own bins
    for i in range(len(SUBGROUPS)):
        if m[P.subgroup_key(P.SUB_PATIENTS, i)]:
            shape = (40, len(m[P.subgroup_key(P.SUB_BINS, i)]))
            assert reps[P.subgroup_key(P.SUB_REP_POS, i)].shape == reps[P.subgroup_key(P.SUB_REP_NEG, i)].shape == shape
    without = make_client_app()(_message(MessageType.EVALUATE, {P.EVAL_SPLIT: "val"}), _context(_app(tiny_data_dir), 0))
    assert P.REP_BINS not in without.content.metric_records[P.METRICS]  # replicates only when asked
    assert P.REPLICATES not in without.content.array_records
    assert P.CAL_COUNT not in without.content.metric_records[P.METRICS]  # subgroups, calibration: test round only


def test_a_node_whose_store_is_missing_names_the_command_that_prepares_it(tmp_path: Path) -> None:
    # Prepare: a cohort nobody has generated yet
    from sim import ingest

    app = AppConfig(cohort=TINY.model_copy(update={"difficulty": 0.3}), data=StoresConfig(dir=tmp_path), train=FAST)
    message = _message(MessageType.TRAIN, {P.SERVER_ROUND: 1})

    # Execute: the node refuses, then the command it names prepares exactly what it needs
    with pytest.raises(NodeDataError) as err:
        make_client_app()(message, _context(app, 0))
    text = str(err.value)
    assert not any(tmp_path.iterdir())  # nothing generated inside a message
    command = text.split("prepare it first: ", 1)[1].split()
    assert command[:4] == ["fedami", "ingest", "--data", "synthetic"] and "--difficulty" in command
    assert ingest.main(command[2:]) == 0
    reply = make_client_app()(message, _context(app, 0))

    # Assert
    assert "hospital 'hospital_a' has no prepared data" in text
    assert reply.content.metric_records[P.METRICS][P.SITE_INDEX] == 0


def test_a_node_beyond_the_training_hospitals_is_refused(tiny_data_dir: Path) -> None:
    loho = StoresConfig(dir=tiny_data_dir, hospitals=("hospital_a", "hospital_c"))  # hospital_b held out
    app = _app(tiny_data_dir).model_copy(update={"data": loho})

    with pytest.raises(ValueError, match="2 training hospitals"):
        make_client_app()(_message(MessageType.TRAIN, {P.SERVER_ROUND: 1}), _context(app, 2))
    assert [hospital_of(app, {P.PARTITION_ID: i, P.NUM_PARTITIONS: 2}).name for i in (0, 1)] == [
        "hospital_a",
        "hospital_c",
    ]


def test_fedprox_term_pulls_towards_the_global_weights() -> None:
    cfg = FAST.model_copy(update={"batch_size": 16, "lr": 1e-2, "num_threads": 1, "seed": 1})
    torch.manual_seed(0)
    start = create_model("cnn1d").state_dict()

    def distance(mu: float) -> float:
        plan = LocalTraining(
            hospital="h", server_round=1, train=cfg, epochs=2, first_epoch=0, total_epochs=2, lr_first=0, lr_last=0,
            proximal_mu=mu,
        )  # fmt: skip
        res = local_train({k: v.clone() for k, v in start.items()}, _toy(), plan)
        return float(sum(((res.state[k].float() - start[k].float()) ** 2).sum() for k in start if "running" not in k))

    free, mild, strong = distance(0.0), distance(1.0), distance(100.0)
    assert strong < mild < free


def test_later_rounds_train_with_the_cosine_decayed_learning_rate() -> None:
    cfg = FAST.model_copy(update={"batch_size": 16, "lr": 1e-2, "num_threads": 1, "seed": 1})
    torch.manual_seed(0)
    start = create_model("cnn1d").state_dict()

    def update(first: int, total: int) -> dict[str, torch.Tensor]:
        plan = LocalTraining(
            hospital="h", server_round=1, train=cfg, epochs=2, first_epoch=first, total_epochs=total, lr_first=0,
            lr_last=0, proximal_mu=0.0,
        )  # fmt: skip
        res = local_train({k: v.clone() for k, v in start.items()}, _toy(), plan)
        return {k: res.state[k] - start[k] for k in start if start[k].is_floating_point() and "running" not in k}

    def size(delta: dict[str, torch.Tensor]) -> float:
        return float(sum((d**2).sum() for d in delta.values()))

    first, last = update(0, 20), update(18, 20)
    assert size(last) < 0.2 * size(first)


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
    app = AppConfig(cohort=TINY, data=StoresConfig(dir=Path("/nonexistent")), train=FAST)
    own = tiny_cohort[1].path.parent
    ctx = Context(
        run_id=1,
        node_id=7,
        node_config={P.NODE_SITE: "hospital_b", P.NODE_DATA_DIR: str(own)},
        state=RecordDict(),
        run_config=dict(F.flatten(app)),
    )

    reply = make_client_app()(_message(MessageType.TRAIN, {P.SERVER_ROUND: 1}), ctx)

    metrics = dict(reply.content.metric_records[P.METRICS])
    assert metrics[P.SITE_INDEX] == 1
    assert metrics[P.NUM_EXAMPLES] == int((tiny_cohort[1].metadata["split"] == "train").sum())


def test_a_deployed_node_outside_the_training_hospitals_is_refused(tiny_data_dir: Path) -> None:
    app = _app(tiny_data_dir).model_copy(
        update={"data": StoresConfig(dir=tiny_data_dir, hospitals=("hospital_a", "hospital_c"))}
    )

    assert hospital_of(app, {P.NODE_SITE: "hospital_c"}).index == 1 and hospital_of(app, {P.NODE_SITE: "0"}).index == 0
    with pytest.raises(ValueError, match="'hospital_b' is not a training hospital"):
        hospital_of(app, {P.NODE_SITE: "hospital_b"})
    with pytest.raises(ValueError, match="not a training hospital"):
        hospital_of(app, {P.NODE_SITE: "hospital_z"})
