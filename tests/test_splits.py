from __future__ import annotations

import numpy as np

from common.config import CohortConfig
from common.splits import patient_split, patient_table
from common.synthetic import plan_site


def test_synthetic_splits_are_patient_disjoint_and_stratified() -> None:
    meta = plan_site(CohortConfig(n_ecgs=6000), 1).metadata

    assert meta.groupby("patient_id")["split"].nunique().max() == 1
    shares = meta["split"].value_counts(normalize=True)
    assert abs(shares["train"] - 0.7) < 0.03 and abs(shares["test"] - 0.15) < 0.03
    prevalence = meta.groupby("split")["label"].mean()
    assert prevalence.max() - prevalence.min() < 0.03


def test_every_split_gets_a_positive_when_there_are_three() -> None:
    patient = np.arange(40)
    label = np.zeros(40, dtype=int)
    label[[3, 17, 29]] = 1

    split = patient_split(patient_table(patient, label), (0.8, 0.1, 0.1), np.random.default_rng(0))

    assert sorted(split[[3, 17, 29]]) == ["test", "train", "val"]


def test_split_depends_only_on_the_seed() -> None:
    table = patient_table(np.repeat(np.arange(50), 2), np.repeat(np.arange(50) % 5 == 0, 2).astype(int))

    a = patient_split(table, (0.7, 0.15, 0.15), np.random.default_rng(4))
    b = patient_split(table, (0.7, 0.15, 0.15), np.random.default_rng(4))

    assert a.tolist() == b.tolist()
