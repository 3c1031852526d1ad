"""The clinical study's evaluation table for any set of scores (torch-free, Flower-free).

One model's scores on a validation and a test set become the numbers a clinical AMI study reports:

* AUROC and AUPRC with a 95 % confidence interval from a **patient (cluster) bootstrap**: patients are drawn
  with replacement and every ECG of a drawn patient enters the replicate (twice if drawn twice), so several
  ECGs of one patient do not pass for independent evidence;
* the Youden threshold chosen on validation and applied unchanged to test, with sensitivity, specificity,
  PPV, NPV, accuracy and weighted F1 there;
* AUROC per age band (<50, 50-64, 65-79, >=80) and per sex, each with its own patient-bootstrap CI;
* calibration (Brier score, expected calibration error, reliability curve);
* model comparison on one test set (DeLong's test, a paired patient bootstrap).

Everything undefined for the data given (a ratio 0/0, an AUROC on one class) is ``None`` with the reason
where a result has room for one, never a crash or a NaN in JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats
from sklearn.metrics import f1_score, roc_curve

from common.metrics import MetricError, auprc, auroc
from common.report import markdown_table

MetricName = Literal["auroc", "auprc"]
MetricFn = Callable[[np.ndarray, np.ndarray], float]

AGE_BANDS: Final[tuple[tuple[str, float, float], ...]] = (
    ("<50", -math.inf, 50.0),
    ("50-64", 50.0, 65.0),
    ("65-79", 65.0, 80.0),
    (">=80", 80.0, math.inf),
)
"""``(label, low, high)``: age in ``[low, high)`` years falls in the band (so 64.5 is "50-64", 80 is ">=80")."""

SEX_GROUPS: Final[tuple[tuple[str, str], ...]] = (("male", "M"), ("female", "F"))
"""``(label, code)``: sex subgroups and the code (after strip and upper-casing) that selects them."""

ABSTRACT_LABELS: Final[tuple[str, ...]] = (
    "AUROC [95% CI]",
    "AUPRC",
    "Threshold (Youden, validation)",
    "Sensitivity",
    "Specificity",
    "NPV",
    "Weighted F1",
    "Subgroup AUROC range",
)
"""Row labels of :func:`summary_markdown_rows`, as in the study's abstract (for ``alpha=0.05``)."""

_MAX_CHUNK_CELLS: Final[int] = 2_000_000
"""Bootstrap replicates are processed in chunks of at most this many (replicate x ECG) weights (16 MB an array)."""


# --------------------------------------------------------------------------------------------------- inputs


def _labels(y: ArrayLike, what: str) -> np.ndarray:
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


