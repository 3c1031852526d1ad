"""test.json from the hospitals' test replies: histograms, patient counts, confusion counts, replicates."""

from __future__ import annotations

import numpy as np
import pytest

from common.evaluation.bootstrap import bootstrap_ci
from common.federation import histograms as H
from common.federation import results as R

HOSPITALS = ["hospital_a", "hospital_b", "hospital_c"]


def site(rng: np.random.Generator, name: str, n: int, n_boot: int | None, index: int) -> tuple[R.SiteTest, dict]:
    n_patients = int(n / 1.5)
    patient = np.sort(rng.integers(0, n_patients, n))
    y = (rng.random(n_patients) < 0.12)[patient].astype(int)
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.4 * y)))
    ids = np.array([f"{name}-{p}" for p in patient])
    reps = None if n_boot is None else H.replicate_histograms(y, scores, ids, n_boot, H.hospital_seed(0, index))
    test = R.SiteTest(name, H.histogram(y, scores), len(set(ids)), H.threshold_counts(y, scores, 0.5), reps)
    return test, {"y": y, "scores": scores, "ids": ids}


def test_each_hospital_and_all_of_them_get_cis_sensitivity_and_specificity() -> None:
    rng = np.random.default_rng(0)
    made = [site(rng, h, n, 500, i) for i, (h, n) in enumerate(zip(HOSPITALS, (500, 400, 300), strict=True))]

    summary = R.summarise_test([t for t, _ in made][::-1], HOSPITALS, 0.5, seed=0, n_boot=500)

    assert list(summary["sites"]) == HOSPITALS and summary["missing"] == [] and summary["problems"] == []
    y = np.concatenate([d["y"] for _, d in made])
    scores = np.concatenate([d["scores"] for _, d in made])
    ids = np.concatenate([d["ids"] for _, d in made])
    everything = summary["all"]
    assert everything["n"] == len(y) and everything["positives"] == int(y.sum())
    assert everything["n_patients"] == len(set(ids))
    central = bootstrap_ci("auroc", y, scores, ids, n_boot=500, seed=0)
    assert everything["auroc"] == pytest.approx(central.estimate, abs=0.002)
    lo, hi = everything["auroc_ci"]
    assert lo < everything["auroc"] < hi
    assert abs(lo - central.lower) < 0.02 and abs(hi - central.upper) < 0.02
    counts = H.threshold_counts(y, scores, 0.5)
    assert (everything["tp"], everything["fp"], everything["tn"], everything["fn"]) == (
        counts.tp, counts.fp, counts.tn, counts.fn,
    )  # fmt: skip
    assert everything["sensitivity"] == counts.sensitivity
    for (test, _), name in zip(made, HOSPITALS, strict=True):
        one = summary["sites"][name]
        assert one["auroc"] == pytest.approx(H.auroc(test.histogram))
        assert one["auroc_ci"][0] < one["auroc"] < one["auroc_ci"][1]
        assert one["auprc_ci"][0] < one["auprc"] < one["auprc_ci"][1]


def test_a_hospital_without_replicates_leaves_its_ci_and_the_pooled_ci_out_and_says_so() -> None:
    rng = np.random.default_rng(1)
    a, _ = site(rng, "hospital_a", 300, 200, 0)
    b, _ = site(rng, "hospital_b", 300, None, 1)
    c, _ = site(rng, "hospital_c", 300, 100, 2)

    summary = R.summarise_test([a, b, c], HOSPITALS, 0.5, seed=0, n_boot=200)

    assert summary["all"]["auroc"] is not None and summary["all"]["auroc_ci"] is None
    assert summary["sites"]["hospital_a"]["auroc_ci"] is not None
    assert summary["sites"]["hospital_b"]["auroc_ci"] is None and summary["sites"]["hospital_c"]["auroc_ci"] is None
    assert summary["problems"] == [
        "hospital_b sent no bootstrap replicates",
        "hospital_c sent 100 bootstrap replicates, not 200",
    ]


def test_a_missing_hospital_is_named_and_one_class_leaves_the_rank_figures_out() -> None:
    only_negatives = R.SiteTest("hospital_a", H.histogram(np.zeros(5, int), np.full(5, 0.2)), 5, None, None)

    summary = R.summarise_test([only_negatives], HOSPITALS, None, seed=0, n_boot=None)

    assert summary["missing"] == ["hospital_b", "hospital_c"]
    assert summary["sites"]["hospital_a"]["auroc"] is None and summary["all"]["auprc"] is None
    assert "tp" not in summary["all"]


def test_hospital_seeds_differ_by_hospital_and_repeat_by_run_seed() -> None:
    seeds = [H.hospital_seed(7, i) for i in range(5)]

    assert len(set(seeds)) == 5 and seeds == [H.hospital_seed(7, i) for i in range(5)]
    assert H.hospital_seed(8, 0) != seeds[0]
