"""Pooled ROC/PR metrics from per-class score histograms, so no per-record score leaves a hospital.

Each client returns, for its evaluation split, how many positive and how many negative ECGs fall in
each bin of one fixed grid; the server adds the histograms of all clients and computes the pooled
curves. The grid is uniform in logit space (-12 to 12, 2,400 bins), fine where sigmoid outputs
crowd near 0 and 1, so the pooled AUROC matches the exact one within 0.001 in practice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from common.evaluation.bootstrap import BootstrapCI, patient_codes, replicate_counts
from common.evaluation.calibration import CalibrationSums
from common.evaluation.metrics import (
    MetricError,
    ScoreLevels,
    YoudenPoint,
    auroc_of_levels,
    average_precision_of_levels,
    youden_of_levels,
)
from common.evaluation.subgroups import subgroup_masks
from common.federation import protocol as P

LOGIT_RANGE: Final[float] = 12.0
N_BINS: Final[int] = 2400
_EDGES_LOGIT: Final[np.ndarray] = np.linspace(-LOGIT_RANGE, LOGIT_RANGE, N_BINS + 1)
EDGES: Final[np.ndarray] = 1.0 / (1.0 + np.exp(-_EDGES_LOGIT))
"""Bin edges in probability space; bin ``b`` holds scores in ``[EDGES[b], EDGES[b+1])`` (ends open)."""
ABOVE: Final[float] = float(np.nextafter(1.0, 2.0))
"""A threshold above every probability: ``score >= ABOVE`` calls nothing positive."""


MetricValue = int | float | list[int] | list[float]
"""A value of a reply's metric record."""


@dataclass(frozen=True)
class ScoreHistogram:
    """Counts of positive and negative ECGs per score bin (aggregate information only)."""

    pos: np.ndarray
    neg: np.ndarray

    @property
    def n_pos(self) -> int:
        return int(self.pos.sum())

    @property
    def n_neg(self) -> int:
        return int(self.neg.sum())

    def __add__(self, other: ScoreHistogram) -> ScoreHistogram:
        return ScoreHistogram(self.pos + other.pos, self.neg + other.neg)


def bin_of(scores: np.ndarray) -> np.ndarray:
    """The grid bin of each probability."""
    s = np.clip(np.asarray(scores, dtype=np.float64).ravel(), 0.0, 1.0)
    return np.clip(np.searchsorted(EDGES, s, side="right") - 1, 0, N_BINS - 1)


def histogram(y: np.ndarray, scores: np.ndarray) -> ScoreHistogram:
    """Bin probabilities ``scores`` by label ``y`` on the fixed grid."""
    y = np.asarray(y).ravel()
    idx = bin_of(scores)
    if y.shape != idx.shape:
        raise ValueError(f"{len(y)} labels but {len(idx)} scores")
    pos = np.bincount(idx[y == 1], minlength=N_BINS).astype(np.int64)
    neg = np.bincount(idx[y == 0], minlength=N_BINS).astype(np.int64)
    return ScoreHistogram(pos, neg)


def empty() -> ScoreHistogram:
    return ScoreHistogram(np.zeros(N_BINS, np.int64), np.zeros(N_BINS, np.int64))


def levels(h: ScoreHistogram) -> ScoreLevels:
    """The histogram as score levels (one per bin, its lower edge as threshold) for the metric kernels."""
    if h.n_pos == 0 or h.n_neg == 0:
        raise MetricError(f"pooled histograms need both classes; got {h.n_pos} positives, {h.n_neg} negatives")
    return ScoreLevels(EDGES[:-1], h.pos.astype(np.float64), h.neg.astype(np.float64), ABOVE)


def auroc(h: ScoreHistogram) -> float:
    """The Mann-Whitney AUROC with ties per bin (:func:`common.evaluation.metrics.auroc_of_levels`)."""
    return float(auroc_of_levels(levels(h)))


def auprc(h: ScoreHistogram) -> float:
    """Average precision over the bins' lower edges as thresholds."""
    return float(average_precision_of_levels(levels(h)))


def youden(h: ScoreHistogram) -> YoudenPoint:
    """The bin edge maximising sensitivity + specificity - 1 (the one Youden rule: ties take the highest)."""
    return youden_of_levels(levels(h))


def youden_threshold(h: ScoreHistogram) -> float:
    return youden(h).threshold


