"""Flower ClientApp: one hospital. Hands each message to the hospital's handlers (:mod:`client.handlers`).

A SuperNode whose node config names a warm worker (``worker-socket``, :mod:`client.worker`) has the message
handled there; otherwise, or when the worker cannot answer, this process handles it itself. Importing this
module loads neither torch nor the data code: a forwarding ClientApp process never needs them.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from common.federation import protocol as P

log = logging.getLogger("fedami.client")

app = ClientApp()


@cache
def _handlers() -> ClientApp:
    from client.handlers import make_client_app

    return make_client_app()


def handle(msg: Message, context: Context) -> Message:
    """The hospital's reply to ``msg``: from its worker if the node config names one and it answers."""
    where = context.node_config.get(P.NODE_WORKER)
    if where:
        from client import worker

        try:
            return worker.forward(Path(str(where)), msg, context)
        except worker.WorkerUnavailable as err:
            log.warning("hospital worker at %s did not answer (%s): handling the message here", where, err)
    return _handlers()(msg, context)


@app.train()
def train(msg: Message, context: Context) -> Message:
    return handle(msg, context)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return handle(msg, context)


@app.query()
def query(msg: Message, context: Context) -> Message:
    return handle(msg, context)
