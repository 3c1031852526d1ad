"""Patient-bootstrap CIs from what hospitals may send: one score histogram per replicate, added up."""

from __future__ import annotations

import numpy as np
import pytest

from common.evaluation.bootstrap import bootstrap_ci, patient_codes, replicate_counts, replicates
from common.federation import histograms as H


def hospital(rng: np.random.Generator, n: int, prevalence: float, shift: float, tag: str) -> dict[str, np.ndarray]:
    """ECGs of about n / 1.5 patients, a patient's ECGs sharing their label; positives score higher."""
    n_patients = int(n / 1.5)
    patient = np.sort(rng.integers(0, n_patients, n))
    sick = rng.random(n_patients) < prevalence
    y = sick[patient].astype(int)
    logit = rng.normal(0.0, 1.0, n) + shift * y + rng.normal(0, 0.5, n_patients)[patient]
    return {"y": y, "scores": 1 / (1 + np.exp(-logit)), "patients": np.array([f"{tag}-{p}" for p in patient])}


def test_each_replicate_counts_the_ecgs_of_the_patients_drawn() -> None:
    rng = np.random.default_rng(1)
    h = hospital(rng, 300, 0.1, 1.5, "a")

    reps = H.replicate_histograms(h["y"], h["scores"], h["patients"], n_boot=50, seed=7)

    codes, n_patients = patient_codes(h["patients"], len(h["y"]), "test")
    ecgs = np.bincount(codes, minlength=n_patients)
    pos = np.bincount(codes, weights=h["y"], minlength=n_patients)
    drawn = np.concatenate(list(replicate_counts(n_patients, len(h["y"]), 50, 7)))
    np.testing.assert_array_equal(reps.pos.sum(axis=1), drawn @ pos)
    np.testing.assert_array_equal(reps.pos.sum(axis=1) + reps.neg.sum(axis=1), drawn @ ecgs)
    assert set(reps.bins) == set(H.bin_of(h["scores"]))  # only the bins its ECGs fall in


def test_one_hospitals_replicate_auroc_is_the_central_bootstrap_of_its_binned_scores() -> None:
    rng = np.random.default_rng(2)
    h = hospital(rng, 400, 0.15, 1.2, "a")
    binned = H.EDGES[H.bin_of(h["scores"])]  # what the grid keeps of each score
    codes, n_patients = patient_codes(h["patients"], len(h["y"]), "test")

    from_histograms = H.replicate_metric([H.replicate_histograms(h["y"], h["scores"], h["patients"], 200, 3)], "auroc")
    central = replicates("auroc", h["y"], [binned], codes, n_patients, 200, 3)[:, 0]

    np.testing.assert_allclose(from_histograms, central, rtol=0, atol=1e-12)


def test_the_stratified_histogram_ci_agrees_with_the_central_patient_bootstrap() -> None:
    rng = np.random.default_rng(3)
    sites = [hospital(rng, n, p, 1.3, t) for n, p, t in ((900, 0.06, "a"), (700, 0.08, "b"), (400, 0.10, "c"))]
    y = np.concatenate([s["y"] for s in sites])
    scores = np.concatenate([s["scores"] for s in sites])
    patients = np.concatenate([s["patients"] for s in sites])
    parts = [H.replicate_histograms(s["y"], s["scores"], s["patients"], 1000, seed=i) for i, s in enumerate(sites)]
    total = H.histogram(y, scores)
    n_patients = len(set(patients))

    for metric in ("auroc", "auprc"):
        federated = H.histogram_ci(total, parts, metric, alpha=0.05, seed=0, n_patients=n_patients)
        central = bootstrap_ci(metric, y, scores, patients, n_boot=1000, seed=0)

        assert federated.estimate == pytest.approx(central.estimate, abs=0.002)
        assert federated.lower is not None and central.lower is not None
        assert federated.upper is not None and central.upper is not None
        half = (central.upper - central.lower) / 2
        # two bootstraps of 1000 replicates: the bounds agree to a small part of the interval's width
        assert abs(federated.lower - central.lower) < 0.15 * half + 0.005, (metric, federated, central)
        assert abs(federated.upper - central.upper) < 0.15 * half + 0.005, (metric, federated, central)
        assert federated.n_boot == 1000 and federated.n_ecgs == len(y) and federated.positives == int(y.sum())


def test_replicates_of_different_counts_cannot_be_added() -> None:
    rng = np.random.default_rng(4)
    h = hospital(rng, 100, 0.2, 1.0, "a")
    a = H.replicate_histograms(h["y"], h["scores"], h["patients"], 10, 0)
    b = H.replicate_histograms(h["y"], h["scores"], h["patients"], 20, 0)

    with pytest.raises(ValueError, match="one replicate count"):
        H.replicate_metric([a, b], "auroc")
    with pytest.raises(ValueError, match="unknown metric"):
        H.replicate_metric([a], "brier")
