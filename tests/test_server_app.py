from __future__ import annotations

from pathlib import Path

import pytest
from flwr.app import ConfigRecord, MetricRecord, RecordDict

from common.federation import protocol as P

pytestmark = pytest.mark.usefixtures("as_server_task")  # tests build instruction messages


def _train_reply(site: int, trained_with: dict[str, object]) -> RecordDict:
    import json

    metrics = MetricRecord({P.NUM_EXAMPLES: 10, P.TRAIN_LOSS: 0.5, P.SITE_INDEX: site})
    return RecordDict({P.METRICS: metrics, P.CONFIG: ConfigRecord({P.TRAINED_WITH: json.dumps(trained_with)})})


def test_a_hospital_that_trained_with_other_settings_stops_the_run(tmp_path: Path) -> None:
    # Prepare: the server's plan for round 1; hospital_b reports another learning rate
    from common.config import AppConfig
    from common.federation.hospital import Hospital, planned_training
    from server.checkpoints import RoundTracker

    app = AppConfig()
    names = ("hospital_a", "hospital_b", "hospital_c")

    def plan(i: int, r: int) -> dict[str, object]:
        return planned_training(app, Hospital(i, names[i], Path()), r, 0.0).model_dump(mode="json")

    tracker = RoundTracker(tmp_path, names, expect=plan)
    wrong = plan(1, 1)
    wrong["train"] = {**wrong["train"], "lr": 0.1}  # type: ignore[dict-item]

    # Execute / Assert: the faithful replies pass and are recorded; the other one names what differs
    tracker.aggregate_train([_train_reply(0, plan(0, 1)), _train_reply(2, plan(2, 1))], P.NUM_EXAMPLES)
    assert set(tracker.trained_with) == {"hospital_a", "hospital_c"}
    with pytest.raises(
        RuntimeError, match=r"'hospital_b' trained round 1 with other settings.*train\.lr 0\.1 \(the run's: 0\.002\)"
    ):
        tracker.aggregate_train([_train_reply(1, wrong)], P.NUM_EXAMPLES)


def test_the_hospitals_timings_are_recorded_and_odd_ones_left_out(tmp_path: Path) -> None:
    # Prepare: one hospital reports every timing, another a negative and a NaN one, the third none
    from server.checkpoints import RoundTracker

    def reply(site: int, timings: dict[str, float]) -> RecordDict:
        metrics = MetricRecord({P.NUM_EXAMPLES: 10, P.TRAIN_LOSS: 0.5, P.SITE_INDEX: site})
        for k, v in timings.items():
            metrics[k] = v
        return RecordDict({P.METRICS: metrics})

    good = {P.READ_S: 0.25, P.VALIDATE_S: 1.0, P.TRAIN_S: 3.5, P.HANDLER_S: 5.0}
    odd = {P.READ_S: -1.0, P.VALIDATE_S: float("nan"), P.TRAIN_S: 2.0}
    tracker = RoundTracker(tmp_path, ("hospital_a", "hospital_b", "hospital_c"))

    # Execute
    tracker.aggregate_train([reply(0, good), reply(1, odd), reply(2, {})], P.NUM_EXAMPLES)
    trained = tracker._round["trained"]

    # Assert: recorded under the history's names; what is not a non-negative finite number is not recorded
    assert trained["hospital_a"] == {
        "examples": 10, "loss": 0.5, "read_s": 0.25, "validate_s": 1.0, "train_s": 3.5, "handler_s": 5.0,
    }  # fmt: skip
    assert trained["hospital_b"] == {"examples": 10, "loss": 0.5, "train_s": 2.0}
    assert trained["hospital_c"] == {"examples": 10, "loss": 0.5}


