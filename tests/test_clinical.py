from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, roc_auc_score

from common.evaluation.bootstrap import BootstrapCI, bootstrap_ci
from common.evaluation.calibration import brier_score, expected_calibration_error, reliability_curve
from common.evaluation.comparisons import delong_test, paired_bootstrap_test
from common.evaluation.metrics import MetricError, auprc, auroc, youden_point, youden_threshold
from common.evaluation.plots import plot_pr, plot_reliability
from common.evaluation.subgroups import age_band, sex_code, subgroup_aurocs
from common.evaluation.summary import ABSTRACT_LABELS, clinical_summary, summary_markdown, summary_markdown_rows
from common.evaluation.thresholds import threshold_metrics


def _scored(n: int, seed: int, shift: float = 1.0, prevalence: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    y[:2] = [0, 1]
    return y, rng.normal(size=n) + shift * y


def _width(ci: BootstrapCI) -> float:
    assert ci.lower is not None and ci.upper is not None
    return ci.upper - ci.lower


# ------------------------------------------------------------------------------------------------ bootstrap


def test_bootstrap_point_estimates_are_sklearns() -> None:
    # Prepare
    y, s = _scored(300, seed=1)
    pid = np.arange(300) // 3
    # Execute
    roc = bootstrap_ci("auroc", y, s, pid, n_boot=200)
    pr = bootstrap_ci("auprc", y, s, pid, n_boot=200)
    # Assert
    assert roc.estimate == pytest.approx(roc_auc_score(y, s), abs=1e-15)
    assert pr.estimate == pytest.approx(average_precision_score(y, s), abs=1e-15)
    assert (roc.n_ecgs, roc.n_patients, roc.positives, roc.n_valid + roc.n_skipped) == (300, 100, int(y.sum()), 200)
    assert roc.lower is not None and roc.upper is not None and roc.lower < roc.estimate < roc.upper


@pytest.mark.parametrize("seed", range(5))
def test_weighted_kernels_equal_sklearn_with_sample_weight(seed: int) -> None:
    # Prepare: tied scores and zero weights, as in a bootstrap replicate
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    y[:2] = [0, 1]
    s = np.round(rng.normal(size=400) + y, 1)
    w = rng.integers(0, 4, 400).astype(float)
    w[:2] = 1.0
    # Execute / Assert
    assert auroc(y, s, w) == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    assert auprc(y, s, w) == pytest.approx(average_precision_score(y, s, sample_weight=w), abs=1e-12)


def test_fast_path_draws_the_same_replicates_as_a_metric_function() -> None:
    # Prepare
    y, s = _scored(120, seed=2)
    pid = np.random.default_rng(2).integers(0, 50, 120)
    # Execute
    fast_roc, slow_roc = bootstrap_ci("auroc", y, s, pid, n_boot=60, seed=5), bootstrap_ci(auroc, y, s, pid, 60, 5)
    fast_pr, slow_pr = bootstrap_ci("auprc", y, s, pid, n_boot=60, seed=5), bootstrap_ci(auprc, y, s, pid, 60, 5)
    # Assert
    for fast, slow in ((fast_roc, slow_roc), (fast_pr, slow_pr)):
        assert fast.n_valid == slow.n_valid
        assert fast.lower == pytest.approx(slow.lower, abs=1e-12)
        assert fast.upper == pytest.approx(slow.upper, abs=1e-12)


def test_ci_brackets_the_estimate_and_narrows_with_more_patients() -> None:
    # Prepare: one ECG per patient
    y_small, s_small = _scored(200, seed=3)
    y_big, s_big = _scored(2000, seed=3)
    # Execute
    small = bootstrap_ci("auroc", y_small, s_small, np.arange(200), n_boot=400)
    big = bootstrap_ci("auroc", y_big, s_big, np.arange(2000), n_boot=400)
    # Assert
    for ci in (small, big):
        assert ci.lower is not None and ci.upper is not None
        assert ci.lower < ci.estimate < ci.upper
    assert _width(big) < 0.6 * _width(small)


def test_patient_resampling_widens_the_ci_when_ecgs_repeat_within_patients() -> None:
    # Prepare: every patient's ECG recorded twice
    y1, s1 = _scored(400, seed=4)
    y, s = np.repeat(y1, 2), np.repeat(s1, 2)
    by_patient = np.repeat(np.arange(400), 2)
    as_if_independent = np.arange(800)
    # Execute
    clustered = bootstrap_ci("auroc", y, s, by_patient, n_boot=500, seed=1)
    naive = bootstrap_ci("auroc", y, s, as_if_independent, n_boot=500, seed=1)
    # Assert: same point estimate, about sqrt(2) wider interval
    assert clustered.estimate == naive.estimate
    assert _width(clustered) > 1.2 * _width(naive)


def test_one_class_replicates_are_skipped_and_counted() -> None:
    # Prepare: two patients, one positive ECG each side; a replicate draws AA, AB, BA or BB
    y, s, pid = np.array([1, 0]), np.array([0.9, 0.1]), np.array(["A", "B"])
    # Execute
    ci = bootstrap_ci("auroc", y, s, pid, n_boot=1000, seed=0)
    # Assert
    assert ci.n_valid + ci.n_skipped == 1000
    assert 400 < ci.n_skipped < 600
    assert (ci.estimate, ci.lower, ci.upper) == (1.0, 1.0, 1.0)


def test_bootstrap_rejects_one_class_and_missing_patients() -> None:
    with pytest.raises(MetricError, match="both classes"):
        bootstrap_ci("auroc", np.zeros(5), np.arange(5.0), np.arange(5))
    with pytest.raises(MetricError, match="patient ids are missing"):
        bootstrap_ci("auroc", np.array([0, 1]), np.array([0.1, 0.2]), np.array(["a", None], dtype=object))


# ------------------------------------------------------------------------------------------------ threshold


def test_youden_on_separable_data_sits_between_the_classes() -> None:
    # Prepare
    y, s = np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])
    # Execute
    point = youden_point(y, s)
    # Assert: lowest positive score, J = 1, and it classifies validation perfectly
    assert (point.threshold, point.youden_j, point.sensitivity, point.specificity) == (0.8, 1.0, 1.0, 1.0)
    assert youden_threshold(y, s) == 0.8
    at = threshold_metrics(y, s, point.threshold)
    assert (at.sensitivity, at.specificity) == (1.0, 1.0)


