"""Per-round bookkeeping of the federated run: metrics, checkpoints, the best round, resume.

The round loop (``server.app.train_rounds``) spends one exchange per round: round ``r``'s training message
also has the hospitals validate round ``r - 1``'s model, and the last round's model is validated in an
exchange of its own. :class:`RoundTracker` follows it: :meth:`~RoundTracker.aggregate_train` (the strategy's
train-metrics hook) and :meth:`~RoundTracker.end_train` record a trained round and write its weights
(``last.pt``), the round number with its metrics (``last.json``) and the history; :meth:`~RoundTracker.validated`
later pools the hospitals' validation histograms of that round's model into the federated validation AUROC
and writes ``best.pt``/``best.json`` when it beats the best so far. A checkpoint whose round was not
validated yet (the run stopped in between) is validated first when the run resumes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from flwr.app import ArrayRecord, MetricRecord, RecordDict

from common.config import flat as F
from common.data.store import write_json
from common.evaluation.subgroups import SUBGROUPS
from common.federation import histograms as H
from common.federation import outputs as O
from common.federation import protocol as P
from common.federation import results as R
from common.models.card import HospitalData, InputSpec, ModelCard, common_spec, write_card
from common.training.engine import load_checkpoint, save_checkpoint
from server.roster import evaluation_values

SERVER_STATE: Final[str] = "server_state.pt"


def _metrics(reply: RecordDict) -> MetricRecord:
    return reply.metric_records[P.METRICS]


def site_index(reply: RecordDict) -> int:
    return int(P.number(_metrics(reply), P.SITE_INDEX))


def _histogram(reply: RecordDict) -> H.ScoreHistogram:
    m = _metrics(reply)
    return H.ScoreHistogram(np.asarray(m[P.POS_HIST]), np.asarray(m[P.NEG_HIST]))


def histograms_by_site(replies: Sequence[RecordDict]) -> dict[int, H.ScoreHistogram]:
    """Each hospital's score histogram from evaluation replies, by the hospital's index."""
    return {site_index(r): _histogram(r) for r in replies}


def site_test(reply: RecordDict, names: Sequence[str]) -> R.SiteTest:
    """A checked test reply (``server.roster.check_reply``) as plain objects."""
    m = evaluation_values(reply)
    counts = H.ThresholdCounts(*(int(P.number(m, k)) for k in (P.TP, P.FP, P.TN, P.FN))) if P.TP in m else None
    replicates = None
    if P.REP_BINS in m:  # checked: (n-boot, bins) arrays
        replicates = H.ReplicateHistograms(np.asarray(m[P.REP_BINS], np.int64), m[P.REP_POS], m[P.REP_NEG])
    return R.SiteTest(
        hospital=names[site_index(reply)],
        histogram=_histogram(reply),
        n_patients=int(P.number(m, P.NUM_PATIENTS)),
        counts=counts,
        replicates=replicates,
        subgroups=H.read_subgroups(m, len(SUBGROUPS)),
        calibration=H.read_calibration(m),
    )


def histogram_summary(hists: dict[int, H.ScoreHistogram], names: Sequence[str]) -> dict[str, Any]:
    """AUROC/AUPRC at all hospitals together and at each (by name) from histograms (None where a class is missing)."""
    everything = sum(hists.values(), H.empty())
    return {
        O.ALL_SITES: R.point_figures(everything),
        "sites": {names[k]: R.point_figures(v) for k, v in sorted(hists.items())},
    }


def _check_training(hospital: str, reported: dict[str, Any], expected: dict[str, Any]) -> None:
    """A hospital must train with exactly the settings the server was given."""
    diff = [f"{key} {got!r} (the run's: {want!r})" for key, got, want in F.differences(reported, expected)]
    if diff:
        raise RuntimeError(
            f"hospital {hospital!r} trained round {reported.get('server_round')} with other settings than the run's: "
            + "; ".join(diff)
        )


@dataclass
class RoundTracker:
    """State of a federated run across rounds; ``offset`` is the round a resumed run starts after."""

    out_dir: Path | None
    hospitals: tuple[str, ...]
    offset: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_round: int | None = None
    best_auroc: float | None = None
    best_val_histogram: H.ScoreHistogram | None = None
    server_state: Callable[[], dict[str, np.ndarray]] | None = None
    """The strategy's server-optimiser state, saved with every round's weights when not empty."""
    trained_with: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Per hospital, what it reported training with in each round (``trained_with.json``)."""
    expect: Callable[[int, int], dict[str, Any]] | None = None
    """What hospital ``i`` must train with in round ``r`` (the server's plan); a reply that differs stops the run."""
    card: Callable[[str, float | None, float | None], ModelCard] | None = None
    """``(kept, validation AUROC, threshold) -> the model card`` written beside every checkpoint."""
    specs: dict[str, InputSpec] = field(default_factory=dict)
    """How each hospital's data were prepared, as its training replies say (they must agree)."""
    training_data: dict[str, HospitalData] = field(default_factory=dict)
    """Each hospital's training ECGs and positives, as its last training reply says."""
    events: Sequence[Any] = ()
    """The grid's record of lost hospitals and rejected replies (:class:`server.roster.RoundEvents`), in order."""
    _events_seen: int = 0
    _round: dict[str, Any] = field(default_factory=dict)
    _pending: dict[str, torch.Tensor] | None = None
    """The last trained round's weights (``history[-1]``) while they wait for their validation (for ``best.pt``)."""
    _mark: float = field(default_factory=time.perf_counter)

    def _lap(self) -> float:
        """Seconds since the previous hook (or since the tracker was made); wall time per phase."""
        now = time.perf_counter()
        seconds, self._mark = now - self._mark, now
        return round(seconds, 3)

    def start_timing(self) -> None:
        """Call when the strategy starts, so round 1's training time excludes start-up."""
        self._mark = time.perf_counter()

    @classmethod
    def resume(
        cls, out_dir: Path | None, checkpoint_dir: Path, hospitals: tuple[str, ...]
    ) -> tuple[RoundTracker, dict[str, Any], dict[str, np.ndarray]]:
        """A tracker that continues the run saved in ``checkpoint_dir``, its last weights and server state."""
        last = json.loads((checkpoint_dir / "last.json").read_text())
        tracker = cls(
            out_dir,
            hospitals,
            offset=int(last["round"]),
            history=json.loads((checkpoint_dir / O.HISTORY).read_text()),
        )
        if (checkpoint_dir / O.TRAINED_WITH).is_file():
            tracker.trained_with = json.loads((checkpoint_dir / O.TRAINED_WITH).read_text())
        if (checkpoint_dir / "best.json").is_file():
            best = json.loads((checkpoint_dir / "best.json").read_text())
            tracker.best_round, tracker.best_auroc = best["round"], best["val_auroc"]
            hist = np.load(checkpoint_dir / "best_val_histogram.npz")
            tracker.best_val_histogram = H.ScoreHistogram(hist["pos"], hist["neg"])
        state_file = checkpoint_dir / SERVER_STATE
        server = {k: v.numpy() for k, v in load_checkpoint(state_file).items()} if state_file.is_file() else {}
        weights = load_checkpoint(checkpoint_dir / "last.pt")
        if tracker.history and "val" not in tracker.history[-1]:
            tracker._pending = weights  # stopped before its validation: the resumed run does it first
        return tracker, weights, server

    def aggregate_train(self, replies: list[RecordDict], weight_key: str) -> MetricRecord:
        ms = [_metrics(r) for r in replies]
        n = np.array([P.number(m, weight_key) for m in ms])
        loss = float(np.average([P.number(m, P.TRAIN_LOSS) for m in ms], weights=n))
        trained = {}
        for r, m in zip(replies, ms, strict=True):
            name = self.hospitals[site_index(r)]
            config = r.config_records.get(P.CONFIG)
            if config is not None and P.TRAINED_WITH in config:
                reported = json.loads(str(config[P.TRAINED_WITH]))
                if self.expect is not None:
                    _check_training(name, reported, self.expect(site_index(r), int(reported["server_round"])))
                self.trained_with.setdefault(name, []).append(reported)
            if config is not None and P.INPUT_SPEC in config:
                self.specs[name] = InputSpec.model_validate_json(str(config[P.INPUT_SPEC]))
                common_spec(self.specs)  # hospitals whose data were prepared differently stop the run here
            positives = int(P.number(m, P.NUM_POSITIVES)) if P.NUM_POSITIVES in m else None
            ecgs = int(P.number(m, weight_key))
            self.training_data[name] = HospitalData(ecgs=ecgs, positives=positives)
            trained[name] = {"examples": ecgs, "loss": P.number(m, P.TRAIN_LOSS), **_timings(m)}
        self._round = {
            "train_loss": loss,
            "train_examples": int(n.sum()),
            "trained": dict(sorted(trained.items(), key=lambda kv: self.hospitals.index(kv[0]))),
            "train_s": self._lap(),
        }
        return MetricRecord({P.TRAIN_LOSS: loss, P.NUM_EXAMPLES: int(n.sum())})

    @property
    def awaiting_validation(self) -> bool:
        """Whether the last trained round's model still waits for its validation."""
        return self._pending is not None

    def _take_events(self, entry: dict[str, Any]) -> None:
        """Put the lost hospitals and rejected replies since the last call into the round ``entry``."""
        for event in self.events[self._events_seen :]:
            entry.setdefault("lost", {}).update({f"{event.kind}:{k}": v for k, v in event.lost.items()})
            entry.setdefault("rejected", {}).update({f"{event.kind}:{k}": v for k, v in event.rejected.items()})
        self._events_seen = len(self.events)

    def end_train(self, server_round: int, arrays: ArrayRecord) -> None:
        """Round ``server_round`` (Flower's count) trained into ``arrays``: record it and write its checkpoint."""
        global_round = server_round + self.offset
        entry = {"round": global_round, **self._round, "evaluate_s": 0.0}
        self._take_events(entry)
        away = [h for h in self.hospitals if h not in entry.get("trained", {})]
        if away:
            entry["did_not_train"] = away  # lost, rejected, or not connected when the round was sampled
        self.history.append(entry)
        state = arrays.to_torch_state_dict()
        self._pending = state
        if self.out_dir is not None:
            save_checkpoint(self.out_dir / "last.pt", state, {"round": global_round, "metrics": entry})
            if self.card is not None:
                write_card(self.out_dir / "last.pt", self.card(f"round {global_round} (the last so far)", None, None))
            server = self.server_state() if self.server_state is not None else {}
            if server:
                tensors = {k: torch.from_numpy(np.array(v)) for k, v in server.items()}
                save_checkpoint(self.out_dir / SERVER_STATE, tensors, {"round": global_round})
            self._write_history()
        self._round = {}
        self._lap()  # checkpoint writing is counted in neither phase

    def validated(self, replies: Sequence[RecordDict], *, own_exchange: bool) -> None:
        """The hospitals' validation of the last trained round's model; keep it if it is the best so far.

        ``replies`` hold evaluation metrics (``metrics``); ``own_exchange``: they came in an exchange of
        their own (the last round's), timed as its ``evaluate_s``, rather than with the next round's training.
        """
        if self._pending is None:
            raise RuntimeError("no trained round waits for its validation")
        state, self._pending = self._pending, None
        entry = self.history[-1]  # validated before the next round is recorded
        global_round = entry["round"]
        hists = histograms_by_site(replies)
        val = sum(hists.values(), H.empty())
        entry["val"] = histogram_summary(hists, self.hospitals)
        if own_exchange:
            entry["evaluate_s"] = self._lap()
            self._take_events(entry)
        auc = entry["val"][O.ALL_SITES]["auroc"]
        improved = auc is not None and (self.best_auroc is None or auc > self.best_auroc)
        if improved:
            self.best_round, self.best_auroc, self.best_val_histogram = global_round, auc, val
        if self.out_dir is None:
            return
        # last.pt holds this round: its sidecar and card get the validation too
        write_json(self.out_dir / "last.json", {"round": global_round, "metrics": entry})
        if self.card is not None:
            write_card(self.out_dir / "last.pt", self.card(f"round {global_round} (the last so far)", auc, None))
        self._write_history()
        if improved:
            save_checkpoint(self.out_dir / "best.pt", state, {"round": global_round, "val_auroc": auc})
            if self.card is not None:
                kept = f"round {global_round} (best validation AUROC so far; no threshold until the run ends)"
                write_card(self.out_dir / "best.pt", self.card(kept, auc, None))
            np.savez(self.out_dir / "best_val_histogram.npz", pos=val.pos, neg=val.neg)

    def _write_history(self) -> None:
        assert self.out_dir is not None
        write_json(self.out_dir / O.HISTORY, self.history)
        write_json(self.out_dir / O.TRAINED_WITH, self.trained_with)


def _timings(metrics: MetricRecord) -> dict[str, float]:
    """A training reply's handler timings (:data:`~common.federation.protocol.TIMINGS`) as ``read_s`` etc.; a value
    that is missing, not a number, negative or not finite is left out (they are the hospital's say-so)."""
    out = {}
    for key in P.TIMINGS:
        value = metrics.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
            out[key.replace("-", "_")] = round(float(value), 3)
    return out
