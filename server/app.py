"""Flower ServerApp: a registered strategy over the training hospitals, checkpoints, final test round.

The strategies see the grid through :class:`server.roster.HospitalGrid`: one node per training
hospital, identified by name, replies checked and ordered; the fault policy is documented there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from torch import nn

from common.config import AppConfig
from common.config.paths import server_out_dir
from common.data.store import write_json
from common.evaluation.tables import format_ci_pair
from common.federation import histograms as H
from common.federation import outputs as O
from common.federation import protocol as P
from common.federation import results as R
from common.federation.hospital import Hospital, app_config, hospitals, planned_training
from common.models.card import ModelCard, common_spec, make_card, write_card
from common.training.engine import build_model, load_checkpoint, seed_everything
from server.checkpoints import RoundTracker, site_test
from server.roster import HospitalGrid, HospitalsError
from server.strategies import create_strategy, load_server_state, server_state

log = logging.getLogger("flwr.fedami")  # under Flower's logger: shown by `flwr log` and in simulation


def evaluate_everywhere(grid: HospitalGrid, arrays: ArrayRecord, config: dict[str, Any]) -> list[RecordDict]:
    """Every connected training hospital evaluates ``arrays`` as ``config`` says; their usable replies."""
    content = RecordDict({P.ARRAYS: arrays, P.CONFIG: ConfigRecord(config)})
    messages = [Message(content=content, dst_node_id=n, message_type=MessageType.EVALUATE) for n in grid.get_node_ids()]
    return [r.content for r in grid.send_and_receive(messages) if not r.has_error()]


def train_rounds(
    strategy: FedAvg, grid: HospitalGrid, tracker: RoundTracker, arrays: ArrayRecord, num_rounds: int
) -> ArrayRecord:
    """Train ``num_rounds`` rounds, one exchange each; returns the last global weights.

    Flower's ``Strategy.start`` spends two exchanges per round (train, then evaluate), and in a deployment
    every exchange costs seconds of Flower's own polling and a ClientApp process per hospital whatever the
    data size. Here round ``r``'s training message also asks each hospital to validate the weights it brings
    (round ``r - 1``'s model) before training from them; only the last round's model is validated in an
    exchange of its own. The figures are those of ``Strategy.start``: the same weights are validated.
    """
    offset = tracker.offset
    strategy.summary()
    for r in range(1, num_rounds + 1):
        log.info("[ROUND %d/%d]", r + offset, num_rounds + offset)
        validating = tracker.awaiting_validation
        messages = strategy.configure_train(r, arrays, ConfigRecord({P.VALIDATE: validating}), grid)  # type: ignore[arg-type]
        replies = grid.send_and_receive(messages)
        validations = [
            RecordDict({P.METRICS: m.content.metric_records.pop(P.VAL_METRICS)})
            for m in replies
            if not m.has_error() and P.VAL_METRICS in m.content.metric_records
        ]
        trained, _ = strategy.aggregate_train(r, replies)
        if validating:
            tracker.validated(validations, own_exchange=False)
        arrays = trained if trained is not None else arrays
        tracker.end_train(r, arrays)
    if tracker.awaiting_validation:
        log.info("validating the last round's model")
        tracker.validated(evaluate_everywhere(grid, arrays, {P.EVAL_SPLIT: "val"}), own_exchange=True)
    return arrays


def final_test_round(
    grid: HospitalGrid, arrays: ArrayRecord, threshold: float | None, cfg: AppConfig
) -> dict[str, Any]:
    """Every connected training hospital evaluates the final model on its test split at the transferred threshold.

    Each sends its score histogram, its counts at the threshold and its patient-bootstrap replicates
    (``evaluation.n-boot``); the figures are built from those alone (:mod:`common.federation.results`).
    """
    config: dict[str, Any] = {P.EVAL_SPLIT: "test", P.N_BOOT: cfg.evaluation.n_boot}
    if threshold is not None:
        config[P.THRESHOLD] = threshold
    replies = evaluate_everywhere(grid, arrays, config)
    names = grid.hospitals
    tests = [site_test(r, names) for r in replies]
    summary = R.summarise_test(tests, names, threshold, seed=cfg.train.seed, n_boot=cfg.evaluation.n_boot)
    for problem in summary["problems"]:
        log.warning("final test round: %s", problem)
    return summary


def _log_test(test: Mapping[str, Any], out: Path) -> None:
    every = test[O.ALL_SITES]
    log.info(
        "final test AUROC at all hospitals: %s (%d ECGs)", format_ci_pair(every["auroc"], every["auroc_ci"]), every["n"]
    )
    for site, s in test["sites"].items():
        log.info(
            "  %s: AUROC %s (%d ECGs, %d AMI)", site, format_ci_pair(s["auroc"], s["auroc_ci"]), s["n"], s["positives"]
        )
    log.info("results: %s (%s)", out, R.REPORT)


THRESHOLD_SOURCE = "Youden on the training hospitals' pooled validation histograms of the kept round"


def _card(
    cfg: AppConfig, model: nn.Module, tracker: RoundTracker, kept: str, val_auroc: float | None, threshold: float | None
) -> ModelCard:
    """The card of a federated checkpoint: the hospitals' own account of their data, the run's settings."""
    return make_card(
        model,
        train=cfg.train,
        spec=common_spec(tracker.specs),
        arm="federated",
        training_data=tracker.training_data,
        kept=kept,
        validation_auroc=val_auroc,
        threshold=threshold,
        threshold_source=THRESHOLD_SOURCE if threshold is not None else "none yet: chosen when the run ends",
        config=cfg,
    )


def run_server(grid: Grid, cfg: AppConfig) -> Path:
    """One federated run: wait for every hospital, train the rounds, test; returns the output folder."""
    t0 = time.perf_counter()
    names = hospitals(cfg)
    f = cfg.federated
    min_hospitals = f.min_hospitals if f.min_hospitals is not None else len(names)
    roster = HospitalGrid(
        grid,
        names,
        min_hospitals=min(min_hospitals, len(names)),
        wait_s=f.hospital_wait_s,
        compression=f.update_compression,
    )
    out = cfg.output.dir or server_out_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / O.APP_CONFIG).write_text(cfg.model_dump_json(indent=2) + "\n")
    log.info("federated run over %s; output folder %s", list(names), out)
    try:
        roster.wait_for_all()
    except HospitalsError as err:
        write_json(out / O.STOPPED, {"reason": str(err), "round": 0})
        raise
    timing = {"wait_for_hospitals_s": time.perf_counter() - t0}
    seed_everything(cfg.train.seed)
    model = build_model(cfg.train)
    optimiser_state: dict[str, Any] = {}
    weights = model.state_dict()
    if cfg.output.resume is not None:
        tracker, weights, optimiser_state = RoundTracker.resume(out, cfg.output.resume, names)
        # A clear error if the checkpoint is another model's; the saved arrays go on unchanged
        # (FedAdam/FedYogi keep float64 weights, which the float32 model would round).
        model.load_state_dict(weights)
    else:
        tracker = RoundTracker(out, names)
    prox_mu = f.proximal_mu if f.strategy == "fedprox" else 0.0
    tracker.expect = lambda i, r: planned_training(cfg, Hospital(i, names[i], Path()), r, prox_mu).model_dump(
        mode="json"
    )
    tracker.events = roster.events
    tracker.card = partial(_card, cfg, model, tracker)
    remaining = f.rounds - tracker.offset
    if remaining < 0:
        raise ValueError(f"checkpoint is at round {tracker.offset}, past the {f.rounds} rounds asked for")
    strategy = create_strategy(
        f,
        roster.min_hospitals,
        round_offset=tracker.offset,
        train_metrics_aggr_fn=tracker.aggregate_train,
    )
    load_server_state(strategy, optimiser_state)
    tracker.server_state = partial(server_state, strategy)
    tracker.start_timing()
    t_rounds = time.perf_counter()
    try:
        final = train_rounds(strategy, roster, tracker, ArrayRecord(weights), remaining)
        best = ArrayRecord(load_checkpoint(out / "best.pt")) if (out / "best.pt").is_file() else final
        threshold = H.youden_threshold(tracker.best_val_histogram) if tracker.best_val_histogram is not None else None
        t_test = time.perf_counter()
        timing["rounds_s"] = t_test - t_rounds
        test = final_test_round(roster, best, threshold, cfg)
    except HospitalsError as err:
        last = tracker.history[-1]["round"] if tracker.history else tracker.offset
        write_json(out / O.STOPPED, {"reason": str(err), "round": last, "resume": str(out)})
        log.error("stopped after round %s: %s", last, err)
        raise
    timing["test_round_s"] = time.perf_counter() - t_test
    if (out / "best.pt").is_file() and tracker.specs:
        kept = f"round {tracker.best_round} of {f.rounds} (best validation AUROC over all training hospitals)"
        write_card(out / "best.pt", _card(cfg, model, tracker, kept, tracker.best_auroc, threshold))
    timing["server_app_s"] = time.perf_counter() - t0
    audit = {
        "sent": roster.sent,
        "node_site": {str(n): roster.hospital_of(n) for n in sorted({node for _, node in roster.sent})},
        "best_round": tracker.best_round,
        "best_val_auroc": tracker.best_auroc,
    }
    write_json(out / O.MESSAGES, audit)
    write_json(out / O.TEST, test)
    write_json(out / O.TIMING, {k: round(v, 3) for k, v in timing.items()})
    R.write_report(out, test, tracker.history)
    _log_test(test, out)
    return out


def make_server_app(overrides: Mapping[str, str | int | float | bool] | None = None) -> ServerApp:
    """A ServerApp whose run config is ``context.run_config`` updated with ``overrides``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, app_config({**context.run_config, **(overrides or {})}))

    return app


app = make_server_app()
