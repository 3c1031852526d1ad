"""The hospital's warm worker: the ClientApp forwards to it, and every fault falls back to handling the message here."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Context, Message, MessageType, RecordDict

from client import app as client_app
from client import worker
from client.handlers import make_client_app
from common.config import StoresConfig
from common.config import flat as F
from common.data.store import MANIFEST_FILE, SiteStore
from common.federation import protocol as P
from common.federation.hospital import Hospital, hospital_split

from .test_federated import _app, _message

pytestmark = pytest.mark.usefixtures("as_server_task")


@pytest.fixture
def sock() -> Iterator[Path]:
    # a short path: a Unix socket's name is limited to about 100 bytes, pytest's tmp_path can be longer
    with tempfile.TemporaryDirectory(prefix="fw-", dir="/tmp") as d:
        yield Path(d) / "worker.sock"


def _context(data_dir: Path, site: str, sock: Path | None) -> Context:
    node_config: dict[str, str | int] = {P.NODE_SITE: site}
    if sock is not None:
        node_config[P.NODE_WORKER] = str(sock)
    run_config = dict(F.flatten(_app(data_dir)))
    return Context(run_id=1, node_id=11, node_config=node_config, state=RecordDict(), run_config=run_config)


def _start(sock: Path, n: int) -> threading.Thread:
    """A worker thread that answers ``n`` connections, then stops; started once its socket accepts."""
    thread = threading.Thread(target=worker.serve, args=(sock,), kwargs={"max_requests": n}, daemon=True)
    thread.start()
    for _ in range(500):
        if sock.exists():
            return thread
        threading.Event().wait(0.01)
    raise AssertionError("the worker did not bind its socket")


def _untimed(reply: Message) -> dict[str, object]:
    """A reply's metrics but the handler's timings, which differ from one call to the next."""
    return {k: v for k, v in reply.content.metric_records.get(P.METRICS, {}).items() if k not in P.TIMINGS}


def _arrays(reply: Message) -> list[np.ndarray]:
    return reply.content.array_records[P.ARRAYS].to_numpy_ndarrays()


def test_the_worker_replies_exactly_as_the_client_app_process_would(
    tiny_cohort: list[SiteStore], tiny_data_dir: Path, sock: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a worker for three messages, logging from its start (it logs its socket once bound, which can be
    # after the socket file appears); the same messages handled in this process for comparison
    caplog.set_level(logging.INFO, logger="fedami.worker")
    thread = _start(sock, 3)
    train = _message(MessageType.TRAIN, {P.SERVER_ROUND: 2})
    evaluate = _message(MessageType.EVALUATE, {P.EVAL_SPLIT: "val"})
    query = _message(MessageType.QUERY, {})
    inline = make_client_app()
    here = _context(tiny_data_dir, "hospital_b", None)

    # Execute: through the ClientApp, whose node config names the worker
    there = _context(tiny_data_dir, "hospital_b", sock)
    with caplog.at_level(logging.INFO):
        got = [client_app.app(m, there) for m in (train, evaluate, query)]
        thread.join(30)

    # Assert: the same weights, metrics and answers; the worker served all three and removed its socket
    sent = (train, evaluate, query)
    want = [inline(m, here) for m in sent]
    assert all(g.metadata.reply_to_message_id == m.metadata.message_id for g, m in zip(got, sent, strict=True))
    for a, b in zip(_arrays(got[0]), _arrays(want[0]), strict=True):
        np.testing.assert_array_equal(a, b)
    for g, w in zip(got, want, strict=True):
        assert _untimed(g) == _untimed(w)
    assert dict(got[2].content.config_records[P.CONFIG]) == {P.HOSPITAL: "hospital_b"}
    assert not thread.is_alive() and not sock.exists()
    said = [r.getMessage() for r in caplog.records if r.name == "fedami.worker"]
    assert said[0].startswith(f"hospital worker on {sock} (source ")
    assert [m.split(" in ")[0] for m in said[1:]] == [
        "train message replied",
        "evaluate message replied",
        "query message replied",
    ]
    assert not any(r.name == "fedami.client" for r in caplog.records)


def test_no_worker_at_the_socket_is_logged_and_the_message_is_handled_here(
    tiny_cohort: list[SiteStore], tiny_data_dir: Path, sock: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a socket path nobody serves, and a stale socket file left by a dead worker
    stale = sock.with_name("stale.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(stale))
    dead.close()
    msg = _message(MessageType.EVALUATE, {P.EVAL_SPLIT: "val"})

    # Execute
    with caplog.at_level(logging.WARNING, logger="fedami.client"):
        replies = [client_app.app(msg, _context(tiny_data_dir, "hospital_a", path)) for path in (sock, stale)]

    # Assert: both answered, as this process answers without a worker, with the reason in the log
    want = make_client_app()(msg, _context(tiny_data_dir, "hospital_a", None))
    for reply in replies:
        assert dict(reply.content.metric_records[P.METRICS]) == dict(want.content.metric_records[P.METRICS])
    warnings = [r.getMessage() for r in caplog.records if "did not answer" in r.getMessage()]
    assert len(warnings) == 2
    assert "FileNotFoundError" in warnings[0] and "ConnectionRefusedError" in warnings[1]


def test_a_handler_error_in_the_worker_is_raised_in_the_client_app_with_its_text(
    tiny_cohort: list[SiteStore], tiny_data_dir: Path, sock: Path
) -> None:
    # Prepare: the node names a hospital that is not one of the run's
    thread = _start(sock, 1)
    msg = _message(MessageType.TRAIN, {P.SERVER_ROUND: 1})

    # Execute / Assert: the worker's error, not a fallback that would fail the same way later
    with pytest.raises(worker.WorkerTaskError, match="hospital_x"):
        client_app.handle(msg, _context(tiny_data_dir, "hospital_x", sock))
    thread.join(30)
    assert not thread.is_alive()


def test_a_worker_running_other_code_refuses_and_the_message_is_handled_here(
    tiny_cohort: list[SiteStore],
    tiny_data_dir: Path,
    sock: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: the worker started with this source; the ClientApp then claims another
    thread = _start(sock, 1)
    monkeypatch.setattr(worker, "code_digest", lambda: "0" * 64)
    msg = _message(MessageType.QUERY, {})

    # Execute
    with caplog.at_level(logging.WARNING, logger="fedami.client"):
        reply = client_app.app(msg, _context(tiny_data_dir, "hospital_c", sock))
    thread.join(30)

    # Assert
    assert dict(reply.content.config_records[P.CONFIG]) == {P.HOSPITAL: "hospital_c"}
    assert any("runs other code" in r.getMessage() for r in caplog.records)


def test_a_garbled_request_is_dropped_and_the_worker_serves_the_next(
    tiny_cohort: list[SiteStore], tiny_data_dir: Path, sock: Path
) -> None:
    # Prepare: a worker for two connections; the first sends a frame length far beyond any model, then hangs up
    thread = _start(sock, 2)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bad:
        bad.connect(str(sock))
        bad.sendall(b"\xff" * 8)

    # Execute
    reply = client_app.handle(_message(MessageType.QUERY, {}), _context(tiny_data_dir, "hospital_a", sock))
    thread.join(30)

    # Assert: the worker answered the good request after dropping the bad one
    assert dict(reply.content.config_records[P.CONFIG]) == {P.HOSPITAL: "hospital_a"}
    assert not thread.is_alive()


def test_the_worker_refuses_a_path_that_is_no_socket_or_is_served_already(
    tiny_cohort: list[SiteStore], tiny_data_dir: Path, sock: Path
) -> None:
    # Prepare: a plain file at one path; a live worker on another (its second connection: the probe below)
    sock.write_text("not a socket")
    live = sock.with_name("live.sock")
    thread = _start(live, 2)

    # Execute / Assert: both refused before binding; the live worker keeps its socket, which only its user may open
    with pytest.raises(FileExistsError, match="not a socket"):
        worker.serve(sock, lambda m, c: m)
    with pytest.raises(FileExistsError, match="already serves"):
        worker.serve(live, lambda m, c: m)
    assert live.stat().st_mode & 0o777 == 0o600
    reply = client_app.handle(_message(MessageType.QUERY, {}), _context(tiny_data_dir, "hospital_a", live))
    thread.join(30)
    assert dict(reply.content.config_records[P.CONFIG]) == {P.HOSPITAL: "hospital_a"}
    assert not thread.is_alive() and sock.read_text() == "not a socket"


def test_a_long_lived_process_reads_a_re_prepared_store_anew(tiny_cohort: list[SiteStore], tiny_data_dir: Path) -> None:
    # Prepare: one hospital's training split, read once (cached)
    cfg = _app(tiny_data_dir).model_copy(update={"data": StoresConfig(stores=tiny_cohort[0].path.parent)})
    hospital = Hospital(0, tiny_cohort[0].path.name, tiny_cohort[0].path)
    first = hospital_split(cfg, hospital, "train")
    assert hospital_split(cfg, hospital, "train") is first

    # Execute: the store is prepared again (its manifest rewritten)
    manifest = hospital.store / MANIFEST_FILE
    manifest.write_bytes(manifest.read_bytes())
    stat = manifest.stat()
    os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))

    # Assert: read anew, with the same content
    again = hospital_split(cfg, hospital, "train")
    assert again is not first
    np.testing.assert_array_equal(again.x, first.x)