def test_hospitals_whose_data_were_prepared_differently_stop_the_run(tmp_path: Path) -> None:
    # Prepare: hospital_b's store was standardised per record, the others kept mV
    from common.config import PreprocessConfig
    from common.models.card import CardError, InputSpec
    from server.checkpoints import RoundTracker

    def reply(site: int, normalise: str) -> RecordDict:
        spec = InputSpec(preprocessing=PreprocessConfig(normalise=normalise), model_fs=100)  # type: ignore[arg-type]
        metrics = MetricRecord({P.NUM_EXAMPLES: 10, P.NUM_POSITIVES: 2, P.TRAIN_LOSS: 0.5, P.SITE_INDEX: site})
        return RecordDict({P.METRICS: metrics, P.CONFIG: ConfigRecord({P.INPUT_SPEC: spec.model_dump_json()})})

    tracker = RoundTracker(tmp_path, ("hospital_a", "hospital_b", "hospital_c"))
    # Execute / Assert: agreeing hospitals are recorded with their counts; the odd one out names what differs
    tracker.aggregate_train([reply(0, "none"), reply(2, "none")], P.NUM_EXAMPLES)
    assert tracker.training_data["hospital_c"].positives == 2 and set(tracker.specs) == {"hospital_a", "hospital_c"}
    with pytest.raises(CardError, match=r"'hospital_a' and 'hospital_b' were prepared differently.*normalise"):
        tracker.aggregate_train([reply(1, "per_record")], P.NUM_EXAMPLES)


def _val_reply(site: int, pos: int, neg: int) -> RecordDict:
    """Validation metrics of one hospital: its positives in the top bin, negatives in the bottom one."""
    from common.federation import histograms as H

    p, n = [0] * H.N_BINS, [0] * H.N_BINS
    p[-1], n[0] = pos, neg
    return RecordDict({P.METRICS: MetricRecord({P.POS_HIST: p, P.NEG_HIST: n, P.SITE_INDEX: site})})


def test_a_round_is_checkpointed_when_trained_and_kept_as_best_when_its_validation_arrives(tmp_path: Path) -> None:
    # Prepare: a tracker that has trained round 1 (checkpoint written, validation pending)
    import json

    import torch
    from flwr.app import ArrayRecord

    from common.training.engine import load_checkpoint
    from server.checkpoints import RoundTracker

    names = ("hospital_a", "hospital_b")
    tracker = RoundTracker(tmp_path, names)
    tracker.aggregate_train([_train_reply(0, {}), _train_reply(1, {})], P.NUM_EXAMPLES)
    tracker.end_train(1, ArrayRecord({"w": torch.ones(2)}))
    assert tracker.awaiting_validation and not (tmp_path / "best.pt").exists()
    assert json.loads((tmp_path / "last.json").read_text())["round"] == 1

    # Execute: a stop here resumes awaiting round 1's validation; the run itself gets it with round 2's exchange
    resumed, weights, _ = RoundTracker.resume(None, tmp_path, names)
    tracker.aggregate_train([_train_reply(0, {}), _train_reply(1, {})], P.NUM_EXAMPLES)
    tracker.validated([_val_reply(0, 2, 3), _val_reply(1, 1, 4)], own_exchange=False)
    tracker.end_train(2, ArrayRecord({"w": torch.zeros(2)}))

    # Assert
    assert resumed.awaiting_validation and resumed.offset == 1 and torch.equal(weights["w"], torch.ones(2))
    assert tracker.best_round == 1 and tracker.best_auroc == 1.0 and tracker.awaiting_validation
    assert torch.equal(load_checkpoint(tmp_path / "best.pt")["w"], torch.ones(2))  # round 1's weights, not round 2's
    assert torch.equal(load_checkpoint(tmp_path / "last.pt")["w"], torch.zeros(2))
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["round"] for h in history] == [1, 2] and "val" in history[0] and "val" not in history[1]
    assert history[0]["val"]["sites"]["hospital_b"]["n"] == 5
    with pytest.raises(RuntimeError, match="no trained round waits"):
        RoundTracker(None, names).validated([], own_exchange=True)
