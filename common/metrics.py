"""Discrimination metrics with clear errors where they are undefined."""

from __future__ import annotations

import numpy as np


class MetricError(ValueError):
    """A metric is undefined for the data given (for example a split with one class only)."""


def _check(y: np.ndarray, scores: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    y, scores = np.asarray(y).ravel(), np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != scores.shape:
        raise MetricError(f"{what}: {len(y)} labels but {len(scores)} scores")
    if not np.all(np.isfinite(scores)):
        raise MetricError(f"{what}: {int((~np.isfinite(scores)).sum())} scores are NaN or infinite")
    n_pos = int((y == 1).sum())
    if n_pos == 0 or n_pos == len(y):
        raise MetricError(f"{what} needs both classes; got {n_pos} positives of {len(y)}")
    return y, scores


def auroc(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y, scores = _check(y, scores, "AUROC")
    return float(roc_auc_score(y, scores))


def auprc(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    y, scores = _check(y, scores, "AUPRC")
    return float(average_precision_score(y, scores))
