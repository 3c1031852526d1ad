"""The server's fault policy with a hand-built grid: who is who, losses, reconnections, malformed replies."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MessageType, Metadata, MetricRecord, RecordDict

from common.evaluation.calibration import calibration_sums
from common.federation import compression as C
from common.federation import histograms as H
from common.federation import protocol as P
from server.roster import HospitalGrid, HospitalsError

pytestmark = pytest.mark.usefixtures("as_server_task")  # tests build instruction messages

HOSPITALS = ("hospital_a", "hospital_b", "hospital_c")
Answer = Callable[[Message, str], Message | None]


def _weights(value: float = 0.0, shape: tuple[int, ...] = (2, 3)) -> ArrayRecord:
    return ArrayRecord({"w": Array(np.full(shape, value, dtype=np.float32))})


def honest(msg: Message, hospital: str) -> Message:
    """What a well-behaved node answers."""
    site = HOSPITALS.index(hospital) if hospital in HOSPITALS else 99
    kind = msg.metadata.message_type
    if kind == MessageType.QUERY:
        return Message(RecordDict({P.CONFIG: ConfigRecord({P.HOSPITAL: hospital})}), reply_to=msg)
    if kind == MessageType.TRAIN:
        metrics = MetricRecord({P.NUM_EXAMPLES: 10, P.TRAIN_LOSS: 0.5, P.SITE_INDEX: site})
        content = RecordDict({P.ARRAYS: _weights(1.0), P.METRICS: metrics})
        if msg.content.config_records.get(P.CONFIG, ConfigRecord()).get(P.VALIDATE, False):
            content[P.VAL_METRICS] = _evaluation(site)
        return Message(content, reply_to=msg)
    return Message(_test_reply(site), reply_to=msg)


def _evaluation(site: int) -> MetricRecord:
    """A validation's metrics: ten ECGs (two AMI) of eight patients in two bins."""
    pos, neg = [0] * H.N_BINS, [0] * H.N_BINS
    pos[-1], neg[0] = 2, 8
    metrics = MetricRecord({P.NUM_EXAMPLES: 10, P.NUM_PATIENTS: 8, P.SITE_INDEX: site})
    metrics.update({P.POS_HIST: pos, P.NEG_HIST: neg})
    return metrics


def _test_reply(site: int) -> RecordDict:
    """A test round's reply: the validation's metrics with subgroups and calibration, and two bootstrap replicates
    over its two occupied bins (as the hospital's own functions make them), the counts as arrays."""
    metrics = _evaluation(site)
    metrics.update({P.REP_BINS: [0, H.N_BINS - 1], **EXTRAS})
    arrays = {P.REP_POS: np.array([[0, 2], [0, 3]], np.uint8), P.REP_NEG: np.array([[8, 0], [7, 0]], np.uint8)}
    arrays.update(SUBGROUP_REPLICATES)
    return RecordDict({P.METRICS: metrics, P.REPLICATES: ArrayRecord({k: Array(v) for k, v in arrays.items()})})


def _extras() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The subgroup and calibration entries of the honest test reply, and the subgroups' replicates, made by the
    hospital's own functions."""
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    scores = np.array([1.0, 1.0, *[0.0] * 8])
    ids = np.array(["p0", "p1", "p2", "p2", "p3", "p4", "p5", "p6", "p7", "p7"])
    age = np.array([45, 70, 50, 51, 85, 30, np.nan, 66, 90, 90])
    sex = np.array(["M", "F", "M", "M", "F", "", "M", "F", "F", "F"], dtype=object)
    parts = H.subgroup_parts(y, scores, age, sex, ids, 2, 0)
    metrics = {**H.subgroup_metrics(parts), **H.calibration_metrics(calibration_sums(y, scores))}
    return metrics, H.replicate_arrays(None, parts)


EXTRAS, SUBGROUP_REPLICATES = _extras()


