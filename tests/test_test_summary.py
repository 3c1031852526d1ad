"""test.json from the hospitals' test replies: histograms, patient counts, confusion counts, replicates."""

from __future__ import annotations

import json
from pathlib import Path

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


def _with_subgroups(rng: np.random.Generator, n_boot: int) -> tuple[list[R.SiteTest], dict[str, np.ndarray]]:
    """Three hospitals whose ECGs carry age and sex, their test replies with subgroups and calibration."""
    from common.evaluation.calibration import calibration_sums

    tests: list[R.SiteTest] = []
    pooled: dict[str, list[np.ndarray]] = {k: [] for k in ("y", "scores", "ids", "age", "sex")}
    for i, (name, n) in enumerate(zip(HOSPITALS, (900, 700, 500), strict=True)):
        base, data = site(rng, name, n, n_boot, i)
        patients = np.unique(data["ids"], return_inverse=True)[1]
        age = rng.uniform(25, 95, patients.max() + 1)[patients]
        age[rng.random(n) < 0.03] = np.nan  # some ages unknown
        sex = rng.choice(np.array(["M", "F", ""], dtype=object), patients.max() + 1, p=[0.55, 0.43, 0.02])[patients]
        parts = H.subgroup_parts(data["y"], data["scores"], age, sex, data["ids"], n_boot, H.hospital_seed(0, i))
        tests.append(R.SiteTest(name, base.histogram, base.n_patients, base.counts, base.replicates, parts,
                                calibration_sums(data["y"], data["scores"])))  # fmt: skip
        for k, v in (*data.items(), ("age", age), ("sex", sex)):
            pooled[k].append(v)
    return tests, {k: np.concatenate(v) for k, v in pooled.items()}


def test_subgroup_aurocs_and_cis_from_histograms_agree_with_the_central_ones() -> None:
    from common.evaluation.subgroups import SUBGROUPS, subgroup_aurocs

    # Prepare
    tests, d = _with_subgroups(np.random.default_rng(3), 1000)
    # Execute
    summary = R.summarise_test(tests, HOSPITALS, 0.5, seed=0, n_boot=1000)
    # Assert: the same subgroups, sizes and AUROCs (exact up to the histogram's bins); CIs within bootstrap noise
    central = subgroup_aurocs(d["y"], d["scores"], d["age"], d["sex"], d["ids"], n_boot=1000, seed=0)
    binned = subgroup_aurocs(d["y"], H.EDGES[H.bin_of(d["scores"])], d["age"], d["sex"], d["ids"], n_boot=10)
    got = summary["subgroups"]
    assert [(g["group"], g["subgroup"]) for g in got] == list(SUBGROUPS)
    for g, c, b in zip(got, central, binned, strict=True):
        assert (g["n"], g["positives"], g["n_patients"]) == (c.n, c.positives, c.n_patients)
        assert g["reason"] is None and c.auroc is not None and c.lower is not None and c.upper is not None
        assert g["auroc"] == pytest.approx(b.auroc, abs=1e-12)
        assert g["auroc"] == pytest.approx(c.auroc, abs=0.002)
        half = (c.upper - c.lower) / 2
        assert abs(g["auroc_ci"][0] - c.lower) < 0.25 * half and abs(g["auroc_ci"][1] - c.upper) < 0.25 * half


def test_calibration_from_sums_is_exactly_the_central_one() -> None:
    from common.evaluation.calibration import brier_score, expected_calibration_error, reliability_curve

    tests, d = _with_subgroups(np.random.default_rng(4), 20)

    summary = R.summarise_test(tests, HOSPITALS, 0.5, seed=0, n_boot=20)

    everything = summary["all"]["calibration"]
    assert everything["brier"] == pytest.approx(brier_score(d["y"], d["scores"]), abs=1e-12)
    assert everything["ece"] == pytest.approx(expected_calibration_error(d["y"], d["scores"]), abs=1e-12)
    curve = reliability_curve(d["y"], d["scores"])
    assert everything["count"] == curve.count.tolist()
    np.testing.assert_allclose(np.array(everything["observed"], float), curve.observed, atol=1e-12)
    first = summary["sites"]["hospital_a"]["calibration"]
    n_a = summary["sites"]["hospital_a"]["n"]
    assert first["brier"] == pytest.approx(brier_score(d["y"][:n_a], d["scores"][:n_a]), abs=1e-12)


def test_the_report_shows_subgroups_and_calibration(tmp_path: Path) -> None:
    tests, _ = _with_subgroups(np.random.default_rng(5), 20)
    summary = R.summarise_test(tests, HOSPITALS, 0.5, seed=0, n_boot=20)

    R.write_report(tmp_path, summary, [{"round": 1, "train_loss": 0.5, "val": {}, "trained": HOSPITALS}])

    report = (tmp_path / R.REPORT).read_text()
    assert "## Subgroups (all hospitals)" in report and "| age | 65-79 |" in report and "| sex | female |" in report
    assert "## Calibration" in report and "Brier score" in report
    assert (tmp_path / R.CALIBRATION).stat().st_size > 5000
    results = json.loads((tmp_path / R.RESULTS).read_text())
    assert len(results["subgroups"]) == 6 and results["calibration"]["all"]["ece"] >= 0
