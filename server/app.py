"""Flower ServerApp: a registered strategy over the training hospitals, checkpoints, final test round."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from common.federation import histograms as H
from common.federation import outputs as O
from common.federation import protocol as P
from common.federation.hospital import Hospital, app_config, hospitals, planned_training
from common.models import create_model
from common.training.engine import load_checkpoint, seed_everything
from server.checkpoints import RoundTracker, histogram_summary, histograms_by_site, site_index
from server.strategies import create_strategy, load_server_state, server_state


def wait_for_hospitals(grid: Grid, n_sites: int, timeout_s: float) -> list[int]:
    """Node ids once ``n_sites`` hospitals are connected; a clear error instead of waiting forever."""
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) >= n_sites:
            return nodes
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{len(nodes)} of {n_sites} hospitals connected after {timeout_s:.0f} s: start one SuperNode per "
                f"training hospital (in a local simulation: options.num-supernodes = {n_sites})"
            )
        time.sleep(0.1)


class RecordingGrid:
    """Delegates to a Grid and records which node received which message type (for audits and tests)."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self.sent: list[tuple[str, int]] = []
        self.node_site: dict[int, int] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Replies in hospital order, not arrival order.

        Aggregation sums floating-point weights in reply order, so arrival order (which depends on
        which process finished first) would otherwise change the global model in its last bits.
        """
        messages = list(messages)
        self.sent.extend((m.metadata.message_type, m.metadata.dst_node_id) for m in messages)
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for r in replies:
            if not r.has_error() and P.METRICS in r.content.metric_records:
                self.node_site[r.metadata.src_node_id] = site_index(r.content)
        return sorted(replies, key=self._order)

    def _order(self, reply: Message) -> tuple[int, int]:
        node = reply.metadata.src_node_id
        return self.node_site.get(node, -1), node


def final_test_round(
    grid: Grid | RecordingGrid, nodes: list[int], arrays: ArrayRecord, threshold: float | None, names: tuple[str, ...]
) -> dict[str, Any]:
    """Every training hospital evaluates the final model on its test split at the transferred threshold."""
    config: dict[str, Any] = {P.EVAL_SPLIT: "test"}
    if threshold is not None:
        config[P.THRESHOLD] = threshold
    content = RecordDict({P.ARRAYS: arrays, P.CONFIG: ConfigRecord(config)})
    messages = [Message(content=content, dst_node_id=n, message_type=MessageType.EVALUATE) for n in nodes]
    replies = [r for r in grid.send_and_receive(messages) if not r.has_error()]
    if len(replies) != len(nodes):
        raise RuntimeError(f"{len(nodes) - len(replies)} of {len(nodes)} hospitals failed the final test round")
    summary = histogram_summary(histograms_by_site([r.content for r in replies]), names)
    summary["threshold"] = threshold
    for r in replies:
        m = r.content.metric_records[P.METRICS]
        if P.TP in m:
            c = H.ThresholdCounts(*(int(P.number(m, k)) for k in (P.TP, P.FP, P.TN, P.FN)))
            summary["sites"][names[site_index(r.content)]].update(
                {
                    "tp": c.tp,
                    "fp": c.fp,
                    "tn": c.tn,
                    "fn": c.fn,
                    "sensitivity": c.sensitivity,
                    "specificity": c.specificity,
                }
            )
    return summary


def make_server_app(overrides: Mapping[str, str | int | float | bool] | None = None) -> ServerApp:
    """A ServerApp whose run config is ``context.run_config`` updated with ``overrides``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        t0 = time.perf_counter()
        cfg = app_config({**context.run_config, **(overrides or {})})
        names = hospitals(cfg)
        n = len(names)
        nodes = wait_for_hospitals(grid, n, cfg.federated.hospital_wait_s)
        timing = {"wait_for_hospitals_s": time.perf_counter() - t0}
        seed_everything(cfg.train.seed)
        model = create_model(cfg.train.model)
        out = cfg.output.dir
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / O.APP_CONFIG).write_text(cfg.model_dump_json(indent=2) + "\n")
        optimiser_state: dict[str, Any] = {}
        weights = model.state_dict()
        if cfg.output.resume is not None:
            tracker, weights, optimiser_state = RoundTracker.resume(out, cfg.output.resume, names)
            # A clear error if the checkpoint is another model's; the saved arrays go on unchanged
            # (FedAdam/FedYogi keep float64 weights, which the float32 model would round).
            model.load_state_dict(weights)
        else:
            tracker = RoundTracker(out, names)
        prox_mu = cfg.federated.proximal_mu if cfg.federated.strategy == "fedprox" else 0.0
        tracker.expect = lambda i, r: planned_training(cfg, Hospital(i, names[i], Path()), r, prox_mu).model_dump(
            mode="json"
        )
        remaining = cfg.federated.rounds - tracker.offset
        if remaining < 0:
            raise ValueError(
                f"checkpoint is at round {tracker.offset}, past the {cfg.federated.rounds} rounds asked for"
            )
        recording = RecordingGrid(grid)
        strategy = create_strategy(
            cfg.federated,
            n,
            round_offset=tracker.offset,
            train_metrics_aggr_fn=tracker.aggregate_train,
            evaluate_metrics_aggr_fn=tracker.aggregate_evaluate,
        )
        load_server_state(strategy, optimiser_state)
        tracker.server_state = partial(server_state, strategy)
        tracker.start_timing()
        t_rounds = time.perf_counter()
        result = strategy.start(
            grid=recording,  # type: ignore[arg-type]
            initial_arrays=ArrayRecord(weights),
            train_config=ConfigRecord(),
            evaluate_config=ConfigRecord({P.EVAL_SPLIT: "val"}),
            num_rounds=remaining,
            evaluate_fn=tracker.end_round,
        )
        best = (
            ArrayRecord(load_checkpoint(out / "best.pt"))
            if out is not None and (out / "best.pt").is_file()
            else result.arrays
        )
        threshold = H.youden_threshold(tracker.best_val_histogram) if tracker.best_val_histogram is not None else None
        t_test = time.perf_counter()
        timing["rounds_s"] = t_test - t_rounds
        test = final_test_round(recording, nodes[:n], best, threshold, names)
        timing["test_round_s"] = time.perf_counter() - t_test
        timing["server_app_s"] = time.perf_counter() - t0
        if out is not None:
            audit = {
                "sent": recording.sent,
                "node_site": {str(k): names[v] for k, v in recording.node_site.items()},
                "best_round": tracker.best_round,
                "best_val_auroc": tracker.best_auroc,
            }
            (out / O.MESSAGES).write_text(json.dumps(audit, indent=2) + "\n")
            (out / O.TEST).write_text(json.dumps(test, indent=2) + "\n")
            (out / O.TIMING).write_text(json.dumps({k: round(v, 3) for k, v in timing.items()}, indent=2) + "\n")

    return app


app = make_server_app()