class FakeGrid:
    """Nodes that hold hospitals; ``answer`` decides each node's reply (None: no reply, an error instead)."""

    def __init__(self, holds: dict[int, str], answer: dict[int, Answer] | None = None) -> None:
        self.holds = dict(holds)
        self.answer = answer or {}
        self.online = set(holds)
        self._outbox: dict[str, Message] = {}
        self._count = 0
        self.asked: list[tuple[str, int]] = []

    def get_node_ids(self) -> list[int]:
        return sorted(self.online)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for m in messages:
            node, kind = m.metadata.dst_node_id, m.metadata.message_type
            self.asked.append((kind, node))
            reply = self.answer.get(node, honest)(m, self.holds[node]) if node in self.online else None
            self._count += 1
            mid = f"m{self._count}"
            meta = Metadata(
                run_id=1, message_id=f"r{self._count}", src_node_id=node, dst_node_id=0, reply_to_message_id=mid,
                group_id="", created_at=time.time(), ttl=60, message_type=kind,
            )  # fmt: skip
            if reply is None:  # Flower's SuperLink answers for a lost node: the reply is not from that node
                meta.__dict__["_src_node_id"] = 1
                self._outbox[mid] = Message(error=Error(5, "Error: Node Unavailable"), metadata=meta)
            else:
                self._outbox[mid] = Message(reply.content, metadata=meta)
            ids.append(mid)
        return ids  # in the messages' order, as Flower's grids return them

    def pull_messages(self, ids: Iterable[str]) -> list[Message]:
        return [self._outbox.pop(i) for i in sorted(ids, reverse=True) if i in self._outbox]  # in any order


def _grid(grid: FakeGrid, min_hospitals: int = 3, wait_s: float = 0.0) -> HospitalGrid:
    return HospitalGrid(grid, HOSPITALS, min_hospitals=min_hospitals, wait_s=wait_s, poll_s=0.0, sleep=lambda _: None)  # type: ignore[arg-type]


def _train(hg: HospitalGrid) -> list[Message]:
    content = RecordDict({P.ARRAYS: _weights(), P.CONFIG: ConfigRecord({P.SERVER_ROUND: 1})})
    messages = [Message(content=content, dst_node_id=n, message_type=MessageType.TRAIN) for n in hg.get_node_ids()]
    return hg.send_and_receive(messages)


def test_hospitals_are_found_by_name_and_replies_come_back_in_hospital_order() -> None:
    hg = _grid(FakeGrid({31: "hospital_c", 7: "hospital_a", 19: "hospital_b"}))

    hg.wait_for_all()
    replies = _train(hg)

    assert hg.node_of == {"hospital_a": 7, "hospital_b": 19, "hospital_c": 31}
    assert [r.metadata.src_node_id for r in replies] == [7, 19, 31]


@pytest.mark.parametrize(
    ("holds", "message"),
    [
        ({1: "hospital_a", 2: "hospital_a", 3: "hospital_b"}, r"more than one node: hospital_a \(nodes \[1, 2\]\)"),
        ({1: "hospital_a", 2: "hospital_b", 3: "hospital_z"}, r"missing: \['hospital_c'\].*not in this run: \['hos"),
        ({1: "hospital_a", 2: "hospital_b"}, r"not every training hospital connected within 0 s.*missing: \['hos"),
    ],
)  # fmt: skip
def test_before_round_one_every_hospital_is_there_exactly_once(holds: dict[int, str], message: str) -> None:
    hg = _grid(FakeGrid(holds))

    with pytest.raises(HospitalsError, match=message):
        hg.wait_for_all()


def test_a_lost_hospital_leaves_the_round_while_the_minimum_remains() -> None:
    fake = FakeGrid({1: "hospital_a", 2: "hospital_b", 3: "hospital_c"})
    hg = _grid(fake, min_hospitals=2)
    hg.wait_for_all()
    messages = [Message(content=RecordDict({P.ARRAYS: _weights()}), dst_node_id=n, message_type=MessageType.TRAIN)
                for n in hg.get_node_ids()]  # fmt: skip
    fake.online.discard(2)  # hospital_b dies after the messages were addressed

    replies = hg.send_and_receive(messages)

    assert [r.has_error() for r in replies] == [False, True, False]
    assert hg.events[-1].lost == {"hospital_b": "Error: Node Unavailable"}
    assert hg.get_node_ids() == [1, 3]  # the next round samples the two that are left
    fake.online.discard(3)
    with pytest.raises(HospitalsError, match=r"1 training hospitals connected for 0 s, fewer than min-hospitals = 2"):
        hg.get_node_ids()