@dataclass(frozen=True)
class ThresholdCounts:
    tp: int
    fp: int
    tn: int
    fn: int

    def __add__(self, other: ThresholdCounts) -> ThresholdCounts:
        return ThresholdCounts(self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn)

    @property
    def sensitivity(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def specificity(self) -> float | None:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else None


def threshold_counts(y: np.ndarray, scores: np.ndarray, threshold: float) -> ThresholdCounts:
    """Confusion counts at ``score >= threshold`` (exact, computed where the scores are)."""
    y = np.asarray(y).ravel().astype(int)
    pred = np.asarray(scores).ravel() >= threshold
    return ThresholdCounts(
        int((pred & (y == 1)).sum()),
        int((pred & (y == 0)).sum()),
        int((~pred & (y == 0)).sum()),
        int((~pred & (y == 1)).sum()),
    )


# ------------------------------------------------------------------------------- patient-bootstrap replicates


@dataclass(frozen=True)
class ReplicateHistograms:
    """One hospital's patient-bootstrap replicates, each as a score histogram on the fixed grid.

    Only the bins holding one of its ECGs can be non-empty, so only those are kept: ``bins`` (k,) ascending,
    ``pos`` and ``neg`` (R, k) counts per replicate. Replicate r of every hospital is drawn from its own
    patients; added up over hospitals they are one replicate of a bootstrap stratified by hospital.
    """

    bins: np.ndarray
    pos: np.ndarray
    neg: np.ndarray

    @property
    def n_boot(self) -> int:
        return int(self.pos.shape[0])

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """``(R, N_BINS)`` positive and negative counts."""
        pos = np.zeros((self.n_boot, N_BINS))
        neg = np.zeros((self.n_boot, N_BINS))
        pos[:, self.bins] = self.pos
        neg[:, self.bins] = self.neg
        return pos, neg


def hospital_seed(seed: int, hospital_index: int) -> int:
    """The seed of one hospital's bootstrap draws: from (run seed, hospital), independent across hospitals."""
    return int(np.random.SeedSequence([seed, hospital_index]).generate_state(1)[0])


def replicate_histograms(
    y: np.ndarray, scores: np.ndarray, patient_ids: np.ndarray, n_boot: int, seed: int
) -> ReplicateHistograms:
    """Draw the hospital's patients with replacement ``n_boot`` times (all ECGs of a drawn patient, once per
    draw) and bin each replicate's scores by label; the draws are those of
    :func:`common.evaluation.bootstrap.replicate_counts` for ``seed``."""
    y = np.asarray(y).ravel().astype(np.int64)
    idx = bin_of(scores)
    if len(idx) != len(y):
        raise ValueError(f"{len(y)} labels but {len(idx)} scores")
    patient, n_patients = patient_codes(patient_ids, len(y), "replicate histograms")
    bins, local = np.unique(idx, return_inverse=True)
    k = len(bins)
    pos = np.zeros((n_boot, k), np.uint32)
    neg = np.zeros((n_boot, k), np.uint32)
    row = 0
    for counts in replicate_counts(n_patients, len(y), n_boot, seed):
        c = len(counts)
        weights = counts[:, patient]  # (c, n): how often each ECG enters each replicate
        cell = (np.arange(c)[:, None] * k + local[None, :]).ravel()
        for label, out in ((1, pos), (0, neg)):
            w = (weights * (y == label)).ravel()
            out[row : row + c] = np.bincount(cell, weights=w, minlength=c * k).reshape(c, k).astype(np.uint32)
        row += c
    return ReplicateHistograms(bins, pos, neg)


def replicate_metric(parts: list[ReplicateHistograms], metric: str) -> np.ndarray:
    """``(R,)`` AUROC or AUPRC of the hospitals' replicates added up (NaN for a one-class replicate)."""
    if not parts or len({p.n_boot for p in parts}) != 1:
        raise ValueError(f"replicate histograms need one replicate count; got {[p.n_boot for p in parts]}")
    pos, neg = np.zeros((parts[0].n_boot, N_BINS)), np.zeros((parts[0].n_boot, N_BINS))
    for part in parts:
        p, n = part.dense()
        pos += p
        neg += n
    levels_ = ScoreLevels(EDGES[:-1], pos, neg, ABOVE)
    kernels = {"auroc": auroc_of_levels, "auprc": average_precision_of_levels}
    if metric not in kernels:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(kernels)}")
    return kernels[metric](levels_)


def histogram_ci(
    total: ScoreHistogram, parts: list[ReplicateHistograms], metric: str, *, alpha: float, seed: int, n_patients: int
) -> BootstrapCI:
    """A metric of the pooled histogram with the percentile CI of the hospitals' replicates added up."""
    estimate = {"auroc": auroc, "auprc": auprc}[metric](total)
    return BootstrapCI.of_replicates(
        metric, estimate, replicate_metric(parts, metric), alpha=alpha, seed=seed,
        n_ecgs=total.n_pos + total.n_neg, n_patients=n_patients, positives=total.n_pos,
    )  # fmt: skip


# ------------------------------------------------------------------------------- subgroups (age band, sex)


@dataclass(frozen=True)
class SubgroupPart:
    """One hospital's ECGs in one subgroup of :data:`common.evaluation.subgroups.SUBGROUPS`: their score
    histogram, patients and (where drawn) patient-bootstrap replicates over the subgroup's own patients."""

    histogram: ScoreHistogram
    n_patients: int
    replicates: ReplicateHistograms | None


