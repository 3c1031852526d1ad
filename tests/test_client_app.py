"""The ClientApp's handlers called directly with a hand-built Message and Context."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from client.app import app
from common import protocol as P
from common.models import create_model
from common.store import SiteStore

from .conftest import TINY


@pytest.fixture(autouse=True)
def _as_server_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Instruction messages take their sender from the running task; pose as the ServerApp's."""
    for attr, value in (("_task_id", 1), ("_run_id", 1), ("_node_id", 1)):
        monkeypatch.setattr(TaskIdentity, attr, value)


def _context(data_dir: Path, partition: int) -> Context:
    run_config = {
        "seed": TINY.seed, "num-sites": TINY.n_sites, "n-ecgs": TINY.n_ecgs, "difficulty": TINY.difficulty,
        "model": "cnn1d", "lr": 0.002, "batch-size": 32, "local-epochs": 1, "data-dir": str(data_dir),
    }  # fmt: skip
    return Context(
        run_id=1,
        node_id=10 + partition,
        node_config={P.PARTITION_ID: partition},
        state=RecordDict(),
        run_config=run_config,
    )


def _message(kind: str) -> Message:
    arrays = ArrayRecord(create_model("cnn1d").state_dict())
    content = RecordDict({P.ARRAYS: arrays, P.CONFIG: ConfigRecord({P.SERVER_ROUND: 1})})
    return Message(content=content, dst_node_id=12, message_type=kind)


def test_train_returns_new_weights_and_only_aggregate_metrics(
    tiny_cohort: list[SiteStore], tiny_data_dir: Path
) -> None:
    msg = _message(MessageType.TRAIN)
    sent = msg.content[P.ARRAYS].to_numpy_ndarrays()  # type: ignore[union-attr]

    reply = app(msg, _context(tiny_data_dir, 2))

    assert set(reply.content.keys()) == {P.ARRAYS, P.METRICS}
    got = reply.content[P.ARRAYS].to_numpy_ndarrays()  # type: ignore[union-attr]
    assert [a.shape for a in got] == [a.shape for a in sent]
    assert any(not np.array_equal(a, b) for a, b in zip(got, sent, strict=True))
    metrics = dict(reply.content[P.METRICS])  # type: ignore[arg-type]
    assert metrics[P.NUM_EXAMPLES] == int((tiny_cohort[2].metadata["split"] == "train").sum())
    assert set(metrics) == {P.NUM_EXAMPLES, P.TRAIN_LOSS}


def test_evaluate_returns_no_arrays(tiny_cohort: list[SiteStore], tiny_data_dir: Path) -> None:
    reply = app(_message(MessageType.EVALUATE), _context(tiny_data_dir, 0))

    assert set(reply.content.keys()) == {P.METRICS}
    metrics = dict(reply.content[P.METRICS])  # type: ignore[arg-type]
    assert metrics[P.NUM_EXAMPLES] == int((tiny_cohort[0].metadata["split"] == "val").sum())
    assert all(isinstance(v, int | float) for v in metrics.values())