def test_below_the_minimum_the_round_stops_with_an_error_naming_the_losses() -> None:
    fake = FakeGrid({1: "hospital_a", 2: "hospital_b", 3: "hospital_c"})
    hg = _grid(fake, min_hospitals=2)
    hg.wait_for_all()
    fake.answer = {2: lambda m, h: None, 3: lambda m, h: None}

    with pytest.raises(HospitalsError, match=r"only 1 of 3 hospitals answered the train round.*hospital_b"):
        _train(hg)


def test_a_hospital_that_reconnects_under_a_new_node_id_is_taken_back_by_name() -> None:
    fake = FakeGrid({1: "hospital_a", 2: "hospital_b", 3: "hospital_c"})
    hg = _grid(fake)
    hg.wait_for_all()

    fake.online.discard(2)
    fake.holds[9] = "hospital_b"
    fake.online.add(9)

    assert hg.get_node_ids() == [1, 9, 3] and hg.node_of["hospital_b"] == 9
    assert not hg.duplicates


def bad(change: Callable[[Message], None]) -> Answer:
    def answer(msg: Message, hospital: str) -> Message:
        reply = honest(msg, hospital)
        if msg.metadata.message_type != MessageType.QUERY:
            change(reply)
        return reply

    return answer


def _nan(reply: Message) -> None:
    reply.content.array_records[P.ARRAYS] = _weights(float("nan"))


def _shape(reply: Message) -> None:
    reply.content.array_records[P.ARRAYS] = _weights(1.0, (3, 2))


def _names(reply: Message) -> None:
    reply.content.array_records[P.ARRAYS] = ArrayRecord({"v": Array(np.ones((2, 3), np.float32))})


def _no_loss(reply: Message) -> None:
    reply.content.metric_records[P.METRICS] = MetricRecord({P.NUM_EXAMPLES: 10, P.SITE_INDEX: 1})


def _inf_loss(reply: Message) -> None:
    reply.content.metric_records[P.METRICS][P.TRAIN_LOSS] = float("inf")


def _impostor(reply: Message) -> None:
    reply.content.metric_records[P.METRICS][P.SITE_INDEX] = 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_nan, r"NaN or infinite weights in \['w'\]"),
        (_shape, r"weights of other shapes: \['w'\]"),
        (_names, r"weights for other parameters"),
        (_no_loss, r"bad metrics"),
        (_inf_loss, r"training loss inf"),
        (_impostor, r"it says it holds hospital #0, but its node holds #1"),
    ],
)
def test_a_malformed_training_reply_is_rejected_with_its_reason(change: Callable[[Message], None], reason: str) -> None:
    hg = _grid(FakeGrid({1: "hospital_a", 2: "hospital_b", 3: "hospital_c"}, answer={2: bad(change)}), min_hospitals=2)
    hg.wait_for_all()

    replies = _train(hg)

    assert [r.metadata.src_node_id for r in replies] == [1, 3]  # hospital_b's reply never reaches aggregation
    assert list(hg.events[-1].rejected) == ["hospital_b"]
    assert re.search(reason, hg.events[-1].rejected["hospital_b"])


def test_malformed_evaluation_histograms_are_rejected() -> None:
    def short(reply: Message) -> None:
        reply.content.metric_records[P.METRICS][P.POS_HIST] = [1, 2]

    def miscounted(reply: Message) -> None:
        reply.content.metric_records[P.METRICS][P.NUM_EXAMPLES] = 11

    fake = FakeGrid({1: "hospital_a", 2: "hospital_b", 3: "hospital_c"}, answer={2: bad(short), 3: bad(miscounted)})
    hg = _grid(fake, min_hospitals=1)
    hg.wait_for_all()

    replies = hg.send_and_receive(_evaluate(hg))

    assert [r.metadata.src_node_id for r in replies] == [1]
    assert hg.events[-1].rejected == {
        "hospital_b": "score histograms of the wrong length",
        "hospital_c": "score histograms that do not count its 11 ECGs",
    }


