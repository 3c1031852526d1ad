"""Flower ClientApp: one hospital. Translates messages to :mod:`common.federated` calls."""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from common import protocol as P
from common.federated import local_evaluate, local_train, site_split
from common.protocol import settings_from_run_config

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    cohort, cfg, data_dir = settings_from_run_config(context.run_config)
    site = P.site_index(context.node_config, cohort.n_sites)
    server_round = int(msg.content.config_records[P.CONFIG][P.SERVER_ROUND])  # type: ignore[arg-type]
    data = site_split(cohort, site, data_dir, "train", cfg.target_fs)
    res = local_train(
        msg.content[P.ARRAYS].to_torch_state_dict(),  # type: ignore[union-attr]
        data,
        cfg,
        epochs=int(context.run_config[P.LOCAL_EPOCHS]),
        seed=cfg.seed * 1_000_003 + site * 1009 + server_round,
    )
    metrics = MetricRecord({P.NUM_EXAMPLES: res.num_examples, P.TRAIN_LOSS: res.train_loss})
    return Message(RecordDict({P.ARRAYS: ArrayRecord(res.state), P.METRICS: metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    cohort, cfg, data_dir = settings_from_run_config(context.run_config)
    data = site_split(cohort, P.site_index(context.node_config, cohort.n_sites), data_dir, "val", cfg.target_fs)
    res = local_evaluate(msg.content[P.ARRAYS].to_torch_state_dict(), data, cfg)  # type: ignore[union-attr]
    metrics: dict[str, int | float | list[int] | list[float]] = {P.NUM_EXAMPLES: res.num_examples}
    if res.auroc is not None:
        metrics[P.LOCAL_AUROC] = res.auroc
    return Message(RecordDict({P.METRICS: MetricRecord(metrics)}), reply_to=msg)
