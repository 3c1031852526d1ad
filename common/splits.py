"""Patient-disjoint, label-stratified splits."""

from __future__ import annotations

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