def _evaluate(hg: HospitalGrid) -> list[Message]:
    return [Message(RecordDict({P.CONFIG: ConfigRecord({})}), dst_node_id=n, message_type=MessageType.EVALUATE)
            for n in hg.get_node_ids()]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (P.NUM_PATIENTS, 11, "num-patients = 11 for 10 ECGs"),
        (P.NUM_PATIENTS, 0, "num-patients = 0 for 10 ECGs"),
        (P.REP_BINS, [0, 5], "bootstrap replicates in other bins than its ECGs"),
        (P.REP_BINS, [H.N_BINS - 1, 0], "bootstrap replicates in other bins than its ECGs"),
        (P.REP_BINS, [0.0, 2399.0], "bootstrap replicates that are not integer counts"),
        (P.REP_BINS, 3, "bootstrap replicates that are not a bin list and two arrays"),
        (P.REP_POS, np.array([[0, 2, 0]]), "bootstrap replicates of the wrong shape"),
        (P.REP_POS, np.array([0, 2, 0, 3]), "bootstrap replicates of the wrong shape"),
        (P.REP_POS, np.array([[0, 2], [0, 3], [1, 1]]), "bootstrap replicates of the wrong shape"),
        (P.REP_NEG, np.array([[8, 0], [-7, 0]]), "negative counts in bootstrap replicates"),
        (P.REP_NEG, np.array([[8.0, 0.0], [7.0, 0.0]]), "bootstrap replicates that are not integer counts"),
        (P.REP_NEG, None, "bootstrap replicates that are not a bin list and two arrays"),
        (P.subgroup_key(P.SUB_PATIENTS, 0), -1, "subgroup age <50: a patient count of -1"),
        (P.subgroup_key(P.SUB_NEG, 0), [9, 0], "subgroup age <50: more ECGs than the hospital's histogram holds"),
        (P.subgroup_key(P.SUB_BINS, 0), [0, H.N_BINS], "subgroup age <50: bins outside the grid"),
        (P.subgroup_key(P.SUB_POS, 4), [1], "subgroup sex male: histograms of the wrong shape"),
        (
            P.subgroup_key(P.SUB_REP_NEG, 4),
            np.array([[-1, 0], [0, 0]]),
            "subgroup sex male: negative counts in bootstrap replicates",
        ),
        (P.CAL_COUNT, [10] + [0] * 8, "calibration sums of the wrong shape"),
        (P.CAL_COUNT, [9, 0, 0, 0, 0, 0, 0, 0, 0, 2], "calibration counts that do not count its 10 ECGs and 2 AMI"),
        (P.CAL_SUM_P, [0.0] * 9 + [0.5], "calibration sums outside their bins"),
        (P.CAL_SQ_ERR, float("nan"), "calibration sums that are not finite numbers"),
    ],
)
def test_malformed_replicates_subgroups_calibration_and_patient_counts_are_rejected(
    key: str, value: object, reason: str
) -> None:
    def broken(reply: Message) -> None:
        if key in SUBGROUP_REPLICATES or key in (P.REP_POS, P.REP_NEG):  # the counts travel as arrays
            arrays = reply.content.array_records[P.REPLICATES]
            if value is None:
                del arrays[key]
            else:
                arrays[key] = Array(np.asarray(value))
        else:
            reply.content.metric_records[P.METRICS][key] = value  # type: ignore[assignment]

    fake = FakeGrid({1: "hospital_a", 2: "hospital_b", 3: "hospital_c"}, answer={3: bad(broken)})
    hg = _grid(fake, min_hospitals=1)
    hg.wait_for_all()

    replies = hg.send_and_receive(_evaluate(hg))

    assert [r.metadata.src_node_id for r in replies] == [1, 2]
    assert hg.events[-1].rejected == {"hospital_c": reason}


