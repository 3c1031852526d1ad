"""The one implementation of AUROC, average precision and the Youden threshold.

Every figure fedami reports is computed from *score levels*: the distinct score values (or the bins
of a score histogram) in ascending order with the positive and negative weight at each. The exact
metrics on per-ECG scores, the patient-bootstrap replicates (weights = how often each ECG's patient
was drawn) and the federated metrics on pooled score histograms (weights = counts per bin) all run
the same kernels below, so they cannot disagree about ties or thresholds.

Numpy only: a hospital's process imports this without scipy or scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


class MetricError(ValueError):
    """A metric is undefined for the data given (for example a split with one class only)."""


# --------------------------------------------------------------------------------------------------- inputs


def labels01(y: ArrayLike, what: str) -> np.ndarray:
    """Labels as int8 0/1, with a clear error for anything else."""
    arr = np.asarray(y).ravel()
    if arr.dtype == bool:
        return arr.astype(np.int8)
    try:
        num = arr.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise MetricError(f"{what}: labels must be 0/1, got {arr.dtype}") from e
    bad = ~np.isin(num, (0.0, 1.0))
    if bad.any():
        raise MetricError(f"{what}: labels must be 0/1; {int(bad.sum())} are not (e.g. {arr[bad][0]!r})")
    return num.astype(np.int8)


def finite_scores(scores: ArrayLike, n: int, what: str) -> np.ndarray:
    """Scores as float64, one per label, all finite."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(s) != n:
        raise MetricError(f"{what}: {n} labels but {len(s)} scores")
    if not np.all(np.isfinite(s)):
        raise MetricError(f"{what}: {int((~np.isfinite(s)).sum())} scores are NaN or infinite")
    return s


def need_both_classes(y: np.ndarray, what: str) -> None:
    pos = int(y.sum())
    if pos == 0 or pos == len(y):
        raise MetricError(f"{what} needs both classes; got {pos} positives of {len(y)}")


def jsonable(obj: Any) -> Any:
    """Plain Python for JSON: numpy scalars unwrapped, NaN/inf as None, tuples as lists."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


class JsonResult:
    """``to_dict()`` for the result dataclasses: JSON-ready, None for undefined values."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = jsonable(asdict(self))  # type: ignore[call-overload]
        return out


# -------------------------------------------------------------------------------------------- score levels


@dataclass(frozen=True)
class ScoreLevels:
    """Distinct score levels in ascending order: ``thresholds[k]`` is the lowest score of level k.

    ``pos`` and ``neg`` are the positive and negative weight per level, shape ``(L,)`` or
    ``(R, L)`` for R weightings at once (bootstrap replicates). ``above`` is a threshold above every
    level: calling ``score >= above`` positive calls nothing positive.
    """

    thresholds: np.ndarray
    pos: np.ndarray
    neg: np.ndarray
    above: float


@dataclass(frozen=True)
class LevelGrouping:
    """How one score vector groups into levels: sorted once, then weighted many times."""

    order: np.ndarray
    starts: np.ndarray
    y_sorted: np.ndarray
    thresholds: np.ndarray
    above: float

    @classmethod
    def of(cls, y: np.ndarray, scores: np.ndarray) -> LevelGrouping:
        order = np.argsort(scores, kind="mergesort")
        s = scores[order]
        if len(s) == 0:
            return cls(order, np.zeros(0, np.int64), np.zeros(0), s, math.inf)
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        return cls(order, starts, y[order].astype(np.float64), s[starts], float(np.nextafter(s[-1], np.inf)))

    def levels(self, weights: np.ndarray | None = None) -> ScoreLevels:
        """Weight per level; ``weights`` (n,) or (R, n) in the scores' order, default one per ECG."""
        w = np.ones(len(self.order)) if weights is None else np.asarray(weights, np.float64)[..., self.order]
        wp = w * self.y_sorted
        if len(self.starts) == 0:
            return ScoreLevels(self.thresholds, wp, wp, self.above)
        pos = np.add.reduceat(wp, self.starts, axis=-1)
        neg = np.add.reduceat(w - wp, self.starts, axis=-1)
        return ScoreLevels(self.thresholds, pos, neg, self.above)


