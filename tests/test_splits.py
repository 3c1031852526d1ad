from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.config import CohortConfig
from common.data.splits import patient_split, patient_table
from common.synthetic.generator import plan_site


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


def test_ptbxl_folds_map_to_train_val_test() -> None:
    import pandas as pd

    from common.data.splits import fold_split

    assert fold_split(pd.Series([1, 8, 9, 10])).tolist() == ["train", "train", "val", "test"]


def test_assign_splits_is_patient_disjoint_per_site_and_seeded() -> None:
    import pandas as pd

    from common.data.splits import assign_splits

    rng = np.random.default_rng(0)
    index = pd.DataFrame(
        {
            "site": np.repeat(["a", "b"], 300),
            "patient_id": [f"p{i}" for i in rng.integers(0, 200, 600)],
            "label": (rng.random(600) < 0.1).astype(float),
        }
    )

    split = assign_splits(index, (0.7, 0.15, 0.15), seed=1)

    index["split"] = split
    assert index.groupby(["site", "patient_id"])["split"].nunique().max() == 1
    assert split.tolist() == assign_splits(index, (0.7, 0.15, 0.15), seed=1).tolist()
    assert split.tolist() != assign_splits(index, (0.7, 0.15, 0.15), seed=2).tolist()


def test_small_sites_merge_into_other() -> None:
    import pandas as pd

    from common.data.splits import merge_small_sites

    index = pd.DataFrame({"site": ["a"] * 5 + ["b"] * 2 + ["c"]})

    merged = merge_small_sites(index, 3)

    assert merged["site"].tolist() == ["a"] * 5 + ["other"] * 3
    assert merged["site_orig"].tolist() == index["site"].tolist()


def test_protocol_folds() -> None:
    from common.data.splits import gah_folds, loho_folds

    (gah,) = gah_folds(["a", "b", "c"])
    loho = loho_folds(["a", "b", "c"])

    assert gah.train_sites == ("a", "b", "c") and dict(gah.test_sites) == {s: ("test",) for s in "abc"}
    assert [f.name for f in loho] == ["loho-a", "loho-b", "loho-c"]
    for fold, held_out in zip(loho, "abc", strict=True):
        assert held_out not in fold.train_sites and set(fold.test_sites) == {held_out}
        assert fold.test_sites[held_out] == ("train", "val", "test")


def test_a_fold_outside_ptbxls_ten_is_named_as_a_plain_number() -> None:
    from common.data.splits import fold_split

    with pytest.raises(ValueError, match=r"PTB-XL folds must be 1-10, got \[0, 11\]$"):
        fold_split(pd.Series(np.array([0, 3, 11], dtype=np.int64)))
