"""A hospital's warm worker: the ClientApp's handlers in one long-lived process, fed over a Unix socket.

Flower 1.42 starts a new ClientApp process for every message. Each one imported torch, built the model
and mapped the hospital's store again before it could train for a fraction of a second: on 2 cores that is
most of a 10-20 s message (``benchmarks/bench_deployment.py``). A hospital may run
``fedami deploy worker --socket PATH`` beside its SuperNode and name the socket in the SuperNode's node
config (``worker-socket="PATH"``). The ClientApp process then imports neither torch nor the data code: it
sends the message and its context to the worker and returns the worker's reply content.

The socket is a file on the hospital's host that only its owner may open (mode 0600); nothing is exposed on
a network. Messages and replies travel as Flower's own protobuf records, never as pickles.

Fault policy (every case logged by the ClientApp):

- no worker at the socket, a stale socket, or a worker that goes away before it replies: the message is
  handled in the ClientApp process itself, by the same handlers, so the reply is the same;
- a worker that runs other code than the ClientApp (another fedami version or source, e.g. an app submitted
  after the worker started): it refuses the message and the ClientApp handles it itself;
- an error raised by a handler in the worker (a missing store, bad settings): raised in the ClientApp with
  the worker's text, as the handler would have raised it there (the server counts it like a lost hospital).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from types import FrameType

from flwr.app import Context, Message
from flwr.common.serde import (
    context_from_proto,
    context_to_proto,
    message_from_proto,
    message_to_proto,
    recorddict_from_proto,
    recorddict_to_proto,
)
from flwr.proto.message_pb2 import Context as ProtoContext
from flwr.proto.message_pb2 import Message as ProtoMessage
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict
from google.protobuf.message import DecodeError

log = logging.getLogger("fedami.worker")

REPLY, FAILED, OTHER_CODE = 0, 1, 2
"""The first byte of the worker's answer: a reply's content, a handler's error text, or a refusal."""
CONNECT_TIMEOUT_S = 5.0
_LENGTH = struct.Struct(">Q")
_MAX_FRAME = 1 << 34  # 16 GiB: far above any model's weights; a larger length is a corrupt stream
SOURCE_PACKAGES = ("client", "common")
"""The packages whose source the worker and the ClientApp must share."""


class WorkerUnavailable(RuntimeError):
    """The worker could not be reached, went away before replying, or runs other code."""


class WorkerTaskError(RuntimeError):
    """A handler raised in the worker; the text is the worker's ``Type: message``."""


