"""Patient (cluster) bootstrap confidence intervals.

Patients are drawn with replacement and every ECG of a drawn patient enters the replicate (twice if
drawn twice), so several ECGs of one patient do not pass for independent evidence. AUROC and AUPRC
replicates run the score-level kernels of :mod:`common.evaluation.metrics` over all replicates at
once."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from common.evaluation.metrics import (
    JsonResult,
    LevelGrouping,
    MetricError,
    auprc,
    auroc,
    auroc_of_levels,
    average_precision_of_levels,
    finite_scores,
    labels01,
)

MetricName = Literal["auroc", "auprc"]
MetricFn = Callable[[np.ndarray, np.ndarray], float]

_MAX_CHUNK_CELLS: Final[int] = 2_000_000
"""Bootstrap replicates are processed in chunks of at most this many (replicate x ECG) weights (16 MB an array)."""


def patient_codes(patient_ids: ArrayLike, n: int, what: str) -> tuple[np.ndarray, int]:
    """Patient index ``0..n_patients-1`` per ECG, and the number of patients."""
    ids = pd.Series(np.asarray(patient_ids, dtype=object).ravel())
    if len(ids) != n:
        raise MetricError(f"{what}: {n} labels but {len(ids)} patient ids")
    codes, uniques = pd.factorize(ids, use_na_sentinel=True)
    if (codes < 0).any():
        raise MetricError(f"{what}: {int((codes < 0).sum())} patient ids are missing")
    return codes.astype(np.int64), len(uniques)


@dataclass(frozen=True)
class BootstrapCI(JsonResult):
    """A point estimate with a percentile confidence interval from a patient (cluster) bootstrap.

    Attributes
    ----------
    metric : str
        ``"auroc"``, ``"auprc"`` or the name of the metric function.
    estimate : float
        The metric on all ECGs .
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

    @classmethod
    def of_replicates(
        cls,
        metric: str,
        estimate: float,
        reps: np.ndarray,
        *,
        alpha: float,
        seed: int,
        n_ecgs: int,
        n_patients: int,
        positives: int,
    ) -> BootstrapCI:
        """The percentile interval of the replicates that are not NaN (one-class replicates are)."""
        valid = reps[~np.isnan(reps)]
        lo, hi = percentiles(valid, alpha)
        return cls(
            metric=metric, estimate=estimate, lower=lo, upper=hi, alpha=alpha, n_boot=len(reps),
            n_valid=len(valid), n_skipped=len(reps) - len(valid), n_ecgs=n_ecgs, n_patients=n_patients,
            positives=positives, seed=seed,
        )  # fmt: skip


def replicate_counts(n_patients: int, n_ecgs: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
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


_KERNELS: Final[dict[str, Callable[..., np.ndarray]]] = {"auroc": auroc_of_levels, "auprc": average_precision_of_levels}


def point(metric: MetricName | MetricFn, y: np.ndarray, s: np.ndarray) -> tuple[str, float]:
    if metric == "auroc":
        return "auroc", auroc(y, s)
    if metric == "auprc":
        return "auprc", auprc(y, s)
    if isinstance(metric, str):
        raise ValueError(f"unknown metric {metric!r}; use 'auroc', 'auprc' or a function (y, scores) -> float")
    return getattr(metric, "__name__", "metric"), float(metric(y, s))


def replicates(
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
    groupings = [LevelGrouping.of(y, s) for s in score_sets] if fast else []
    row = 0
    for counts in replicate_counts(n_patients, len(y), n_boot, seed):
        c = len(counts)
        if fast:
            weights = counts[:, patient]
            for j, g in enumerate(groupings):
                out[row : row + c, j] = _KERNELS[metric](g.levels(weights))  # type: ignore[index]
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


def percentiles(values: np.ndarray, alpha: float) -> tuple[float | None, float | None]:
    if len(values) == 0:
        return None, None
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def check_boot(n_boot: int, alpha: float) -> None:
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
    check_boot(n_boot, alpha)
    yy = labels01(y, "bootstrap")
    s = finite_scores(scores, len(yy), "bootstrap")
    patient, n_patients = patient_codes(patient_ids, len(yy), "bootstrap")
    name, estimate = point(metric, yy, s)
    reps = replicates(metric, yy, [s], patient, n_patients, n_boot, seed)[:, 0]
    return BootstrapCI.of_replicates(
        name, estimate, reps, alpha=alpha, seed=seed, n_ecgs=len(yy), n_patients=n_patients, positives=int(yy.sum())
    )