def _scores(scores: ArrayLike, n: int, what: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(s) != n:
        raise MetricError(f"{what}: {n} labels but {len(s)} scores")
    if not np.all(np.isfinite(s)):
        raise MetricError(f"{what}: {int((~np.isfinite(s)).sum())} scores are NaN or infinite")
    return s


def _probabilities(p: ArrayLike, n: int, what: str) -> np.ndarray:
    arr = _scores(p, n, what)
    if len(arr) and (arr.min() < 0.0 or arr.max() > 1.0):
        raise MetricError(f"{what} needs probabilities in [0, 1]; got {arr.min():.4g} to {arr.max():.4g}")
    return arr


def _patient_codes(patient_ids: ArrayLike, n: int, what: str) -> tuple[np.ndarray, int]:
    """Patient index ``0..n_patients-1`` per ECG, and the number of patients."""
    ids = pd.Series(np.asarray(patient_ids, dtype=object).ravel())
    if len(ids) != n:
        raise MetricError(f"{what}: {n} labels but {len(ids)} patient ids")
    codes, uniques = pd.factorize(ids, use_na_sentinel=True)
    if (codes < 0).any():
        raise MetricError(f"{what}: {int((codes < 0).sum())} patient ids are missing")
    return codes.astype(np.int64), len(uniques)


def _need_both_classes(y: np.ndarray, what: str) -> None:
    pos = int(y.sum())
    if pos == 0 or pos == len(y):
        raise MetricError(f"{what} needs both classes; got {pos} positives of {len(y)}")


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else float(num / den)


def _jsonable(obj: Any) -> Any:
    """Plain Python for JSON: numpy scalars unwrapped, NaN/inf as None, tuples as lists."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


# ------------------------------------------------------------------------------------------------ bootstrap


class _JsonResult:
    """``to_dict()`` for the result dataclasses: JSON-ready, None for undefined values."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _jsonable(asdict(self))  # type: ignore[call-overload]
        return out


@dataclass(frozen=True)
class BootstrapCI(_JsonResult):
    """A point estimate with a percentile confidence interval from a patient (cluster) bootstrap.

    Attributes
    ----------
    metric : str
        ``"auroc"``, ``"auprc"`` or the name of the metric function.
    estimate : float
        The metric on all ECGs (the sklearn value).
    lower, upper : float or None
        The ``alpha/2`` and ``1 - alpha/2`` quantiles (numpy's default linear interpolation) of the valid
        replicates; None when no replicate was valid.
    alpha : float
        ``1 - confidence level``.
    n_boot : int
        Replicates drawn.
    n_valid : int
        Replicates with both classes (the ones the interval is computed from).
    n_skipped : int
        Replicates with one class only, skipped (``n_boot - n_valid``).
    n_ecgs, n_patients, positives : int
        The data the estimate was computed on.
    seed : int
        Seed of the ``numpy.random.default_rng`` that drew the patients.
    """

    metric: str
    estimate: float
    lower: float | None
    upper: float | None
    alpha: float
    n_boot: int
    n_valid: int
    n_skipped: int
    n_ecgs: int
    n_patients: int
    positives: int
    seed: int


@dataclass(frozen=True)
class _Sorted:
    """One score vector prepared for the weighted (replicate) AUROC/AUPRC kernels."""

    patient_sorted: np.ndarray  # patient index of each ECG, ECGs in ascending score order
    positive_sorted: np.ndarray  # float 0/1 label, same order
    level_starts: np.ndarray  # first sorted position of each distinct score value


def _prepare(y: np.ndarray, s: np.ndarray, patient: np.ndarray) -> _Sorted:
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    return _Sorted(patient[order], y[order].astype(np.float64), starts)


def _replicate_counts(n_patients: int, n_ecgs: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """``(chunk, n_patients)`` float arrays: how often each patient is drawn in each replicate.

    Each replicate draws ``n_patients`` patients uniformly with replacement. The draws depend only on
    ``(n_patients, n_ecgs, n_boot, seed)``, so every metric and both arms of a paired test see the same
    replicates for the same seed.
    """
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, _MAX_CHUNK_CELLS // max(n_ecgs, n_patients, 1)))
    done = 0
    while done < n_boot:
        c = min(chunk, n_boot - done)
        draws = rng.integers(0, n_patients, size=(c, n_patients))
        flat = (draws + (np.arange(c) * n_patients)[:, None]).ravel()
        yield np.bincount(flat, minlength=c * n_patients).reshape(c, n_patients).astype(np.float64)
        done += c


def _weighted_metric(prep: _Sorted, counts: np.ndarray, metric: MetricName) -> np.ndarray:
    """AUROC or average precision of each replicate (row of ``counts``), NaN where a class is absent.

    With per-ECG weights ``w`` (the draw count of the ECG's patient) and ``P_k``, ``N_k`` the positive and
    negative weight at the k-th distinct score (ascending), AUROC is the weighted Mann-Whitney statistic
    ``sum_k P_k (N_<k + N_k / 2) / (P N)`` (ties count one half), and average precision is
    ``sum_k P_k / P * TP_k / (TP_k + FP_k)`` with ``TP_k``, ``FP_k`` the weight at scores ``>=`` the k-th.
    Both equal sklearn's ``roc_auc_score`` / ``average_precision_score`` with ``sample_weight=w``.
    """
    w = counts[:, prep.patient_sorted]
    wp = w * prep.positive_sorted
    pos = np.add.reduceat(wp, prep.level_starts, axis=1)
    neg = np.add.reduceat(w - wp, prep.level_starts, axis=1)
    p_tot, n_tot = pos.sum(axis=1), neg.sum(axis=1)
    ok = (p_tot > 0) & (n_tot > 0)
    out = np.full(len(counts), np.nan)
    if metric == "auroc":
        below = np.cumsum(neg, axis=1) - neg
        num = (pos * (below + 0.5 * neg)).sum(axis=1)
        out[ok] = num[ok] / (p_tot[ok] * n_tot[ok])
    else:
        tp = p_tot[:, None] - np.cumsum(pos, axis=1) + pos
        fp = n_tot[:, None] - np.cumsum(neg, axis=1) + neg
        called = tp + fp
        prec = np.divide(tp, called, out=np.zeros_like(tp), where=called > 0)
        ap = (pos * prec).sum(axis=1)
        out[ok] = ap[ok] / p_tot[ok]
    return out


def _point(metric: MetricName | MetricFn, y: np.ndarray, s: np.ndarray) -> tuple[str, float]:
    if metric == "auroc":
        return "auroc", auroc(y, s)
    if metric == "auprc":
        return "auprc", auprc(y, s)
    if isinstance(metric, str):
        raise ValueError(f"unknown metric {metric!r}; use 'auroc', 'auprc' or a function (y, scores) -> float")
    return getattr(metric, "__name__", "metric"), float(metric(y, s))


def _replicates(
    metric: MetricName | MetricFn,
    y: np.ndarray,
    score_sets: Sequence[np.ndarray],
    patient: np.ndarray,
    n_patients: int,
    n_boot: int,
    seed: int,
) -> np.ndarray:
    """``(n_boot, len(score_sets))`` replicate values (NaN for one-class replicates), same draws for all sets."""
    out = np.full((n_boot, len(score_sets)), np.nan)
    fast = isinstance(metric, str)
    preps = [_prepare(y, s, patient) for s in score_sets] if fast else []
    row = 0
    for counts in _replicate_counts(n_patients, len(y), n_boot, seed):
        c = len(counts)
        if fast:
            for j, prep in enumerate(preps):
                out[row : row + c, j] = _weighted_metric(prep, counts, metric)  # type: ignore[arg-type]
        else:
            for i in range(c):
                idx = np.repeat(np.arange(len(y)), counts[i, patient].astype(np.int64))
                yb = y[idx]
                pos = int(yb.sum())
                if 0 < pos < len(yb):
                    for j, s in enumerate(score_sets):
                        out[row + i, j] = float(metric(yb, s[idx]))  # type: ignore[operator]
        row += c
    return out


def _percentiles(values: np.ndarray, alpha: float) -> tuple[float | None, float | None]:
    if len(values) == 0:
        return None, None
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _check_boot(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_ci(
    metric: MetricName | MetricFn,
    y: ArrayLike,
    scores: ArrayLike,
    patient_ids: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> BootstrapCI:
    """A metric with a percentile CI from a patient (cluster) bootstrap.

    Parameters
    ----------
    metric : {"auroc", "auprc"} or callable
        ``"auroc"`` and ``"auprc"`` (average precision) use a vectorised weighted kernel over all replicates
        (exact; seconds for 1000 replicates of 20,000 ECGs). A callable ``metric(y, scores) -> float`` is
        evaluated on each replicate with the drawn ECGs repeated (slower, any metric).
    y : array-like of 0/1
        Labels, one per ECG.
    scores : array-like of float
        Scores, one per ECG (higher = more likely AMI); finite.
    patient_ids : array-like
        Patient of each ECG (any hashable values; none missing).
    n_boot : int
        Replicates. Each draws as many patients as there are, uniformly with replacement; all ECGs of a
        drawn patient enter, once per draw.
    seed : int
        Seed for ``numpy.random.default_rng``; the same seed draws the same patients for every metric.
    alpha : float
        The interval is the ``[alpha/2, 1-alpha/2]`` percentile interval of the valid replicates.

    Returns
    -------
    BootstrapCI
        Replicates with one class only are skipped and counted in ``n_skipped``.

    Raises
    ------
    MetricError
        When the full data has one class only, or inputs are malformed.
    """
    _check_boot(n_boot, alpha)
    yy = _labels(y, "bootstrap")
    s = _scores(scores, len(yy), "bootstrap")
    patient, n_patients = _patient_codes(patient_ids, len(yy), "bootstrap")
    name, estimate = _point(metric, yy, s)
    reps = _replicates(metric, yy, [s], patient, n_patients, n_boot, seed)[:, 0]
    valid = reps[~np.isnan(reps)]
    lo, hi = _percentiles(valid, alpha)
    return BootstrapCI(
        metric=name,
        estimate=estimate,
        lower=lo,
        upper=hi,
        alpha=alpha,
        n_boot=n_boot,
        n_valid=len(valid),
        n_skipped=n_boot - len(valid),
        n_ecgs=len(yy),
        n_patients=n_patients,
        positives=int(yy.sum()),
        seed=seed,
    )


def bootstrap_auroc_ci(
    y: ArrayLike,
    scores: ArrayLike,
    patient_ids: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> BootstrapCI:
    """AUROC with a patient-bootstrap percentile CI: :func:`bootstrap_ci` with ``metric="auroc"``."""
    return bootstrap_ci("auroc", y, scores, patient_ids, n_boot=n_boot, seed=seed, alpha=alpha)


def weighted_auroc(y: ArrayLike, scores: ArrayLike, weights: ArrayLike) -> float:
    """AUROC with non-negative per-ECG weights (the bootstrap kernel; equals sklearn's ``sample_weight``).

    Raises
    ------
    MetricError
        When the positive or the negative weight is zero.
    """
    yy = _labels(y, "weighted AUROC")
    s = _scores(scores, len(yy), "weighted AUROC")
    w = _scores(weights, len(yy), "weighted AUROC")
    if (w < 0).any():
        raise MetricError("weighted AUROC: weights must be >= 0")
    prep = _prepare(yy, s, np.arange(len(yy)))
    value = float(_weighted_metric(prep, w[None, :], "auroc")[0])
    if math.isnan(value):
        raise MetricError("weighted AUROC needs positive weight in both classes")
    return value


def weighted_auprc(y: ArrayLike, scores: ArrayLike, weights: ArrayLike) -> float:
    """Average precision with non-negative per-ECG weights (equals sklearn's with ``sample_weight``)."""
    yy = _labels(y, "weighted AUPRC")
    s = _scores(scores, len(yy), "weighted AUPRC")
    w = _scores(weights, len(yy), "weighted AUPRC")
    if (w < 0).any():
        raise MetricError("weighted AUPRC: weights must be >= 0")
    prep = _prepare(yy, s, np.arange(len(yy)))
    value = float(_weighted_metric(prep, w[None, :], "auprc")[0])
    if math.isnan(value):
        raise MetricError("weighted AUPRC needs positive weight in both classes")
    return value


# ------------------------------------------------------------------------------------------------ threshold


@dataclass(frozen=True)
class YoudenPoint(_JsonResult):
    """The validation operating point that maximises Youden's J = sensitivity + specificity - 1."""

    threshold: float
    youden_j: float
    sensitivity: float
    specificity: float


def youden_point(y_val: ArrayLike, scores_val: ArrayLike) -> YoudenPoint:
    """The Youden-optimal threshold on validation with its J, sensitivity and specificity.

    The candidates are sklearn's ``roc_curve(..., drop_intermediate=False)`` thresholds, i.e. every distinct
    validation score, with "score >= threshold is positive" (as in :func:`threshold_metrics`).

    Tie rule: among thresholds with the same maximal J the **highest** one wins (fewest positive calls, the
    most specific). When that is sklearn's leading ``inf`` (calling nothing positive is optimal, J = 0),
    the threshold returned is the smallest float above the highest validation score, which calls nothing
    positive on validation and is finite.

    Raises
    ------
    MetricError
        When validation has one class only.
    """
    y = _labels(y_val, "Youden threshold")
    s = _scores(scores_val, len(y), "Youden threshold")
    _need_both_classes(y, "Youden threshold")
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    j = tpr - fpr
    k = int(np.argmax(j))  # thresholds are decreasing, argmax takes the first: the highest threshold
    t = float(thr[k])
    if not math.isfinite(t):
        t = float(np.nextafter(s.max(), np.inf))
    return YoudenPoint(threshold=t, youden_j=float(j[k]), sensitivity=float(tpr[k]), specificity=float(1 - fpr[k]))


def youden_threshold(y_val: ArrayLike, scores_val: ArrayLike) -> float:
    """The threshold maximising sensitivity + specificity - 1 on validation (finite; see :func:`youden_point`)."""
    return youden_point(y_val, scores_val).threshold


@dataclass(frozen=True)
class ThresholdMetrics(_JsonResult):
    """Operating-point metrics with "score >= threshold is positive"; None where a ratio is 0/0.

    Attributes
    ----------
    sensitivity : TP / (TP + FN)
    specificity : TN / (TN + FP)
    ppv : TP / (TP + FP)
    npv : TN / (TN + FN)
    accuracy : (TP + TN) / n
    weighted_f1 : sklearn ``f1_score(average="weighted", labels=[0, 1], zero_division=0)``: per-class F1
        weighted by each class's support in ``y``; None when ``n == 0``.
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
    yy = _labels(y, "threshold metrics")
    s = _scores(scores, len(yy), "threshold metrics")
    if not math.isfinite(threshold):
        raise MetricError(f"threshold metrics: threshold must be finite, got {threshold}")
    pred = (s >= threshold).astype(np.int8)
    pos, call = yy == 1, pred == 1
    tp, fp = int((pos & call).sum()), int((~pos & call).sum())
    tn, fn = int((~pos & ~call).sum()), int((pos & ~call).sum())
    n = len(yy)
    f1 = None if n == 0 else float(f1_score(yy, pred, labels=[0, 1], average="weighted", zero_division=0.0))
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


# ------------------------------------------------------------------------------------------------ subgroups


def age_band(age: ArrayLike | Sequence[object]) -> np.ndarray:
    """Age-band label per ECG (see :data:`AGE_BANDS`); ``""`` where age is missing or not a number."""
    a = pd.to_numeric(pd.Series(np.asarray(age, dtype=object).ravel()), errors="coerce").to_numpy(np.float64)
    out = np.full(len(a), "", dtype=object)
    for label, lo, hi in AGE_BANDS:
        out[(a >= lo) & (a < hi)] = label
    return out


def sex_code(sex: ArrayLike | Sequence[object]) -> np.ndarray:
    """``"M"``, ``"F"`` or ``""`` per ECG: strings stripped and upper-cased; anything else (NaN, "") is ``""``."""
    arr = np.asarray(sex, dtype=object).ravel()
    out = np.full(len(arr), "", dtype=object)
    for i, v in enumerate(arr):
        if isinstance(v, str):
            c = v.strip().upper()
            if c in ("M", "F"):
                out[i] = c
    return out


@dataclass(frozen=True)
class SubgroupAUROC(_JsonResult):
    """AUROC with a patient-bootstrap CI in one subgroup; ``auroc`` None with ``reason`` when undefined."""

    group: str  # "age" or "sex"
    subgroup: str  # "<50", "50-64", "65-79", ">=80", "male", "female"
    n: int
    n_patients: int
    positives: int
    auroc: float | None
    lower: float | None
    upper: float | None
    n_skipped: int
    reason: str | None


def subgroup_aurocs(
    y: ArrayLike,
    scores: ArrayLike,
    age: ArrayLike | Sequence[object],
    sex: ArrayLike | Sequence[object],
    patient_ids: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[SubgroupAUROC, ...]:
    """AUROC [patient-bootstrap CI] per age band and per sex.

    Parameters
    ----------
    y, scores, patient_ids : array-like
        As in :func:`bootstrap_ci`, one per ECG.
    age : array-like of float
        Years; NaN (or non-numeric) is missing and excluded from the age subgroups. Bands in :data:`AGE_BANDS`.
    sex : array-like of str
        ``"M"`` / ``"F"``; ``""`` or NaN is missing and excluded from the sex subgroups.
    n_boot, seed, alpha
        As in :func:`bootstrap_ci`; each subgroup is bootstrapped over its own patients with the same seed.

    Returns
    -------
    tuple of SubgroupAUROC
        Age bands in order, then male, female. A subgroup with no ECGs or one class only has ``auroc`` None
        and the reason.
    """
    yy = _labels(y, "subgroup AUROC")
    s = _scores(scores, len(yy), "subgroup AUROC")
    patient, _ = _patient_codes(patient_ids, len(yy), "subgroup AUROC")
    bands, sexes = age_band(age), sex_code(sex)
    if len(bands) != len(yy) or len(sexes) != len(yy):
        raise MetricError(f"subgroup AUROC: {len(yy)} labels but {len(bands)} ages and {len(sexes)} sexes")
    masks = [("age", label, bands == label) for label, _, _ in AGE_BANDS]
    masks += [("sex", label, sexes == code) for label, code in SEX_GROUPS]
    out = []
    for group, label, mask in masks:
        ym, sm, pm = yy[mask], s[mask], patient[mask]
        n, pos, n_pat = len(ym), int(ym.sum()), len(np.unique(pm))
        reason = None
        if n == 0:
            reason = "no ECGs"
        elif pos in (0, n):
            reason = f"one class only: {pos} positives of {n} ECGs"
        if reason is not None:
            out.append(SubgroupAUROC(group, label, n, n_pat, pos, None, None, None, 0, reason))
            continue
        ci = bootstrap_ci("auroc", ym, sm, pm, n_boot=n_boot, seed=seed, alpha=alpha)
        out.append(SubgroupAUROC(group, label, n, n_pat, pos, ci.estimate, ci.lower, ci.upper, ci.n_skipped, None))
    return tuple(out)


# ---------------------------------------------------------------------------------------------- calibration


def brier_score(y: ArrayLike, p: ArrayLike) -> float:
    """Mean squared difference between probability and 0/1 outcome (sklearn's ``brier_score_loss``)."""
    yy = _labels(y, "Brier score")
    pp = _probabilities(p, len(yy), "Brier score")
    if len(yy) == 0:
        raise MetricError("Brier score needs at least one ECG")
    return float(np.mean((pp - yy) ** 2))


@dataclass(frozen=True)
class ReliabilityCurve(_JsonResult):
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
    yy = _labels(y, "reliability curve")
    pp = _probabilities(p, len(yy), "reliability curve")
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


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_reliability(y: ArrayLike, p: ArrayLike, path: Path, title: str, n_bins: int = 10) -> None:
    """One model's reliability diagram (bins of :func:`reliability_curve`, ECE in the legend) with the
    histogram of its probabilities underneath, into one PNG."""
    curve = reliability_curve(y, p, n_bins)
    ece = expected_calibration_error(y, p, n_bins)
    used = curve.count > 0
    plt = _plt()
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(curve.mean_predicted[used], curve.observed[used], "o-", ms=4, label=f"model (ECE {ece:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--", label="perfect calibration")
    ax.set(ylabel="observed fraction AMI", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    edges = curve.bin_edges
    hist.bar(edges[:-1], curve.count, width=np.diff(edges), align="edge", color="C0", alpha=0.5)
    hist.set(xlabel="predicted probability", ylabel="ECGs", yscale="log" if curve.count.max() > 0 else "linear")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pr(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    """Precision-recall curves ``name -> (y, scores)`` into one PNG (like ``report.plot_roc``)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (y, s) in curves.items():
        y = np.asarray(y)
        if 0 < y.sum() < len(y):
            prec, rec, _ = precision_recall_curve(y, s)
            line = ax.plot(
                rec, prec, drawstyle="steps-post", label=f"{name} (AUPRC {average_precision_score(y, s):.3f})"
            )
            ax.axhline(float(y.mean()), color=line[0].get_color(), lw=0.5, ls=":")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class DeLongResult(_JsonResult):
    """DeLong's test of two correlated AUROCs on the same ECGs (ECGs treated as independent).

    Attributes
    ----------
    var_a, var_b, cov_ab : float
        DeLong's variance of each AUROC and their covariance.
    se : float
        Standard error of the difference, ``sqrt(var_a + var_b - 2 cov_ab)``.
    z, p_value : float
        ``difference / se`` and the two-sided normal p-value (z 0 and p 1 when both the difference and
        ``se`` are zero, e.g. identical scores).
    lower, upper : float or None
        Normal ``1 - alpha`` interval of the difference (None when ``se`` is zero and the difference is not).
    """

    auroc_a: float
    auroc_b: float
    difference: float
    var_a: float
    var_b: float
    cov_ab: float
    se: float
    z: float
    p_value: float
    lower: float | None
    upper: float | None
    alpha: float
    n: int
    positives: int


def delong_covariance(y: ArrayLike, score_sets: Sequence[ArrayLike]) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs of several models on the same ECGs and DeLong's covariance matrix of them.

    The fast midrank algorithm of Sun & Xu (2014): with midranks ``T_X`` within positives, ``T_Y`` within
    negatives and ``T_Z`` over all ECGs, the structural components are ``V10 = (T_Z - T_X) / n`` for each
    positive and ``V01 = 1 - (T_Z - T_Y) / m`` for each negative (m positives, n negatives), and
    ``S = cov(V10) / m + cov(V01) / n`` (covariances with ``m - 1``, ``n - 1`` denominators).

    Returns
    -------
    aurocs : (k,) array
    covariance : (k, k) array

    Raises
    ------
    MetricError
        With fewer than 2 positives or 2 negatives.
    """
    yy = _labels(y, "DeLong")
    s = np.stack([_scores(si, len(yy), "DeLong") for si in score_sets])
    m = int(yy.sum())
    n = len(yy) - m
    if m < 2 or n < 2:
        raise MetricError(f"DeLong needs at least 2 positives and 2 negatives; got {m} and {n}")
    pos, neg = s[:, yy == 1], s[:, yy == 0]
    tx = stats.rankdata(pos, axis=1)
    ty = stats.rankdata(neg, axis=1)
    tz = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1) / (2 * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def delong_test(y: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike, alpha: float = 0.05) -> DeLongResult:
    """Two-sided DeLong et al. (1988) test of AUROC a == AUROC b on the same ECGs.

    DeLong treats ECGs as independent; with several ECGs per patient prefer :func:`paired_bootstrap_test`,
    which resamples patients.
    """
    yy = _labels(y, "DeLong")
    a = _scores(scores_a, len(yy), "DeLong")
    b = _scores(scores_b, len(yy), "DeLong")
    aucs, cov = delong_covariance(yy, [a, b])
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    scale = float(cov[0, 0] + cov[1, 1])
    if np.array_equal(a, b) or var <= 1e-12 * scale:
        var = 0.0
        if np.array_equal(a, b):
            diff = 0.0
    se = math.sqrt(max(var, 0.0))
    zq = float(stats.norm.ppf(1 - alpha / 2))
    if se > 0:
        z = diff / se
        p = float(2 * stats.norm.sf(abs(z)))
        lo, hi = diff - zq * se, diff + zq * se
    elif diff == 0:
        z, p, lo, hi = 0.0, 1.0, 0.0, 0.0
    else:
        z, p, lo, hi = math.copysign(math.inf, diff), 0.0, None, None
    return DeLongResult(
        auroc_a=float(aucs[0]),
        auroc_b=float(aucs[1]),
        difference=diff,
        var_a=float(cov[0, 0]),
        var_b=float(cov[1, 1]),
        cov_ab=float(cov[0, 1]),
        se=se,
        z=z,
        p_value=p,
        lower=lo,
        upper=hi,
        alpha=alpha,
        n=len(yy),
        positives=int(yy.sum()),
    )


@dataclass(frozen=True)
class PairedBootstrapResult(_JsonResult):
    """Difference of one metric between two models on the same ECGs, from a paired patient bootstrap.

    Attributes
    ----------
    difference : float
        ``estimate_a - estimate_b`` on all ECGs.
    lower, upper : float or None
        Percentile interval of the replicate differences.
    p_value : float
        Two-sided: ``min(1, 2 * min(#{d <= 0} + 1, #{d >= 0} + 1) / (n_valid + 1))`` over the valid
        replicate differences ``d`` (never exactly 0; 1 when the models are identical).
    """

    metric: str
    estimate_a: float
    estimate_b: float
    difference: float
    lower: float | None
    upper: float | None
    p_value: float
    alpha: float
    n_boot: int
    n_valid: int
    n_skipped: int
    n_ecgs: int
    n_patients: int
    seed: int


def paired_bootstrap_test(
    y: ArrayLike,
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    patient_ids: ArrayLike,
    metric: MetricName | MetricFn = "auroc",
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> PairedBootstrapResult:
    """Compare two models by resampling patients: both are scored on the very same replicates.

    Parameters
    ----------
    y, patient_ids : array-like
        One per ECG.
    scores_a, scores_b : array-like of float
        The two models' scores on the same ECGs.
    metric, n_boot, seed, alpha
        As in :func:`bootstrap_ci`.
    """
    _check_boot(n_boot, alpha)
    yy = _labels(y, "paired bootstrap")
    a = _scores(scores_a, len(yy), "paired bootstrap")
    b = _scores(scores_b, len(yy), "paired bootstrap")
    patient, n_patients = _patient_codes(patient_ids, len(yy), "paired bootstrap")
    name, est_a = _point(metric, yy, a)
    _, est_b = _point(metric, yy, b)
    reps = _replicates(metric, yy, [a, b], patient, n_patients, n_boot, seed)
    ok = ~np.isnan(reps).any(axis=1)
    d = reps[ok, 0] - reps[ok, 1]
    lo, hi = _percentiles(d, alpha)
    k = len(d)
    p = min(1.0, 2 * min(int((d <= 0).sum()) + 1, int((d >= 0).sum()) + 1) / (k + 1))
    return PairedBootstrapResult(
        metric=name,
        estimate_a=est_a,
        estimate_b=est_b,
        difference=est_a - est_b,
        lower=lo,
        upper=hi,
        p_value=p,
        alpha=alpha,
        n_boot=n_boot,
        n_valid=k,
        n_skipped=n_boot - k,
        n_ecgs=len(yy),
        n_patients=n_patients,
        seed=seed,
    )


# -------------------------------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class ClinicalSummary:
    """The study's table for one model: discrimination, operating point, subgroups, calibration.

    Attributes
    ----------
    auroc, auprc : BootstrapCI
        On test, with patient-bootstrap CIs.
    prevalence : float
        Fraction of positive test ECGs.
    youden : YoudenPoint
        Chosen on validation.
    at_threshold : ThresholdMetrics
        ``youden.threshold`` applied to test.
    subgroups : tuple of SubgroupAUROC
        On test.
    subgroup_auroc_min, subgroup_auroc_max : float or None
        Range over the subgroups whose AUROC is defined (None when none is).
    brier, ece : float or None
        On test; None when the scores are not probabilities in [0, 1] (see ``notes``).
    notes : tuple of str
        Why something is None.
    """

    name: str
    n_test: int
    n_patients_test: int
    positives_test: int
    prevalence: float
    auroc: BootstrapCI
    auprc: BootstrapCI
    youden: YoudenPoint
    at_threshold: ThresholdMetrics
    subgroups: tuple[SubgroupAUROC, ...]
    subgroup_auroc_min: float | None
    subgroup_auroc_max: float | None
    brier: float | None
    ece: float | None
    ece_bins: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and flat where it matters: plain numbers and strings, None for undefined.

        Headline keys: ``auroc``, ``auroc_ci`` (``[lower, upper]``), ``auprc``, ``auprc_ci``, ``ci_level``,
        ``prevalence``, ``threshold`` (Youden, validation), ``sensitivity``, ``specificity``, ``ppv``, ``npv``,
        ``accuracy``, ``weighted_f1`` (test, at that threshold), ``subgroup_auroc_min`` / ``_max``, ``brier``,
        ``ece``. Details: ``auroc_bootstrap``, ``auprc_bootstrap``, ``youden_validation``, ``at_threshold``
        (with the confusion counts), ``subgroups``, ``notes``.
        """
        t = self.at_threshold
        out: dict[str, Any] = _jsonable(
            {
                "name": self.name,
                "n_test": self.n_test,
                "n_patients_test": self.n_patients_test,
                "positives_test": self.positives_test,
                "prevalence": self.prevalence,
                "auroc": self.auroc.estimate,
                "auroc_ci": [self.auroc.lower, self.auroc.upper],
                "auprc": self.auprc.estimate,
                "auprc_ci": [self.auprc.lower, self.auprc.upper],
                "ci_level": 1 - self.auroc.alpha,
                "threshold": self.youden.threshold,
                "sensitivity": t.sensitivity,
                "specificity": t.specificity,
                "ppv": t.ppv,
                "npv": t.npv,
                "accuracy": t.accuracy,
                "weighted_f1": t.weighted_f1,
                "subgroup_auroc_min": self.subgroup_auroc_min,
                "subgroup_auroc_max": self.subgroup_auroc_max,
                "brier": self.brier,
                "ece": self.ece,
                "ece_bins": self.ece_bins,
                "auroc_bootstrap": self.auroc.to_dict(),
                "auprc_bootstrap": self.auprc.to_dict(),
                "youden_validation": self.youden.to_dict(),
                "at_threshold": t.to_dict(),
                "subgroups": [g.to_dict() for g in self.subgroups],
                "notes": list(self.notes),
            }
        )
        return out


def clinical_summary(
    y_val: ArrayLike,
    s_val: ArrayLike,
    y_test: ArrayLike,
    s_test: ArrayLike,
    test_meta: pd.DataFrame,
    name: str = "",
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    n_bins: int = 10,
) -> ClinicalSummary:
    """Compose the study's evaluation table for one model.

    Parameters
    ----------
    y_val, s_val : array-like
        Validation labels and scores; only used to choose the Youden threshold.
    y_test, s_test : array-like
        Test labels and scores.
    test_meta : DataFrame
        One row per test ECG (same order) with columns ``patient_id``, ``age``, ``sex``.
    name : str
        The model's name (for tables).
    n_boot, seed, alpha : int, int, float
        Patient bootstrap of the AUROC, AUPRC and subgroup AUROCs (see :func:`bootstrap_ci`).
    n_bins : int
        Bins of the expected calibration error.

    Raises
    ------
    MetricError
        When validation or test has one class only, or the inputs do not line up.
    """
    missing = [c for c in ("patient_id", "age", "sex") if c not in test_meta.columns]
    if missing:
        raise MetricError(f"clinical summary: test_meta lacks columns {missing}")
    yt = _labels(y_test, "clinical summary")
    st = _scores(s_test, len(yt), "clinical summary")
    if len(test_meta) != len(yt):
        raise MetricError(f"clinical summary: {len(yt)} test labels but {len(test_meta)} rows of test_meta")
    _need_both_classes(yt, "clinical summary (test)")
    pid = test_meta["patient_id"].to_numpy()
    youden = youden_point(y_val, s_val)
    roc_ci = bootstrap_ci("auroc", yt, st, pid, n_boot=n_boot, seed=seed, alpha=alpha)
    pr_ci = bootstrap_ci("auprc", yt, st, pid, n_boot=n_boot, seed=seed, alpha=alpha)
    at = threshold_metrics(yt, st, youden.threshold)
    subs = subgroup_aurocs(
        yt, st, test_meta["age"].to_numpy(), test_meta["sex"].to_numpy(), pid, n_boot=n_boot, seed=seed, alpha=alpha
    )
    defined = [g.auroc for g in subs if g.auroc is not None]
    notes = [f"subgroup {g.group} {g.subgroup}: {g.reason}" for g in subs if g.reason is not None]
    brier = ece = None
    if st.min() >= 0.0 and st.max() <= 1.0:
        brier = brier_score(yt, st)
        ece = expected_calibration_error(yt, st, n_bins)
    else:
        notes.append("Brier and ECE undefined: test scores are not probabilities in [0, 1]")
    return ClinicalSummary(
        name=name,
        n_test=len(yt),
        n_patients_test=roc_ci.n_patients,
        positives_test=int(yt.sum()),
        prevalence=float(yt.mean()),
        auroc=roc_ci,
        auprc=pr_ci,
        youden=youden,
        at_threshold=at,
        subgroups=subs,
        subgroup_auroc_min=min(defined) if defined else None,
        subgroup_auroc_max=max(defined) if defined else None,
        brier=brier,
        ece=ece,
        ece_bins=n_bins,
        notes=tuple(notes),
    )


SummaryLike = ClinicalSummary | Mapping[str, Any]
"""A :class:`ClinicalSummary` or its :meth:`ClinicalSummary.to_dict` (for example read back from JSON)."""


def _f(v: Any, digits: int) -> str:
    if v is None or not isinstance(v, int | float | np.integer | np.floating) or not math.isfinite(v):
        return "n/a"
    return f"{v:.{digits}f}"


def _with_ci(estimate: Any, ci: Any, digits: int) -> str:
    if not isinstance(ci, Sequence) or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return _f(estimate, digits)
    return f"{_f(estimate, digits)} [{_f(ci[0], digits)}-{_f(ci[1], digits)}]"


def summary_markdown_rows(summary: SummaryLike, digits: int = 3, extended: bool = False) -> list[tuple[str, str]]:
    """``(label, value)`` rows with the labels of the study's abstract (:data:`ABSTRACT_LABELS`).

    Parameters
    ----------
    summary : ClinicalSummary or its ``to_dict()``
    digits : int
        Decimals.
    extended : bool
        Also prevalence, PPV, Brier and ECE after the abstract's rows.

    Returns
    -------
    list of (label, value)
        Values: ``"0.848 [0.829-0.866]"`` for AUROC and AUPRC (patient-bootstrap CI), fractions with
        ``digits`` decimals, ``"n/a"`` where undefined, the subgroup range as ``"min-max"``. The CI label
        carries the confidence level (``"AUROC [95% CI]"`` for ``alpha=0.05``).
        ``pd.DataFrame(rows, columns=["metric", name])`` makes a table of it.
    """
    d = summary.to_dict() if isinstance(summary, ClinicalSummary) else summary
    level = f"{100 * float(d.get('ci_level', 0.95)):.4g}"
    lo, hi = d.get("subgroup_auroc_min"), d.get("subgroup_auroc_max")
    rows = [
        (f"AUROC [{level}% CI]", _with_ci(d.get("auroc"), d.get("auroc_ci"), digits)),
        ("AUPRC", _with_ci(d.get("auprc"), d.get("auprc_ci"), digits)),
        ("Threshold (Youden, validation)", _f(d.get("threshold"), digits)),
        ("Sensitivity", _f(d.get("sensitivity"), digits)),
        ("Specificity", _f(d.get("specificity"), digits)),
        ("NPV", _f(d.get("npv"), digits)),
        ("Weighted F1", _f(d.get("weighted_f1"), digits)),
        ("Subgroup AUROC range", "n/a" if lo is None or hi is None else f"{_f(lo, digits)}-{_f(hi, digits)}"),
    ]
    if extended:
        rows += [
            ("Prevalence", _f(d.get("prevalence"), digits)),
            ("PPV", _f(d.get("ppv"), digits)),
            ("Brier", _f(d.get("brier"), digits)),
            (f"ECE ({d.get('ece_bins', 10)} bins)", _f(d.get("ece"), digits)),
        ]
    return rows


def summary_table(
    summaries: Mapping[str, SummaryLike] | Sequence[SummaryLike], digits: int = 3, extended: bool = False
) -> pd.DataFrame:
    """A ``Metric`` column plus one column per model (``name -> summary``, or a sequence named by ``name``)."""
    if isinstance(summaries, Mapping):
        items = list(summaries.items())
    else:
        items = []
        for i, s in enumerate(summaries):
            name = s.name if isinstance(s, ClinicalSummary) else str(s.get("name", ""))
            items.append((name or f"model {i + 1}", s))
    if not items:
        raise ValueError("summary_table needs at least one summary")
    cols: dict[str, list[str]] = {}
    for name, s in items:
        rows = summary_markdown_rows(s, digits, extended)
        cols.setdefault("Metric", [label for label, _ in rows])
        cols[name] = [value for _, value in rows]
    return pd.DataFrame(cols)


def summary_markdown(
    summaries: Mapping[str, SummaryLike] | Sequence[SummaryLike], digits: int = 3, extended: bool = False
) -> str:
    """:func:`summary_table` as a Markdown table (``report.markdown_table``)."""
    return markdown_table(summary_table(summaries, digits, extended))