def source_digest(files: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over (relative posix path, content) pairs, in path order."""
    h = hashlib.sha256()
    for name, content in sorted(files):
        h.update(name.encode() + b"\0" + content + b"\0")
    return h.hexdigest()


@cache
def code_digest() -> str:
    """:func:`source_digest` of this process's handlers' source (every ``.py`` of ``client`` and ``common``)."""
    root = Path(__file__).resolve().parents[1]
    return source_digest(
        (path.relative_to(root).as_posix(), path.read_bytes())
        for package in SOURCE_PACKAGES
        for path in (root / package).rglob("*.py")
    )


def _send(conn: socket.socket, *frames: bytes) -> None:
    conn.sendall(b"".join(_LENGTH.pack(len(f)) + f for f in frames))


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError(f"the peer closed the connection with {left} of {n} bytes unread")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv_frame(conn: socket.socket) -> bytes:
    (n,) = _LENGTH.unpack(_recv_exact(conn, _LENGTH.size))
    if n > _MAX_FRAME:
        raise ConnectionError(f"a frame of {n} bytes: not a fedami worker stream")
    return _recv_exact(conn, n)


def forward(path: Path, msg: Message, context: Context) -> Message:
    """The worker's reply to ``msg``; :class:`WorkerUnavailable` if it cannot give one (handle it here)."""
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as err:  # no Unix sockets on this platform
        raise WorkerUnavailable(str(err)) from None
    with conn:
        try:
            conn.settimeout(CONNECT_TIMEOUT_S)
            conn.connect(str(path))
            conn.settimeout(None)  # training takes as long as it takes; Flower's message TTL bounds it
            _send(
                conn,
                code_digest().encode(),
                message_to_proto(msg).SerializeToString(),
                context_to_proto(context).SerializeToString(),
            )
            status = _recv_exact(conn, 1)[0]
            body = _recv_frame(conn)
        except OSError as err:  # absent, refused, stale socket, reset or closed mid-reply
            raise WorkerUnavailable(f"{type(err).__name__}: {err}") from None
    if status == REPLY:
        content = ProtoRecordDict()
        content.ParseFromString(body)
        # the context's state is not sent back: the handlers keep none across messages
        return Message(recorddict_from_proto(content), reply_to=msg)
    if status == OTHER_CODE:
        raise WorkerUnavailable(body.decode())
    raise WorkerTaskError(body.decode())


Handler = Callable[[Message, Context], Message]


def _answer(conn: socket.socket, handle: Handler, digest: str) -> tuple[str, str]:
    """Serve one request on ``conn``: (message type, outcome) for the log."""
    theirs = _recv_frame(conn).decode()
    raw_msg, raw_ctx = _recv_frame(conn), _recv_frame(conn)
    if theirs != digest:
        conn.sendall(bytes([OTHER_CODE]))
        _send(conn, f"the worker runs other code (source {digest[:12]}, the ClientApp's {theirs[:12]})".encode())
        return "?", "refused: other code"
    proto_msg, proto_ctx = ProtoMessage(), ProtoContext()
    proto_msg.ParseFromString(raw_msg)
    proto_ctx.ParseFromString(raw_ctx)
    msg = message_from_proto(proto_msg)
    try:
        reply = handle(msg, context_from_proto(proto_ctx))
    except Exception as err:  # the handler's error goes back to the ClientApp, which raises it there
        log.exception("%s message failed", msg.metadata.message_type)
        conn.sendall(bytes([FAILED]))
        _send(conn, f"{type(err).__name__}: {err}".encode())
        return msg.metadata.message_type, f"failed: {type(err).__name__}"
    conn.sendall(bytes([REPLY]))
    _send(conn, recorddict_to_proto(reply.content).SerializeToString())
    return msg.metadata.message_type, "replied"


def _bind(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise FileExistsError(f"{path} exists and is not a socket: choose another --socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with probe:
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # a dead worker's socket
            else:
                raise FileExistsError(f"another worker already serves {path}")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is born 0600: only this user's processes may connect
    try:
        server.bind(str(path))
    finally:
        os.umask(old)
    server.listen(8)
    return server


def serve(path: Path, handle: Handler | None = None, *, max_requests: int | None = None) -> int:
    """Answer ClientApps on the Unix socket ``path`` until SIGTERM/SIGINT (or ``max_requests``); returns the count.

    ``handle`` defaults to the hospital's handlers (:func:`client.handlers.make_client_app`), built once, so
    torch, the model code and the hospital's mapped store stay warm across messages.
    """
    if handle is None:
        from client.handlers import make_client_app

        handle = make_client_app()
    server = _bind(path)
    digest = code_digest()
    served = 0

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = (
        {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        if threading.current_thread() is threading.main_thread()
        else {}
    )
    log.info("hospital worker on %s (source %s)", path, digest[:12])
    try:
        while max_requests is None or served < max_requests:
            conn, _ = server.accept()
            with conn:
                start = time.perf_counter()
                try:
                    kind, outcome = _answer(conn, handle, digest)
                except (OSError, ValueError, DecodeError) as err:  # a ClientApp that went away, or a garbled request
                    kind, outcome = "?", f"dropped: {type(err).__name__}: {err}"
                served += 1
                log.info("%s message %s in %.2f s", kind, outcome, time.perf_counter() - start)
    except KeyboardInterrupt:
        log.info("hospital worker stopping after %d messages", served)
    finally:
        server.close()
        path.unlink(missing_ok=True)
        for s, h in previous.items():
            signal.signal(s, h)
    return served