def test_youden_ties_take_the_highest_threshold_and_stay_finite() -> None:
    # Prepare: J = 0.5 at both 0.4 and 0.2; an inverted score whose best J (0) is calling nothing
    y_tie, s_tie = np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4])
    y_inv, s_inv = np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.3, 0.4])
    # Execute
    tie = youden_threshold(y_tie, s_tie)
    inverted = youden_threshold(y_inv, s_inv)
    # Assert
    assert tie == 0.4
    assert np.isfinite(inverted) and 0.4 < inverted < 0.4 + 1e-12
    assert threshold_metrics(y_inv, s_inv, inverted).tp + threshold_metrics(y_inv, s_inv, inverted).fp == 0


def test_threshold_metrics_on_a_hand_computed_table() -> None:
    # Prepare: TP 3, FN 1, FP 2, TN 4 at threshold 0.5 (0.5 itself counts as positive)
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.7, 0.5, 0.2, 0.6, 0.5, 0.4, 0.3, 0.1, 0.0])
    # Execute
    m = threshold_metrics(y, s, 0.5)
    # Assert
    assert (m.tp, m.fn, m.fp, m.tn, m.n, m.positives) == (3, 1, 2, 4, 10, 4)
    assert m.sensitivity == pytest.approx(3 / 4)
    assert m.specificity == pytest.approx(4 / 6)
    assert m.ppv == pytest.approx(3 / 5)
    assert m.npv == pytest.approx(4 / 5)
    assert m.accuracy == pytest.approx(7 / 10)
    f1_pos, f1_neg = 2 * 3 / (2 * 3 + 2 + 1), 2 * 4 / (2 * 4 + 1 + 2)
    assert m.weighted_f1 == pytest.approx((4 * f1_pos + 6 * f1_neg) / 10)
    assert m.weighted_f1 == pytest.approx(f1_score(y, s >= 0.5, average="weighted"))


def test_undefined_ratios_are_none() -> None:
    # Prepare: no positives at all, nothing called positive
    y, s = np.zeros(4, dtype=int), np.array([0.1, 0.2, 0.3, 0.4])
    # Execute
    m = threshold_metrics(y, s, 0.9)
    # Assert
    assert m.sensitivity is None and m.ppv is None
    assert (m.specificity, m.npv, m.accuracy, m.weighted_f1) == (1.0, 1.0, 1.0, 1.0)
    assert json.loads(json.dumps(m.to_dict()))["sensitivity"] is None


# ------------------------------------------------------------------------------------------------ subgroups


def test_age_bands_and_sex_codes_at_the_edges() -> None:
    ages = [49.9, 50, 64.99, 65, 79.9, 80, 95, np.nan, None, "x"]
    assert list(age_band(ages)) == ["<50", "50-64", "50-64", "65-79", "65-79", ">=80", ">=80", "", "", ""]
    assert list(sex_code(["M", "f", " F ", "", np.nan, None, "X"])) == ["M", "F", "F", "", "", "", ""]


