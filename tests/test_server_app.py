from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from common.federation import protocol as P
from server.app import RecordingGrid

pytestmark = pytest.mark.usefixtures("as_server_task")  # tests build instruction messages


class _ReversingGrid:
    """Answers every message, node ``n`` as hospital ``site_of[n]``, last sent first."""

    def __init__(self, site_of: dict[int, int]) -> None:
        self.site_of = site_of

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        replies = [
            Message(
                RecordDict({P.METRICS: MetricRecord({P.SITE_INDEX: self.site_of[m.metadata.dst_node_id]})}),
                reply_to=m,
            )
            for m in messages
        ]
        return replies[::-1]


def test_replies_come_back_in_hospital_order_whatever_the_arrival_order() -> None:
    site_of = {31: 2, 7: 0, 19: 1}
    grid = RecordingGrid(_ReversingGrid(site_of))  # type: ignore[arg-type]
    config = RecordDict({P.CONFIG: ConfigRecord({P.SERVER_ROUND: 1})})
    messages = [Message(content=config, dst_node_id=n, message_type=MessageType.TRAIN) for n in site_of]

    replies = list(grid.send_and_receive(messages))

    assert [r.metadata.src_node_id for r in replies] == [7, 19, 31]
    assert grid.sent == [(MessageType.TRAIN, n) for n in site_of]
    assert grid.node_site == site_of


def _train_reply(site: int, trained_with: dict[str, object]) -> RecordDict:
    import json

    metrics = MetricRecord({P.NUM_EXAMPLES: 10, P.TRAIN_LOSS: 0.5, P.SITE_INDEX: site})
    return RecordDict({P.METRICS: metrics, P.CONFIG: ConfigRecord({P.TRAINED_WITH: json.dumps(trained_with)})})


def test_a_hospital_that_trained_with_other_settings_stops_the_run(tmp_path: Path) -> None:
    # Prepare: the server's plan for round 1; hospital_b reports another learning rate
    from common.config import AppConfig
    from common.federation.hospital import Hospital, planned_training
    from server.checkpoints import RoundTracker

    app = AppConfig()
    names = ("hospital_a", "hospital_b", "hospital_c")

    def plan(i: int, r: int) -> dict[str, object]:
        return planned_training(app, Hospital(i, names[i], Path()), r, 0.0).model_dump(mode="json")

    tracker = RoundTracker(tmp_path, names, expect=plan)
    wrong = plan(1, 1)
    wrong["train"] = {**wrong["train"], "lr": 0.1}  # type: ignore[dict-item]

    # Execute / Assert: the faithful replies pass and are recorded; the other one names what differs
    tracker.aggregate_train([_train_reply(0, plan(0, 1)), _train_reply(2, plan(2, 1))], P.NUM_EXAMPLES)
    assert set(tracker.trained_with) == {"hospital_a", "hospital_c"}
    with pytest.raises(
        RuntimeError, match=r"'hospital_b' trained round 1 with other settings.*train\.lr 0\.1 \(the run's: 0\.002\)"
    ):
        tracker.aggregate_train([_train_reply(1, wrong)], P.NUM_EXAMPLES)
