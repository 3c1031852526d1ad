"""Flower ClientApp: one hospital. Translates messages to :mod:`common.federation.hospital` calls.

Only the model's weights and aggregate counts leave the hospital: the training reply carries
weights and ``num-examples``/loss; the evaluation reply carries score histograms and confusion
counts, never a per-record score or label.
"""

from __future__ import annotations

from collections.abc import Mapping

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from common.federation import protocol as P
from common.federation.hospital import local_evaluate, local_train, round_seed, site_split
from common.federation.protocol import RunSettings, settings_from_run_config

MetricValue = int | float | list[int] | list[float]


def make_client_app(overrides: Mapping[str, str | int | float | bool] | None = None) -> ClientApp:
    """A ClientApp whose run config is ``context.run_config`` updated with ``overrides``.

    ``flwr run`` uses the module-level :data:`app` (no overrides); ``sim/run.py`` passes its
    settings here because the simulation engine gives ClientApps an empty run config.
    """
    app = ClientApp()

    def settings(context: Context) -> RunSettings:
        return settings_from_run_config({**context.run_config, **(overrides or {})})

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        s = settings(context)
        site = s.site_of(context.node_config)
        config: ConfigRecord = msg.content.config_records[P.CONFIG]
        server_round = int(P.number(config, P.SERVER_ROUND))  # global: a resumed run's strategy counts on
        data = site_split(s.data, site, s.data_dir_of(context.node_config), "train", s.train.target_fs)
        res = local_train(
            msg.content.array_records[P.ARRAYS].to_torch_state_dict(),
            data,
            s.local_train_config,
            epochs=s.federated.local_epochs,
            seed=round_seed(s.train.seed, site, server_round),
            prox_mu=P.number(config, P.PROXIMAL_MU, 0.0),
            rounds=(server_round, max(server_round, s.federated.rounds)),
        )
        metrics: dict[str, MetricValue] = {
            P.NUM_EXAMPLES: res.num_examples,
            P.TRAIN_LOSS: res.train_loss,
            P.SITE_INDEX: site,
        }
        return Message(RecordDict({P.ARRAYS: ArrayRecord(res.state), P.METRICS: MetricRecord(metrics)}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        s = settings(context)
        site = s.site_of(context.node_config)
        config: ConfigRecord = msg.content.config_records[P.CONFIG]
        split = str(config.get(P.EVAL_SPLIT, "val"))
        threshold = P.number(config, P.THRESHOLD) if P.THRESHOLD in config else None
        data = site_split(s.data, site, s.data_dir_of(context.node_config), split, s.train.target_fs)
        res = local_evaluate(
            msg.content.array_records[P.ARRAYS].to_torch_state_dict(),
            data,
            s.train,
            threshold,
        )
        metrics: dict[str, MetricValue] = {
            P.NUM_EXAMPLES: res.num_examples,
            P.SITE_INDEX: site,
            P.POS_HIST: res.histogram.pos.tolist(),
            P.NEG_HIST: res.histogram.neg.tolist(),
        }
        if res.counts is not None:
            metrics.update({P.TP: res.counts.tp, P.FP: res.counts.fp, P.TN: res.counts.tn, P.FN: res.counts.fn})
        return Message(RecordDict({P.METRICS: MetricRecord(metrics)}), reply_to=msg)

    return app


app = make_client_app()