def test_subgroup_aurocs_counts_reasons_and_values() -> None:
    # Prepare: 8 ECGs per band for 3 bands with both classes, >=80 negatives only, 2 ECGs of unknown age/sex
    rng = np.random.default_rng(6)
    age = np.r_[np.full(8, 40.0), np.full(8, 55.0), np.full(8, 70.0), np.full(4, 85.0), np.nan, np.nan]
    y = np.r_[np.tile([0, 1, 0, 1, 0, 0, 1, 0], 3), np.zeros(4, int), 1, 0]
    s = rng.normal(size=30) + y
    sex = np.array(["M", "F"] * 14 + ["", np.nan], dtype=object)
    pid = np.arange(30) // 2
    # Execute
    subs = subgroup_aurocs(y, s, age, sex, pid, n_boot=100)
    by = {g.subgroup: g for g in subs}
    # Assert
    assert [(g.group, g.subgroup) for g in subs] == [
        ("age", "<50"),
        ("age", "50-64"),
        ("age", "65-79"),
        ("age", ">=80"),
        ("sex", "male"),
        ("sex", "female"),
    ]
    assert (by[">=80"].n, by[">=80"].positives, by[">=80"].auroc) == (4, 0, None)
    assert by[">=80"].reason is not None and "one class" in by[">=80"].reason
    assert by["50-64"].auroc == pytest.approx(roc_auc_score(y[8:16], s[8:16]))
    assert (by["50-64"].n, by["50-64"].n_patients, by["50-64"].positives) == (8, 4, 3)
    assert by["male"].n + by["female"].n == 28
    assert by["male"].auroc == pytest.approx(roc_auc_score(y[:28:2], s[:28:2]))


# ---------------------------------------------------------------------------------------------- calibration


def test_brier_matches_sklearn() -> None:
    y, s = _scored(200, seed=7)
    p = 1 / (1 + np.exp(-s))
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p))
    with pytest.raises(MetricError, match="probabilities"):
        brier_score(y, s)


def test_ece_hand_cases() -> None:
    # perfectly calibrated bins -> 0
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    p = np.array([0.25] * 4 + [0.75] * 4)
    assert expected_calibration_error(y, p) == pytest.approx(0.0)
    # all p = 1 with half positives -> 0.5
    assert expected_calibration_error(np.array([1, 0, 1, 0]), np.ones(4)) == pytest.approx(0.5)
    # two equal-size bins off by 0.2 and 0.1 -> 0.15
    y2, p2 = np.r_[np.zeros(5), np.ones(5)], np.r_[np.full(5, 0.2), np.full(5, 0.9)]
    assert expected_calibration_error(y2, p2) == pytest.approx(0.15)
    curve = reliability_curve(y2, p2, n_bins=10)
    assert list(curve.count) == [0, 0, 5, 0, 0, 0, 0, 0, 0, 5]
    assert curve.mean_predicted[2] == pytest.approx(0.2) and curve.observed[9] == 1.0
    assert np.isnan(curve.observed[0])


def test_plots_write_pngs(tmp_path: Path) -> None:
    y, s = _scored(200, seed=8)
    p = 1 / (1 + np.exp(-s))
    plot_pr({"model": (y, s), "noise": (y, np.random.default_rng(0).random(200))}, tmp_path / "pr.png", "PR")
    plot_reliability(y, p, tmp_path / "rel.png", "calibration")
    for name in ("pr.png", "rel.png"):
        data = (tmp_path / name).read_bytes()
        assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------------------- comparison


def _slow_delong(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """DeLong 1988 from the definition: psi over all (positive, negative) pairs, structural components."""
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    v10, v01 = [], []
    for s in (a, b):
        x, z = s[pos][:, None], s[neg][None, :]
        psi = (x > z) + 0.5 * (x == z)
        v10.append(psi.mean(axis=1))  # one per positive
        v01.append(psi.mean(axis=0))  # one per negative
    s10 = np.cov(np.stack(v10))  # (m - 1) denominators
    s01 = np.cov(np.stack(v01))
    cov = s10 / m + s01 / n
    diff = v10[0].mean() - v10[1].mean()
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    return float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1]), float(diff / np.sqrt(var))


def test_delong_matches_the_slow_structural_components() -> None:
    # Prepare: small case with ties
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 60)
    a = np.round(rng.normal(size=60) + y, 1)
    b = np.round(rng.normal(size=60) + 0.5 * y + 0.5 * a, 1)
    var_a, var_b, cov_ab, z = _slow_delong(y, a, b)
    # Execute
    r = delong_test(y, a, b)
    # Assert
    assert r.auroc_a == pytest.approx(roc_auc_score(y, a)) and r.auroc_b == pytest.approx(roc_auc_score(y, b))
    assert (r.var_a, r.var_b, r.cov_ab, r.z) == pytest.approx((var_a, var_b, cov_ab, z), rel=1e-10)
    assert r.p_value == pytest.approx(2 * stats.norm.sf(abs(z)))


