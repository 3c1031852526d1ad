"""The hospital's message handlers: translate messages to :mod:`common.federation.hospital` calls.

Only the model's weights and aggregates leave the hospital: the training reply carries weights,
``num-examples``, the loss and the settings it trained with; the evaluation reply carries score
histograms and confusion counts, never a per-record score or label.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from common.config import AppConfig
from common.federation import compression as C
from common.federation import histograms as H
from common.federation import protocol as P
from common.federation.hospital import (
    Hospital,
    LocalEvalResult,
    StateDict,
    app_config,
    claimed_hospital,
    evaluation_metrics,
    hospital_of,
    hospital_spec,
    hospital_split,
    local_evaluate,
    local_train,
    local_train_config,
    planned_training,
)

FAULT_ENV = "FEDAMI_INJECT_FAULT"
"""Fault injection for deployment tests: ``nan-weights`` makes this node's training replies carry NaN weights."""


def make_client_app(overrides: Mapping[str, str | int | float | bool] | None = None) -> ClientApp:
    """A ClientApp whose run config is ``context.run_config`` updated with ``overrides``.

    A deployed node runs them through :data:`client.app.app` (no overrides), in its own process or in
    the hospital's warm worker (:mod:`client.worker`); ``sim/simulation.py`` passes the fold's flat run
    config here because the simulation engine gives ClientApps an empty one.
    """
    app = ClientApp()

    def settings(context: Context) -> AppConfig:
        return app_config({**context.run_config, **(overrides or {})})

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        start = time.perf_counter()
        cfg = settings(context)
        hospital = hospital_of(cfg, context.node_config)
        config: ConfigRecord = msg.content.config_records[P.CONFIG]
        server_round = int(P.number(config, P.SERVER_ROUND))  # global: a resumed run's strategy counts on
        plan = planned_training(cfg, hospital, server_round, P.number(config, P.PROXIMAL_MU, 0.0))
        received = msg.content.array_records[P.ARRAYS]
        weights = received.to_torch_state_dict()
        # The previous round's model, validated in this round's exchange: one message per round, not two.
        validation = None
        lap = time.perf_counter()
        if config.get(P.VALIDATE, False):
            validation = evaluation_metrics(evaluate_split(cfg, hospital, weights, "val"), hospital.index)
        validated = time.perf_counter()
        data = hospital_split(cfg, hospital, "train")
        read = time.perf_counter()
        res = local_train(weights, data, plan)
        done = time.perf_counter()
        metrics: dict[str, H.MetricValue] = {
            P.NUM_EXAMPLES: res.num_examples,
            P.NUM_POSITIVES: res.num_positives,
            P.TRAIN_LOSS: res.train_loss,
            P.SITE_INDEX: hospital.index,
            P.VALIDATE_S: validated - lap,
            P.READ_S: read - validated,
            P.TRAIN_S: done - read,
        }
        state = res.state
        if os.environ.get(FAULT_ENV) == "nan-weights":
            state = {k: v.float() * float("nan") if v.is_floating_point() else v for k, v in state.items()}
        method = cfg.federated.update_compression
        arrays = ArrayRecord(state)
        if method != "none":
            sent = {k: a.numpy() for k, a in received.items()}
            trained = {k: v.detach().cpu().numpy() for k, v in state.items()}
            arrays = ArrayRecord({k: Array(v) for k, v in C.encode(trained, sent, method).items()})
        metrics[P.HANDLER_S] = time.perf_counter() - start
        content: dict[str, ArrayRecord | MetricRecord | ConfigRecord] = {
            P.ARRAYS: arrays,
            P.METRICS: MetricRecord(metrics),
            **({P.VAL_METRICS: MetricRecord(validation)} if validation is not None else {}),
            P.CONFIG: ConfigRecord(
                {
                    P.TRAINED_WITH: res.trained_with.model_dump_json(),
                    P.INPUT_SPEC: hospital_spec(cfg, hospital).model_dump_json(),
                    P.UPDATE_COMPRESSION: method,
                }
            ),
        }
        return Message(RecordDict(content), reply_to=msg)

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        """Which hospital this node holds: the server maps hospitals to nodes by it."""
        hospital = claimed_hospital(settings(context), context.node_config)
        return Message(RecordDict({P.CONFIG: ConfigRecord({P.HOSPITAL: hospital})}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        cfg = settings(context)
        hospital = hospital_of(cfg, context.node_config)
        config: ConfigRecord = msg.content.config_records[P.CONFIG]
        res = evaluate_split(
            cfg,
            hospital,
            msg.content.array_records[P.ARRAYS].to_torch_state_dict(),
            str(config.get(P.EVAL_SPLIT, "val")),
            P.number(config, P.THRESHOLD) if P.THRESHOLD in config else None,
            int(P.number(config, P.N_BOOT)) if P.N_BOOT in config else None,
        )
        return Message(evaluation_content(res, hospital.index), reply_to=msg)

    return app


def evaluation_content(res: LocalEvalResult, site_index: int) -> RecordDict:
    """An evaluation reply's content: the metric record and, in a test round, the replicate arrays."""
    content: dict[str, ArrayRecord | MetricRecord | ConfigRecord] = {
        P.METRICS: MetricRecord(evaluation_metrics(res, site_index))
    }
    if replicates := H.replicate_arrays(res.replicates, res.subgroups):
        content[P.REPLICATES] = ArrayRecord({k: Array(v) for k, v in replicates.items()})
    return RecordDict(content)


def evaluate_split(
    cfg: AppConfig,
    hospital: Hospital,
    state: StateDict,
    split: str,
    threshold: float | None = None,
    n_boot: int | None = None,
) -> LocalEvalResult:
    """``state`` scored on the hospital's ``split``, reduced to what an evaluation reply may carry."""
    return local_evaluate(
        state,
        hospital_split(cfg, hospital, split),
        local_train_config(cfg, cfg.train.seed),
        threshold,
        n_boot=n_boot,
        boot_seed=H.hospital_seed(cfg.train.seed, hospital.index),
    )