def test_a_reply_from_another_node_than_the_one_asked_is_rejected() -> None:
    grid = FakeGrid({1: "hospital_a", 2: "hospital_b", 3: "hospital_c"})
    hg = _grid(grid, min_hospitals=2)
    hg.wait_for_all()
    push = grid.push_messages

    def swapped(messages: Iterable[Message]) -> list[str]:
        ids = push(messages)
        grid._outbox[ids[1]].metadata.__dict__["_src_node_id"] = 3  # hospital_b's answer claims to be c's node
        return ids

    grid.push_messages = swapped  # type: ignore[method-assign]
    replies = _train(hg)

    assert [r.metadata.src_node_id for r in replies] == [1, 3]
    assert hg.events[-1].rejected == {"hospital_b": "a reply from node 3 to the message sent to node 2"}


def test_a_message_the_superlink_did_not_take_counts_as_a_lost_hospital() -> None:
    grid = FakeGrid({1: "hospital_a", 2: "hospital_b", 3: "hospital_c"})
    hg = _grid(grid, min_hospitals=2)
    hg.wait_for_all()
    push = grid.push_messages

    def refusing_c(messages: Iterable[Message]) -> list[str | None]:
        messages = list(messages)
        ids: list[str | None] = list(push(messages[:2]))
        return [*ids, None]

    grid.push_messages = refusing_c  # type: ignore[method-assign,assignment]
    replies = _train(hg)

    assert [r.metadata.src_node_id for r in replies] == [1, 2]
    assert hg.events[-1].lost == {"hospital_c": "the SuperLink did not take its message"}


def encoding(
    method: str, trained: Callable[[np.ndarray], np.ndarray] = lambda w: w + np.arange(6.0).reshape(2, 3)
) -> Answer:
    """A node that trains ``w -> trained(w)`` and sends its update encoded as ``method``."""

    def answer(msg: Message, hospital: str) -> Message:
        reply = honest(msg, hospital)
        if msg.metadata.message_type == MessageType.TRAIN:
            sent = {k: a.numpy() for k, a in msg.content.array_records[P.ARRAYS].items()}
            new = {k: trained(v).astype(np.float32) for k, v in sent.items()}
            encoded = C.encode(new, sent, method)
            reply.content.array_records[P.ARRAYS] = ArrayRecord({k: Array(v) for k, v in encoded.items()})
            reply.content.config_records[P.CONFIG] = ConfigRecord({P.UPDATE_COMPRESSION: method})
        return reply

    return answer


def _compressed_grid(method: str, answer_b: Answer) -> HospitalGrid:
    others = encoding(method)
    grid = FakeGrid({1: "hospital_a", 2: "hospital_b", 3: "hospital_c"}, answer={1: others, 2: answer_b, 3: others})
    hg = HospitalGrid(
        grid, HOSPITALS, min_hospitals=2, wait_s=0.0, poll_s=0.0, sleep=lambda _: None, compression=method
    )  # type: ignore[arg-type]
    hg.wait_for_all()
    return hg


@pytest.mark.parametrize("method", ["float16", "int8"])
def test_compressed_updates_reach_the_strategy_as_trained_weights(method: str) -> None:
    hg = _compressed_grid(method, encoding(method))

    replies = _train(hg)

    assert len(replies) == 3 and not hg.events
    for reply in replies:
        weights = reply.content.array_records[P.ARRAYS]["w"].numpy()
        assert weights.dtype == np.float32
        np.testing.assert_allclose(weights, np.arange(6.0).reshape(2, 3), atol=5 / 255 / 2 + 1e-6)


def _malformed_range(reply_answer: Answer) -> Answer:
    def answer(msg: Message, hospital: str) -> Message | None:
        reply = reply_answer(msg, hospital)
        if reply is not None and msg.metadata.message_type == MessageType.TRAIN:
            reply.content.array_records[P.ARRAYS]["w" + C.RANGE_SUFFIX] = Array(np.zeros(1, np.float32))
        return reply

    return answer