def test_delong_identical_and_clearly_different_models() -> None:
    y, s = _scored(500, seed=10, shift=2.0)
    noise = np.random.default_rng(10).normal(size=500)
    same = delong_test(y, s, s.copy())
    assert (same.difference, same.z, same.p_value) == (0.0, 0.0, 1.0)
    different = delong_test(y, s, s + 3 * noise)
    assert different.difference > 0 and different.p_value < 1e-4
    assert different.lower is not None and different.lower > 0


def test_paired_bootstrap_identical_and_clearly_different_models() -> None:
    y, s = _scored(500, seed=11, shift=2.0)
    pid = np.arange(500) // 2
    noise = np.random.default_rng(11).normal(size=500)
    same = paired_bootstrap_test(y, s, s.copy(), pid, n_boot=300)
    assert (same.difference, same.lower, same.upper, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    different = paired_bootstrap_test(y, s, s + 3 * noise, pid, n_boot=300)
    assert different.difference == pytest.approx(roc_auc_score(y, s) - roc_auc_score(y, s + 3 * noise))
    assert different.lower is not None and different.lower > 0 and different.p_value < 0.01
    assert different.ratio == pytest.approx(different.estimate_a / different.estimate_b)
    assert same.ratio == same.ratio_lower == same.ratio_upper == 1.0
    assert different.ratio_lower is not None and different.ratio_upper is not None
    assert 1 < different.ratio_lower < different.ratio < different.ratio_upper
    pr = paired_bootstrap_test(y, s, s + 3 * noise, pid, metric="auprc", n_boot=100)
    assert pr.metric == "auprc" and pr.difference > 0


# -------------------------------------------------------------------------------------------------- summary


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    y, s = _scored(n, seed=seed, shift=1.5, prevalence=0.2)
    p = 1 / (1 + np.exp(-(s - 1.0)))
    meta = pd.DataFrame(
        {
            "patient_id": [f"p{i // 2}" for i in range(n)],
            "age": rng.uniform(30, 95, n).round(),
            "sex": rng.choice(np.array(["M", "F", ""], dtype=object), n),
        }
    )
    return y, p, meta


def test_clinical_summary_composes_the_study_table() -> None:
    # Prepare
    y_val, p_val, _ = _split(300, seed=12)
    y_test, p_test, meta = _split(400, seed=13)
    # Execute
    summary = clinical_summary(y_val, p_val, y_test, p_test, meta, name="cnn", n_boot=200)
    rows = summary_markdown_rows(summary)
    d = summary.to_dict()
    # Assert
    assert summary.youden.threshold == youden_threshold(y_val, p_val)
    at = threshold_metrics(y_test, p_test, summary.youden.threshold)
    assert summary.at_threshold == at
    assert summary.auroc.estimate == pytest.approx(roc_auc_score(y_test, p_test))
    assert summary.auprc.estimate == pytest.approx(average_precision_score(y_test, p_test))
    assert summary.n_patients_test == 200 and summary.prevalence == pytest.approx(y_test.mean())
    defined = [g.auroc for g in summary.subgroups if g.auroc is not None]
    assert (summary.subgroup_auroc_min, summary.subgroup_auroc_max) == (min(defined), max(defined))
    assert summary.brier == pytest.approx(brier_score_loss(y_test, p_test))
    assert [label for label, _ in rows] == list(ABSTRACT_LABELS)
    assert rows[3] == ("Sensitivity", f"{at.sensitivity:.3f}")
    lo, hi = summary.auroc.lower, summary.auroc.upper
    assert rows[0][1] == f"{summary.auroc.estimate:.3f} [{lo:.3f}-{hi:.3f}]"
    json.dumps(d, allow_nan=False)
    assert (d["auroc"], d["auroc_ci"], d["npv"]) == (summary.auroc.estimate, [lo, hi], at.npv)
    assert d["auroc_bootstrap"]["n_boot"] == 200 and len(d["subgroups"]) == 6
    assert summary_markdown_rows(json.loads(json.dumps(d))) == rows
    table = summary_markdown({"cnn": summary, "again": d})
    assert table.splitlines()[0] == "| Metric | cnn | again |" and "Subgroup AUROC range" in table


def test_clinical_summary_with_logits_leaves_calibration_undefined() -> None:
    y_val, p_val, _ = _split(200, seed=14)
    y_test, p_test, meta = _split(200, seed=15)
    logit = np.log(p_test / (1 - p_test))
    summary = clinical_summary(y_val, np.log(p_val / (1 - p_val)), y_test, logit, meta, n_boot=50)
    assert summary.brier is None and summary.ece is None
    assert any("not probabilities" in note for note in summary.notes)
    assert summary.to_dict()["brier"] is None
    rows = dict(summary_markdown_rows(summary, extended=True))
    assert rows["Brier"] == "n/a" and "PPV" in rows
