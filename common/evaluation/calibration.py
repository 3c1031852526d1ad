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
    return calibration_sums(y, p, 1).brier()


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


@dataclass(frozen=True)
class CalibrationSums:
    """What calibration needs, as sums over ECGs: per equal-width probability bin the ECGs, their summed
    probability and their positives, and the summed squared error. Sums of hospitals add up, so a
    federated test round computes the exact pooled calibration without any per-record score."""

    count: np.ndarray
    sum_p: np.ndarray
    sum_y: np.ndarray
    sq_err: float

    @property
    def n(self) -> int:
        return int(self.count.sum())

    def __add__(self, other: CalibrationSums) -> CalibrationSums:
        return CalibrationSums(
            self.count + other.count, self.sum_p + other.sum_p, self.sum_y + other.sum_y, self.sq_err + other.sq_err
        )

    def curve(self) -> ReliabilityCurve:
        count = self.count.astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_p = np.where(count > 0, self.sum_p / np.maximum(count, 1), np.nan)
            obs = np.where(count > 0, self.sum_y / np.maximum(count, 1), np.nan)
        return ReliabilityCurve(np.linspace(0.0, 1.0, len(count) + 1), count, mean_p, obs)

    def ece(self) -> float:
        """``sum_b (n_b / n) * |observed_b - mean_predicted_b|``; empty bins contribute nothing."""
        if self.n == 0:
            raise MetricError("ECE needs at least one ECG")
        curve = self.curve()
        used = curve.count > 0
        return float(np.sum(curve.count[used] / self.n * np.abs(curve.observed[used] - curve.mean_predicted[used])))

    def brier(self) -> float:
        if self.n == 0:
            raise MetricError("Brier score needs at least one ECG")
        return self.sq_err / self.n


def calibration_sums(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> CalibrationSums:
    """The sums of :class:`CalibrationSums` over ``n_bins`` equal-width bins.

    Bin ``b`` holds ``b/n_bins <= p < (b+1)/n_bins`` (computed as ``floor(p * n_bins)``); the last bin also
    holds ``p == 1``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    yy = labels01(y, "calibration").astype(np.float64)
    pp = probabilities(p, len(yy), "calibration")
    b = np.minimum((pp * n_bins).astype(np.int64), n_bins - 1)
    return CalibrationSums(
        np.bincount(b, minlength=n_bins).astype(np.int64),
        np.bincount(b, weights=pp, minlength=n_bins),
        np.bincount(b, weights=yy, minlength=n_bins),
        float(np.sum((pp - yy) ** 2)),
    )


def reliability_curve(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> ReliabilityCurve:
    """Reliability-diagram data: ``n_bins`` equal-width bins of the probability (as :func:`calibration_sums`)."""
    return calibration_sums(y, p, n_bins).curve()


def expected_calibration_error(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> float:
    """ECE: ``sum_b (n_b / n) * |observed_b - mean_predicted_b|`` over equal-width bins.

    Bins as in :func:`reliability_curve` (``n_bins`` equal-width bins on [0, 1], the last closed); each bin
    is weighted by its share of ECGs, empty bins contribute nothing.
    """
    return calibration_sums(y, p, n_bins).ece()
