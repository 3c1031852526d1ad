"""Patient-disjoint, label-stratified splits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

SPLITS: Final[tuple[str, str, str]] = ("train", "val", "test")


def patient_table(patient: np.ndarray, label: np.ndarray) -> pd.DataFrame:
    """One row per patient: its number of ECGs ``n`` and ``label`` = 1 if any ECG is positive."""
    df = pd.DataFrame({"patient": patient, "label": label})
    return df.groupby("patient", sort=True)["label"].agg(n="size", label="max")


def patient_split(
    patients: pd.DataFrame, fractions: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    """Assign every patient to train / val / test.

    Patients are shuffled within each label and cut where the running ECG count crosses the
    fractions, so each split gets about its share of ECGs and of positives and no patient is in two
    splits. Where a label has at least three patients, every split receives at least one of them.

    Parameters
    ----------
    patients
        Output of :func:`patient_table` (columns ``n`` and ``label``).
    fractions
        Train, validation and test shares of ECGs.
    rng
        Seeded generator; the result depends only on it and the table.

    Returns
    -------
    numpy.ndarray
        Split name per row of ``patients``.
    """
    out = np.empty(len(patients), dtype=object)
    bounds = np.cumsum(fractions)[:-1]
    for lab in sorted(patients["label"].unique()):
        idx = np.flatnonzero(patients["label"].to_numpy() == lab)
        idx = idx[rng.permutation(len(idx))]
        n = patients["n"].to_numpy()[idx]
        pos = (np.cumsum(n) - n / 2) / n.sum()
        which = np.searchsorted(bounds, pos, side="right")
        if len(idx) >= 3:
            for s in range(3):
                if not np.any(which == s):
                    # take one patient from the largest split
                    donor = np.bincount(which, minlength=3).argmax()
                    which[np.flatnonzero(which == donor)[0 if s < donor else -1]] = s
        out[idx] = np.asarray(SPLITS)[which]
    return out.astype(str)


def fold_split(fold: pd.Series) -> np.ndarray:
    """PTB-XL's protocol: folds 1-8 train, 9 validation, 10 test."""
    folds = fold.astype(int).to_numpy()
    bad = sorted(int(f) for f in set(folds) - set(range(1, 11)))
    if bad:
        raise ValueError(f"PTB-XL folds must be 1-10, got {bad}")
    return np.where(folds == 10, "test", np.where(folds == 9, "val", "train"))


def assign_splits(index: pd.DataFrame, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """Split name per index row: PTB-XL's folds where its reader gives them (the reserved ``fold``
    column), else patient-disjoint, label-stratified splits drawn per site from ``(seed, site)``.

    A ``strat_fold`` column of another source is ordinary metadata. Rows without a label count as
    negatives for stratification (they are rejected later anyway).
    """
    if "fold" in index.columns and index["fold"].notna().all():
        return fold_split(index["fold"])
    out = np.empty(len(index), dtype=object)
    label = pd.to_numeric(index["label"], errors="coerce").fillna(0).astype(int).to_numpy()
    for s_i, site in enumerate(sorted(index["site"].unique())):
        rows = np.flatnonzero(index["site"].to_numpy() == site)
        _, patient = np.unique(index["patient_id"].to_numpy()[rows], return_inverse=True)
        seed_seq = [seed, s_i, int.from_bytes(str(site).encode()[:8].ljust(8, b"\0"), "little")]
        per_patient = patient_split(patient_table(patient, label[rows]), fractions, np.random.default_rng(seed_seq))
        out[rows] = per_patient[patient]
    return out.astype(str)


def merge_small_sites(index: pd.DataFrame, min_records: int, *, other: str = "other") -> pd.DataFrame:
    """Merge sites with fewer than ``min_records`` rows into one ``other`` hospital (kept in ``site_orig``)."""
    counts = index["site"].value_counts()
    small = set(counts.index[counts < min_records])
    out = index.copy()
    out["site_orig"] = out["site"]
    out.loc[out["site"].isin(small), "site"] = other
    return out


@dataclass(frozen=True)
class Fold:
    """One train/evaluate arrangement of hospitals for a study protocol.

    ``train_sites`` contribute their train and validation splits; each ``test_sites`` entry says
    which splits of that hospital are its test data.
    """

    name: str
    train_sites: tuple[str, ...]
    test_sites: Mapping[str, tuple[str, ...]]


def gah_folds(sites: Sequence[str]) -> list[Fold]:
    """GAH: every hospital trains; each hospital's test split is evaluated separately (and pooled)."""
    return [Fold("gah", tuple(sites), {s: ("test",) for s in sites})]


def loho_folds(sites: Sequence[str]) -> list[Fold]:
    """Leave one hospital out: train on the others, test on all of the held-out hospital."""
    if len(sites) < 2:
        raise ValueError(f"LOHO needs at least 2 hospitals, got {list(sites)}")
    return [Fold(f"loho-{h}", tuple(s for s in sites if s != h), {h: ("train", "val", "test")}) for h in sites]