def levels_of_scores(y: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> ScoreLevels:
    """Group per-ECG scores into distinct levels; ``weights`` (n,) or (R, n), default one per ECG."""
    return LevelGrouping.of(y, scores).levels(weights)


def auroc_of_levels(lv: ScoreLevels) -> np.ndarray:
    """Mann-Whitney AUROC ``sum_k P_k (N_<k + N_k / 2) / (P N)`` (ties count one half), per weighting.

    NaN where the positive or the negative weight is zero. With unit weights this is sklearn's
    ``roc_auc_score``; with weights, its ``sample_weight`` version.
    """
    pos, neg = lv.pos, lv.neg
    below = np.cumsum(neg, axis=-1) - neg
    p_tot, n_tot = pos.sum(axis=-1), neg.sum(axis=-1)
    num = (pos * (below + 0.5 * neg)).sum(axis=-1)
    ok = (p_tot > 0) & (n_tot > 0)
    return np.where(ok, num / np.where(ok, p_tot * n_tot, 1.0), np.nan)


def average_precision_of_levels(lv: ScoreLevels) -> np.ndarray:
    """``sum_k P_k / P * TP_k / (TP_k + FP_k)``, ``TP_k``/``FP_k`` the weight at scores ``>=`` level k.

    NaN where a class has no weight; sklearn's ``average_precision_score`` (with ``sample_weight``).
    """
    pos, neg = lv.pos, lv.neg
    p_tot, n_tot = pos.sum(axis=-1), neg.sum(axis=-1)
    tp = np.expand_dims(p_tot, -1) - np.cumsum(pos, axis=-1) + pos
    fp = np.expand_dims(n_tot, -1) - np.cumsum(neg, axis=-1) + neg
    called = tp + fp
    prec = np.divide(tp, called, out=np.zeros_like(tp), where=called > 0)
    ap = (pos * prec).sum(axis=-1)
    ok = (p_tot > 0) & (n_tot > 0)
    return np.where(ok, ap / np.where(ok, p_tot, 1.0), np.nan)


@dataclass(frozen=True)
class YoudenPoint(JsonResult):
    """The operating point that maximises Youden's J = sensitivity + specificity - 1."""

    threshold: float
    youden_j: float
    sensitivity: float
    specificity: float


def youden_of_levels(lv: ScoreLevels) -> YoudenPoint:
    """The threshold with the largest J, calling ``score >= threshold`` positive.

    Candidates: every level's lowest score, and ``lv.above`` (nothing positive, J = 0). Tie rule:
    the **highest** threshold with the maximal J wins (fewest positive calls, the most specific).
    """
    pos, neg = np.asarray(lv.pos, np.float64), np.asarray(lv.neg, np.float64)
    p_tot, n_tot = pos.sum(), neg.sum()
    if p_tot <= 0 or n_tot <= 0:
        raise MetricError(f"Youden threshold needs both classes; got positive weight {p_tot}, negative {n_tot}")
    # candidate k calls levels >= k positive; candidate L (``above``) calls nothing positive
    tpr = np.r_[np.cumsum(pos[::-1])[::-1], 0.0] / p_tot
    fpr = np.r_[np.cumsum(neg[::-1])[::-1], 0.0] / n_tot
    j = tpr - fpr
    k = len(j) - 1 - int(np.argmax(j[::-1]))  # the last maximum: the highest threshold
    t = float(lv.thresholds[k]) if k < len(lv.thresholds) else lv.above
    return YoudenPoint(threshold=t, youden_j=float(j[k]), sensitivity=float(tpr[k]), specificity=float(1 - fpr[k]))


# --------------------------------------------------------------------------------------------- per-ECG API


def _levels(y: ArrayLike, scores: ArrayLike, weights: ArrayLike | None, what: str) -> ScoreLevels:
    yy = labels01(y, what)
    s = finite_scores(scores, len(yy), what)
    w = None
    if weights is not None:
        w = finite_scores(weights, len(yy), what)
        if (w < 0).any():
            raise MetricError(f"{what}: weights must be >= 0")
    else:
        need_both_classes(yy, what)
    return levels_of_scores(yy, s, w)


def _defined(value: np.ndarray, what: str) -> float:
    v = float(value)
    if math.isnan(v):
        raise MetricError(f"{what} needs positive weight in both classes")
    return v


def auroc(y: ArrayLike, scores: ArrayLike, weights: ArrayLike | None = None) -> float:
    """AUROC of per-ECG scores (optionally weighted); :class:`MetricError` where it is undefined."""
    return _defined(auroc_of_levels(_levels(y, scores, weights, "AUROC")), "AUROC")


def auprc(y: ArrayLike, scores: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Average precision of per-ECG scores (optionally weighted)."""
    return _defined(average_precision_of_levels(_levels(y, scores, weights, "AUPRC")), "AUPRC")


def youden_point(y_val: ArrayLike, scores_val: ArrayLike) -> YoudenPoint:
    """The Youden-optimal threshold on validation scores (see :func:`youden_of_levels` for the tie rule).

    When calling nothing positive is optimal the threshold is the smallest float above the highest
    validation score: finite, and it calls nothing positive on validation.
    """
    return youden_of_levels(_levels(y_val, scores_val, None, "Youden threshold"))


def youden_threshold(y_val: ArrayLike, scores_val: ArrayLike) -> float:
    """The threshold of :func:`youden_point`."""
    return youden_point(y_val, scores_val).threshold
