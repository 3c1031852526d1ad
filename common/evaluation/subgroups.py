"""AUROC per age band and per sex, each with its own patient-bootstrap CI."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from common.evaluation.bootstrap import bootstrap_ci, patient_codes
from common.evaluation.metrics import JsonResult, MetricError, finite_scores, labels01

AGE_BANDS: Final[tuple[tuple[str, float, float], ...]] = (
    ("<50", -math.inf, 50.0),
    ("50-64", 50.0, 65.0),
    ("65-79", 65.0, 80.0),
    (">=80", 80.0, math.inf),
)
"""``(label, low, high)``: age in ``[low, high)`` years falls in the band (so 64.5 is "50-64", 80 is ">=80")."""

SEX_GROUPS: Final[tuple[tuple[str, str], ...]] = (("male", "M"), ("female", "F"))
"""``(label, code)``: sex subgroups and the code (after strip and upper-casing) that selects them."""


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


SUBGROUPS: Final[tuple[tuple[str, str], ...]] = (
    *(("age", label) for label, _, _ in AGE_BANDS),
    *(("sex", label) for label, _ in SEX_GROUPS),
)
"""``(group, subgroup)`` in report order: the age bands, then male and female."""


def subgroup_masks(age: ArrayLike | Sequence[object], sex: ArrayLike | Sequence[object]) -> list[np.ndarray]:
    """One boolean mask per entry of :data:`SUBGROUPS` (missing age or sex is in no subgroup of its kind)."""
    bands, sexes = age_band(age), sex_code(sex)
    return [bands == label for label, _, _ in AGE_BANDS] + [sexes == code for _, code in SEX_GROUPS]


def subgroup_reason(n: int, positives: int) -> str | None:
    """Why a subgroup has no AUROC, or None."""
    if n == 0:
        return "no ECGs"
    if positives in (0, n):
        return f"one class only: {positives} positives of {n} ECGs"
    return None


@dataclass(frozen=True)
class SubgroupAUROC(JsonResult):
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
    yy = labels01(y, "subgroup AUROC")
    s = finite_scores(scores, len(yy), "subgroup AUROC")
    patient, _ = patient_codes(patient_ids, len(yy), "subgroup AUROC")
    masks = subgroup_masks(age, sex)
    if len(masks[0]) != len(yy) or len(masks[-1]) != len(yy):
        raise MetricError(f"subgroup AUROC: {len(yy)} labels but {len(masks[0])} ages and {len(masks[-1])} sexes")
    out = []
    for (group, label), mask in zip(SUBGROUPS, masks, strict=True):
        ym, sm, pm = yy[mask], s[mask], patient[mask]
        n, pos, n_pat = len(ym), int(ym.sum()), len(np.unique(pm))
        reason = subgroup_reason(n, pos)
        if reason is not None:
            out.append(SubgroupAUROC(group, label, n, n_pat, pos, None, None, None, 0, reason))
            continue
        ci = bootstrap_ci("auroc", ym, sm, pm, n_boot=n_boot, seed=seed, alpha=alpha)
        out.append(SubgroupAUROC(group, label, n, n_pat, pos, ci.estimate, ci.lower, ci.upper, ci.n_skipped, None))
    return tuple(out)
