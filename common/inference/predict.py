"""Scoring ECGs with a checkpoint, each record prepared exactly as the checkpoint's model card says.

Raw records (WFDB, a manifest, a challenge folder) take ingest's own path (:func:`common.data.ingest.prepare_record`,
then :func:`common.data.arrays.model_input`); a prepared store is scored only if it was prepared as
the card says, and then exactly as evaluation scores it. A record that cannot be read or fails quality
control is listed with its reason and never stops the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from common.config import QCConfig
from common.data.arrays import EcgArrays, load_split, model_input
from common.data.ingest import prepare_record
from common.data.npyfile import Signals
from common.data.preprocess import demographics
from common.data.qc import check_row
from common.data.readers.base import QCReason, RawEcg, RecordError, Source
from common.data.store import SiteStore, write_json
from common.evaluation.bootstrap import bootstrap_ci
from common.evaluation.metrics import auprc
from common.evaluation.tables import format_ci, format_value
from common.evaluation.thresholds import threshold_metrics
from common.models.card import CardError, InputSpec, ModelCard, lead_stats, store_spec
from common.training.engine import predict

SCORED: Final[str] = "scored"
PREDICTIONS_FILE: Final[str] = "predictions.csv"
SUMMARY_FILE: Final[str] = "summary.json"
COLUMNS: Final[tuple[str, ...]] = (
    "record_id", "patient_id", "site", "age", "sex", "label", "score", "flag", "status", "detail",
)  # fmt: skip
_CHUNK: Final[int] = 256


@dataclass(frozen=True)
class Predictions:
    """One row per record offered (:data:`COLUMNS`), scored or not, and the card that scored them."""

    rows: pd.DataFrame
    card: ModelCard

    @property
    def scored(self) -> pd.DataFrame:
        return self.rows[self.rows["status"] == SCORED]


def _stats(spec: InputSpec, stats_site: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    if spec.preprocessing.normalise != "site_train":
        return None
    if stats_site is None:
        raise CardError(
            "the model standardises each record with its hospital's training statistics: name the training hospital "
            f"whose statistics to use (--stats-site, one of {sorted(spec.site_stats)})"
        )
    return lead_stats(spec, stats_site)


def prepare_input(
    raw: RawEcg, spec: InputSpec, qc: QCConfig, stats: tuple[np.ndarray, np.ndarray] | None
) -> np.ndarray:
    """One record as read -> the model's ``(12, n_samples)`` input, or :class:`RecordError` with the reason."""
    x, _ = prepare_record(raw, spec.preprocessing, qc)
    return model_input(x, spec.preprocessing.target_fs, spec.model_fs, raw=False, stats=stats)


def _flags(scores: np.ndarray, threshold: float | None) -> list[object]:
    return [None] * len(scores) if threshold is None else [int(s >= threshold) for s in scores]


def _score(model: nn.Module, card: ModelCard, x: Signals, meta: pd.DataFrame) -> np.ndarray:
    y = np.zeros(len(meta), np.float32)  # unused by prediction
    return predict(model, EcgArrays(x, demographics(meta), y, meta), card.train)


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def predict_source(
    model: nn.Module,
    card: ModelCard,
    source: Source,
    *,
    qc: QCConfig | None = None,
    stats_site: str | None = None,
    progress: bool = True,
    on_scored: Callable[[list[int], np.ndarray], None] | None = None,
) -> Predictions:
    """Score every record of ``source``; each unusable one is a row with its reason instead of a score.

    ``on_scored(rows, inputs)`` receives each batch's scored row numbers and their model inputs (the
    explanations draw what was scored, never a second preparation of it).
    """
    qc = qc or QCConfig(require_label=False)
    stats = _stats(card.input, stats_site)
    index = source.index().reset_index(drop=True)
    records = index.to_dict("records")
    status = [SCORED] * len(records)
    detail = [""] * len(records)
    seen: dict[str, int] = {}
    for i, row in enumerate(records):
        try:
            rid = str(row["record_id"])
            if rid in seen:
                raise RecordError(QCReason.DUPLICATE, f"record id also at input row {seen[rid] + 1}; scored once")
            seen[rid] = i
            check_row(row, qc)
        except RecordError as err:
            status[i], detail[i] = err.reason.value, err.detail
    scores = np.full(len(records), np.nan)
    todo = [i for i in range(len(records)) if status[i] == SCORED]
    bar = tqdm(total=len(records), desc="scoring", unit="ECG", disable=not progress)
    bar.update(len(records) - len(todo))
    for chunk in _chunks(todo, _CHUNK):
        good, signals = [], []
        for i in chunk:
            try:
                signals.append(prepare_input(source.load(records[i]), card.input, qc, stats))
                good.append(i)
            except RecordError as err:
                status[i], detail[i] = err.reason.value, err.detail
            except Exception as err:  # a reader failing in an unforeseen way is still one listed record
                status[i], detail[i] = QCReason.UNREADABLE.value, f"{type(err).__name__}: {err}"
        if good:
            batch = np.stack(signals)
            scores[good] = _score(model, card, batch, index.iloc[good].reset_index(drop=True))
            if on_scored is not None:
                on_scored(good, batch)
        bar.update(len(chunk))
    bar.close()
    rows = index.reindex(columns=["record_id", "patient_id", "site", "age", "sex", "label"]).copy()
    rows["score"] = scores
    rows["flag"] = [None if math.isnan(s) else f for s, f in zip(scores, _flags(scores, card.threshold), strict=True)]
    rows["status"], rows["detail"] = status, detail
    return Predictions(rows[list(COLUMNS)], card)


