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
