from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from common.federation import histograms as H


def _scores(n: int, prevalence: float, seed: int, sep: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid outputs of a decent classifier: most negatives crowd near 0."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    logits = rng.normal(-4.0 + sep * 2 * y, 1.8)
    return y, 1 / (1 + np.exp(-logits))


@pytest.mark.parametrize("seed", range(5))
def test_histogram_auroc_matches_exact_pooled_auroc(seed: int) -> None:
    sites = [_scores(n, p, seed * 10 + i) for i, (n, p) in enumerate([(900, 0.06), (600, 0.08), (300, 0.10)])]

    pooled = sum((H.histogram(y, s) for y, s in sites), H.empty())

    y_all = np.concatenate([y for y, _ in sites])
    s_all = np.concatenate([s for _, s in sites])
    assert abs(H.auroc(pooled) - roc_auc_score(y_all, s_all)) < 0.001
    assert abs(H.auprc(pooled) - average_precision_score(y_all, s_all)) < 0.01


def test_ties_in_a_bin_count_half() -> None:
    h = H.histogram(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.9, 0.1]))

    assert H.auroc(h) == pytest.approx(roc_auc_score([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.1]))
    assert h.n_pos == 2 and h.n_neg == 2


def test_youden_threshold_separates_separable_data() -> None:
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.8])

    thr = H.youden_threshold(H.histogram(y, s))
    counts = H.threshold_counts(y, s, thr)

    assert 0.3 < thr <= 0.7
    assert (counts.tp, counts.fp, counts.tn, counts.fn) == (2, 0, 3, 0)
    assert counts.sensitivity == 1.0 and counts.specificity == 1.0


def test_one_class_is_an_error_and_counts_add() -> None:
    with pytest.raises(ValueError, match="both classes"):
        H.auroc(H.histogram(np.zeros(3), np.array([0.1, 0.2, 0.3])))
    total = H.ThresholdCounts(1, 2, 3, 4) + H.ThresholdCounts(1, 1, 1, 1)
    assert total == H.ThresholdCounts(2, 3, 4, 5) and total.sensitivity == 2 / 7
    assert H.ThresholdCounts(0, 1, 1, 0).sensitivity is None