def check_store(store: SiteStore, card: ModelCard) -> None:
    """A store is scored only if it was prepared exactly as the model's training data was."""
    spec = store_spec(store, card.input.model_fs)
    diff = card.input.same_preparation(spec)
    if diff:
        raise CardError(
            f"store {store.path} was prepared differently from the model's training data ({'; '.join(diff)}): "
            "scoring it would give wrong scores; score the raw records instead (they are prepared as the card says) "
            "or ingest them with the card's preprocessing"
        )


def predict_store(model: nn.Module, card: ModelCard, store: SiteStore, split: str | None = None) -> Predictions:
    """Score a prepared store (or one split), exactly as evaluation reads and scores it."""
    check_store(store, card)
    data = load_split(store, split, card.input.model_fs)
    scores = _score(model, card, data.x, data.meta)
    rows = data.meta.reindex(columns=["record_id", "patient_id", "site", "age", "sex", "label"]).copy()
    rows["score"] = scores
    rows["flag"] = _flags(scores, card.threshold)
    rows["status"], rows["detail"] = SCORED, ""
    return Predictions(rows[list(COLUMNS)], card)


def summarise(pred: Predictions, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Counts by status and flagged records; with labels AUROC [patient-bootstrap CI], AUPRC, sens/spec at threshold."""
    rows, card = pred.rows, pred.card
    scored = pred.scored
    skipped = rows.loc[rows["status"] != SCORED, "status"].value_counts().sort_index()
    out: dict[str, Any] = {
        "model": card.model,
        "arm": card.arm,
        "threshold": card.threshold,
        "threshold_source": card.threshold_source,
        "records": len(rows),
        "scored": len(scored),
        "skipped": {str(k): int(v) for k, v in skipped.items()},
        "flagged": None if card.threshold is None else int((scored["flag"] == 1).sum()),
        "labelled": 0,
    }
    labelled = scored[scored["label"].notna()]
    out["labelled"] = len(labelled)
    if len(labelled) == 0:
        return out
    y, s = labelled["label"].to_numpy(np.float64), labelled["score"].to_numpy(np.float64)
    out["positives"] = int(y.sum())
    if 0 < y.sum() < len(y):
        ci = bootstrap_ci("auroc", y, s, labelled["patient_id"].astype(str).to_numpy(), n_boot=n_boot, seed=seed)
        out["auroc"], out["auroc_ci"] = ci.estimate, [ci.lower, ci.upper]
        out["auprc"] = auprc(y, s)
    else:
        out["auroc"] = None
        out["note"] = "the labelled records are of one class: no AUROC"
    if card.threshold is not None:
        at = threshold_metrics(y, s, card.threshold)
        out.update(sensitivity=at.sensitivity, specificity=at.specificity, ppv=at.ppv, npv=at.npv)
    return out


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """The summary as a few readable lines."""
    lines = [
        f"model {summary['model']} ({summary['arm']}); threshold {format_value(summary['threshold'])} "
        f"({summary['threshold_source']})",
        f"{summary['scored']} of {summary['records']} records scored"
        + (f", {summary['flagged']} at or above the threshold" if summary["flagged"] is not None else ""),
    ]
    for reason, n in summary["skipped"].items():
        lines.append(f"  not scored: {n} {reason} (see {PREDICTIONS_FILE}: status, detail)")
    if summary.get("auroc") is not None:
        lo, hi = summary["auroc_ci"]
        lines.append(
            f"labelled {summary['labelled']} ({summary['positives']} AMI): "
            f"AUROC {format_ci(summary['auroc'], lo, hi)}, AUPRC {format_value(summary['auprc'])}"
        )
    if "sensitivity" in summary:
        lines.append(
            f"at the threshold: sensitivity {format_value(summary['sensitivity'])}, "
            f"specificity {format_value(summary['specificity'])}, NPV {format_value(summary['npv'])}"
        )
    if "note" in summary:
        lines.append(summary["note"])
    return lines


def write_predictions(out: Path, pred: Predictions, summary: Mapping[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pred.rows.to_csv(out / PREDICTIONS_FILE, index=False)
    write_json(out / SUMMARY_FILE, {**summary, "card": pred.card.model_dump(mode="json")})
