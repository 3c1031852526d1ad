"""Operating-point metrics at a threshold chosen elsewhere (Youden on validation, applied to test)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from common.evaluation.metrics import JsonResult, MetricError, finite_scores, labels01


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else float(num / den)


def weighted_f1(tp: int, fp: int, tn: int, fn: int) -> float:
    """F1 of each class (0 where undefined) weighted by the class's support."""

    def f1(hit: int, false_call: int, miss: int) -> float:
        den = 2 * hit + false_call + miss
        return 2 * hit / den if den else 0.0

    n = tp + fp + tn + fn
    return ((tp + fn) * f1(tp, fp, fn) + (tn + fp) * f1(tn, fn, fp)) / n


@dataclass(frozen=True)
class ThresholdMetrics(JsonResult):
    """Operating-point metrics with "score >= threshold is positive"; None where a ratio is 0/0.

    Attributes
    ----------
    sensitivity : TP / (TP + FN)
    specificity : TN / (TN + FP)
    ppv : TP / (TP + FP)
    npv : TN / (TN + FN)
    accuracy : (TP + TN) / n
    weighted_f1 : per-class F1 weighted by each class's support in ``y`` (sklearn's
        ``f1_score(average="weighted", labels=[0, 1], zero_division=0)``); None when ``n == 0``.
    """

    threshold: float
    n: int
    positives: int
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: float | None
    specificity: float | None
    ppv: float | None
    npv: float | None
    accuracy: float | None
    weighted_f1: float | None


def threshold_metrics(y: ArrayLike, scores: ArrayLike, threshold: float) -> ThresholdMetrics:
    """Sensitivity, specificity, PPV, NPV, accuracy, weighted F1 and the 2x2 counts at ``threshold``.

    Parameters
    ----------
    y : array-like of 0/1
    scores : array-like of float
    threshold : float
        ECGs with ``score >= threshold`` are called positive.

    Returns
    -------
    ThresholdMetrics
        Ratios whose denominator is zero are None (for example PPV when nothing is called positive).
    """
    yy = labels01(y, "threshold metrics")
    s = finite_scores(scores, len(yy), "threshold metrics")
    if not math.isfinite(threshold):
        raise MetricError(f"threshold metrics: threshold must be finite, got {threshold}")
    pred = (s >= threshold).astype(np.int8)
    pos, call = yy == 1, pred == 1
    tp, fp = int((pos & call).sum()), int((~pos & call).sum())
    tn, fn = int((~pos & ~call).sum()), int((pos & ~call).sum())
    n = len(yy)
    f1 = None if n == 0 else weighted_f1(tp, fp, tn, fn)
    return ThresholdMetrics(
        threshold=float(threshold),
        n=n,
        positives=tp + fn,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        sensitivity=_ratio(tp, tp + fn),
        specificity=_ratio(tn, tn + fp),
        ppv=_ratio(tp, tp + fp),
        npv=_ratio(tn, tn + fn),
        accuracy=_ratio(tp + tn, n),
        weighted_f1=f1,
    )
