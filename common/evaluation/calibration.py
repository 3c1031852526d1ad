"""Calibration: Brier score, reliability curve and expected calibration error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from common.evaluation.metrics import JsonResult, MetricError, finite_scores, labels01


def probabilities(p: ArrayLike, n: int, what: str) -> np.ndarray:
    arr = finite_scores(p, n, what)
    if len(arr) and (arr.min() < 0.0 or arr.max() > 1.0):
        raise MetricError(f"{what} needs probabilities in [0, 1]; got {arr.min():.4g} to {arr.max():.4g}")
    return arr


def brier_score(y: ArrayLike, p: ArrayLike) -> float:
    """Mean squared difference between probability and 0/1 outcome (sklearn's ``brier_score_loss``)."""
    yy = labels01(y, "Brier score")
    pp = probabilities(p, len(yy), "Brier score")
    if len(yy) == 0:
        raise MetricError("Brier score needs at least one ECG")
    return float(np.mean((pp - yy) ** 2))


@dataclass(frozen=True)
class ReliabilityCurve(JsonResult):
    """Equal-width calibration bins on [0, 1].

    Attributes
    ----------
    bin_edges : (n_bins + 1,) array
    count : (n_bins,) array
        ECGs per bin.
    mean_predicted : (n_bins,) array
        Mean probability in the bin, NaN for an empty bin.
    observed : (n_bins,) array
        Fraction positive in the bin, NaN for an empty bin.
    """

    bin_edges: np.ndarray
    count: np.ndarray
    mean_predicted: np.ndarray
    observed: np.ndarray


def reliability_curve(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> ReliabilityCurve:
    """Reliability-diagram data: ``n_bins`` equal-width bins of the probability.

    Bin ``b`` holds ``b/n_bins <= p < (b+1)/n_bins`` (computed as ``floor(p * n_bins)``); the last bin also
    holds ``p == 1``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    yy = labels01(y, "reliability curve")
    pp = probabilities(p, len(yy), "reliability curve")
    b = np.minimum((pp * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(np.int64)
    sum_p = np.bincount(b, weights=pp, minlength=n_bins)
    sum_y = np.bincount(b, weights=yy.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / count, np.nan)
        obs = np.where(count > 0, sum_y / count, np.nan)
    return ReliabilityCurve(np.linspace(0.0, 1.0, n_bins + 1), count, mean_p, obs)


def expected_calibration_error(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> float:
    """ECE: ``sum_b (n_b / n) * |observed_b - mean_predicted_b|`` over equal-width bins.

    Bins as in :func:`reliability_curve` (``n_bins`` equal-width bins on [0, 1], the last closed); each bin
    is weighted by its share of ECGs, empty bins contribute nothing.
    """
    curve = reliability_curve(y, p, n_bins)
    n = int(curve.count.sum())
    if n == 0:
        raise MetricError("ECE needs at least one ECG")
    used = curve.count > 0
    gap = np.abs(curve.observed[used] - curve.mean_predicted[used])
    return float(np.sum(curve.count[used] / n * gap))
