"""Comparing two models on the same test ECGs: DeLong's test and a paired patient bootstrap."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from common.evaluation.bootstrap import MetricFn, MetricName, check_boot, patient_codes, percentiles, point, replicates
from common.evaluation.metrics import JsonResult, MetricError, finite_scores, labels01


@dataclass(frozen=True)
class DeLongResult(JsonResult):
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
    yy = labels01(y, "DeLong")
    s = np.stack([finite_scores(si, len(yy), "DeLong") for si in score_sets])
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
    yy = labels01(y, "DeLong")
    a = finite_scores(scores_a, len(yy), "DeLong")
    b = finite_scores(scores_b, len(yy), "DeLong")
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
class PairedBootstrapResult(JsonResult):
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
    ratio, ratio_lower, ratio_upper : float or None
        ``estimate_a / estimate_b`` and the percentile interval of the replicate ratios (None where
        ``estimate_b`` is 0; replicates whose ``b`` is 0 are left out of the interval).
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
    ratio: float | None = None
    ratio_lower: float | None = None
    ratio_upper: float | None = None


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
    check_boot(n_boot, alpha)
    yy = labels01(y, "paired bootstrap")
    a = finite_scores(scores_a, len(yy), "paired bootstrap")
    b = finite_scores(scores_b, len(yy), "paired bootstrap")
    patient, n_patients = patient_codes(patient_ids, len(yy), "paired bootstrap")
    name, est_a = point(metric, yy, a)
    _, est_b = point(metric, yy, b)
    reps = replicates(metric, yy, [a, b], patient, n_patients, n_boot, seed)
    ok = ~np.isnan(reps).any(axis=1)
    d = reps[ok, 0] - reps[ok, 1]
    lo, hi = percentiles(d, alpha)
    k = len(d)
    p = min(1.0, 2 * min(int((d <= 0).sum()) + 1, int((d >= 0).sum()) + 1) / (k + 1))
    nonzero = ok & (reps[:, 1] != 0)
    ratio_lo, ratio_hi = percentiles(reps[nonzero, 0] / reps[nonzero, 1], alpha)
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
        ratio=est_a / est_b if est_b != 0 else None,
        ratio_lower=ratio_lo if est_b != 0 else None,
        ratio_upper=ratio_hi if est_b != 0 else None,
    )
