from __future__ import annotations

import numpy as np
import pytest

from common.evaluation.metrics import MetricError, auprc, auroc


def test_auroc_matches_a_hand_computed_case() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    # positives 0.35, 0.8, 0.9 against negatives 0.1, 0.4, 0.2: 8 of 9 pairs ordered correctly
    assert auroc(y, s) == pytest.approx(8 / 9)
    # precision at each positive: 1/1, 2/2, 3/4 -> mean 11/12
    assert auprc(y, s) == pytest.approx((1 + 1 + 0.75) / 3)


def test_undefined_metrics_say_why() -> None:
    with pytest.raises(MetricError, match="both classes"):
        auroc(np.zeros(4), np.arange(4.0))
    with pytest.raises(MetricError, match="NaN"):
        auroc(np.array([0, 1]), np.array([0.2, np.nan]))
