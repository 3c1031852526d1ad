from __future__ import annotations

from collections.abc import Iterable

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