@pytest.mark.parametrize(
    ("answer_b", "reason"),
    [
        (honest, r"an update encoded as 'none', but this run's federated.update-compression is 'int8'"),
        (encoding("float16"), r"encoded as 'float16', but .* is 'int8'"),
        (encoding("int8", lambda w: w * np.nan), r"NaN or infinite weights in \['w'\]"),
        (_malformed_range(encoding("int8")), r"the int8 range of 'w' is float32 \(1,\), not float32 \(2,\)"),
    ],
)  # fmt: skip
def test_an_update_that_does_not_decode_under_the_runs_compression_is_rejected(answer_b: Answer, reason: str) -> None:
    hg = _compressed_grid("int8", answer_b)

    replies = _train(hg)

    assert [r.metadata.src_node_id for r in replies] == [1, 3]
    assert list(hg.events[-1].rejected) == ["hospital_b"]
    assert re.search(reason, hg.events[-1].rejected["hospital_b"])


def test_an_uncompressed_run_rejects_a_compressed_update() -> None:
    grid = FakeGrid({1: "hospital_a", 2: "hospital_b", 3: "hospital_c"}, answer={2: encoding("int8")})
    hg = _grid(grid, min_hospitals=2)
    hg.wait_for_all()

    _train(hg)

    assert (
        "encoded as 'int8', but this run's federated.update-compression is 'none'"
        in hg.events[-1].rejected["hospital_b"]
    )


def _without_validation(reply: Message) -> None:
    reply.content.metric_records.pop(P.VAL_METRICS)


def _short_validation(reply: Message) -> None:
    reply.content.metric_records[P.VAL_METRICS][P.POS_HIST] = [1, 2]


def test_a_training_reply_must_carry_the_validation_its_message_asked_for_and_no_other() -> None:
    # Prepare: b leaves out the validation asked for, c sends histograms of the wrong length
    fake = FakeGrid(
        {1: "hospital_a", 2: "hospital_b", 3: "hospital_c"},
        answer={2: bad(_without_validation), 3: bad(_short_validation)},
    )
    hg = _grid(fake, min_hospitals=1)
    hg.wait_for_all()
    content = RecordDict({P.ARRAYS: _weights(), P.CONFIG: ConfigRecord({P.SERVER_ROUND: 2, P.VALIDATE: True})})
    asked = [Message(content=content, dst_node_id=n, message_type=MessageType.TRAIN) for n in hg.get_node_ids()]

    # Execute
    replies = hg.send_and_receive(asked)
    fake.answer = {1: lambda m, h: _with_validation(honest(m, h), HOSPITALS.index(h))}
    unasked = _train(hg)

    # Assert
    assert [r.metadata.src_node_id for r in replies] == [1]
    assert P.VAL_METRICS in replies[0].content.metric_records
    assert hg.events[-2].rejected == {
        "hospital_b": "no validation of the weights it received, which the message asked for",
        "hospital_c": "its validation: score histograms of the wrong length",
    }
    assert [r.metadata.src_node_id for r in unasked] == [2, 3]
    assert hg.events[-1].rejected == {"hospital_a": "a validation the message did not ask for"}


def _with_validation(reply: Message, site: int) -> Message:
    reply.content[P.VAL_METRICS] = _evaluation(site)
    return reply


def test_replicate_arrays_that_do_not_decode_are_rejected_not_raised() -> None:
    def garbled(reply: Message) -> None:
        garbage = Array(dtype="uint8", shape=(2, 2), stype="numpy.ndarray", data=b"not an array")
        reply.content.array_records[P.REPLICATES][P.REP_POS] = garbage

    fake = FakeGrid({1: "hospital_a", 2: "hospital_b", 3: "hospital_c"}, answer={2: bad(garbled)})
    hg = _grid(fake, min_hospitals=1)
    hg.wait_for_all()

    replies = hg.send_and_receive(_evaluate(hg))

    assert [r.metadata.src_node_id for r in replies] == [1, 3]
    assert hg.events[-1].rejected["hospital_b"].startswith("replicate arrays that do not decode: ")