def subgroup_parts(
    y: np.ndarray,
    scores: np.ndarray,
    age: np.ndarray,
    sex: np.ndarray,
    patient_ids: np.ndarray,
    n_boot: int | None,
    seed: int,
) -> tuple[SubgroupPart, ...]:
    """A hospital's :class:`SubgroupPart` for every subgroup, in :data:`~common.evaluation.subgroups.SUBGROUPS` order.

    Subgroup ``i`` draws its replicates with seed ``hospital_seed(seed, i + 1)``: independent of the
    hospital's overall replicates (drawn with ``seed``) and of the other subgroups; as the study's
    central subgroup CIs do, each subgroup resamples its own patients.
    """
    y, scores, patient_ids = np.asarray(y).ravel(), np.asarray(scores).ravel(), np.asarray(patient_ids).ravel()
    parts = []
    for i, mask in enumerate(subgroup_masks(age, sex)):
        if not mask.any():
            parts.append(SubgroupPart(empty(), 0, None))
            continue
        ym, sm, pm = y[mask], scores[mask], patient_ids[mask]
        reps = None if n_boot is None else replicate_histograms(ym, sm, pm, n_boot, hospital_seed(seed, i + 1))
        parts.append(SubgroupPart(histogram(ym, sm), len(np.unique(pm)), reps))
    return tuple(parts)


def subgroup_metrics(parts: tuple[SubgroupPart, ...]) -> dict[str, MetricValue]:
    """A test reply's subgroup entries (:mod:`common.federation.protocol`'s ``sub-*`` keys) but the replicates."""
    out: dict[str, MetricValue] = {}
    for i, part in enumerate(parts):
        out[P.subgroup_key(P.SUB_PATIENTS, i)] = part.n_patients
        if part.n_patients == 0:
            continue
        bins = np.flatnonzero(part.histogram.pos + part.histogram.neg)
        out[P.subgroup_key(P.SUB_BINS, i)] = bins.tolist()
        out[P.subgroup_key(P.SUB_POS, i)] = part.histogram.pos[bins].tolist()
        out[P.subgroup_key(P.SUB_NEG, i)] = part.histogram.neg[bins].tolist()
    return out


def compact(counts: np.ndarray) -> np.ndarray:
    """Non-negative integer counts in the smallest unsigned type that holds them (mostly one byte each)."""
    return np.ascontiguousarray(counts, dtype=np.min_scalar_type(int(counts.max(initial=0))))


def replicate_arrays(
    replicates: ReplicateHistograms | None, subgroups: tuple[SubgroupPart, ...] | None
) -> dict[str, np.ndarray]:
    """A test reply's :data:`~common.federation.protocol.REPLICATES` record: the hospital's replicates and each
    subgroup's, ``(n-boot, bins)`` counts (empty without replicates)."""
    out: dict[str, np.ndarray] = {}
    if replicates is not None:
        out[P.REP_POS], out[P.REP_NEG] = compact(replicates.pos), compact(replicates.neg)
    for i, part in enumerate(subgroups or ()):
        if part.replicates is not None:
            out[P.subgroup_key(P.SUB_REP_POS, i)] = compact(part.replicates.pos)
            out[P.subgroup_key(P.SUB_REP_NEG, i)] = compact(part.replicates.neg)
    return out


def read_subgroups(metrics: Mapping[str, object], n_subgroups: int) -> tuple[SubgroupPart, ...] | None:
    """The subgroups of a checked test reply (its metrics and replicate arrays in one mapping), or None where it
    sent none."""
    if P.subgroup_key(P.SUB_PATIENTS, 0) not in metrics:
        return None
    parts = []
    for i in range(n_subgroups):

        def get(key: str, i: int = i) -> Any:
            return metrics.get(P.subgroup_key(key, i))

        n_patients = int(get(P.SUB_PATIENTS))
        if n_patients == 0:
            parts.append(SubgroupPart(empty(), 0, None))
            continue
        bins = np.asarray(get(P.SUB_BINS), np.int64)
        hist = empty()
        hist.pos[bins], hist.neg[bins] = get(P.SUB_POS), get(P.SUB_NEG)
        reps = None if get(P.SUB_REP_POS) is None else ReplicateHistograms(bins, get(P.SUB_REP_POS), get(P.SUB_REP_NEG))
        parts.append(SubgroupPart(hist, n_patients, reps))
    return tuple(parts)


def calibration_metrics(sums: CalibrationSums) -> dict[str, float | list[int] | list[float]]:
    """A test reply's calibration entries (:mod:`common.federation.protocol`'s ``cal-*`` keys)."""
    return {
        P.CAL_COUNT: sums.count.astype(int).tolist(), P.CAL_SUM_P: sums.sum_p.tolist(),
        P.CAL_SUM_Y: sums.sum_y.tolist(), P.CAL_SQ_ERR: float(sums.sq_err),
    }  # fmt: skip


def read_calibration(metrics: Mapping[str, object]) -> CalibrationSums | None:
    """The calibration sums of a checked test reply, or None where it sent none."""
    if P.CAL_COUNT not in metrics:
        return None
    count, sum_p, sum_y = (np.asarray(metrics[k], np.float64) for k in (P.CAL_COUNT, P.CAL_SUM_P, P.CAL_SUM_Y))
    sq = metrics[P.CAL_SQ_ERR]
    assert isinstance(sq, int | float)
    return CalibrationSums(count.astype(np.int64), sum_p, sum_y, float(sq))
