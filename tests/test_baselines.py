from __future__ import annotations

import numpy as np

from common.config import CohortConfig
from common.data.arrays import EcgArrays
from common.data.preprocess import demographics
from common.evaluation.metrics import auroc
from common.models.feature_baseline import FeatureBaseline
from common.models.features import FEATURE_NAMES
from common.synthetic.generator import plan_site, render_chunk


def _arrays(start: int, stop: int) -> EcgArrays:
    plan = plan_site(CohortConfig(n_ecgs=6000, difficulty=0.0), 2)  # 100 Hz hospital, easy task
    meta = plan.metadata.iloc[start:stop].reset_index(drop=True)
    x = render_chunk(plan, start, stop, seed=0)
    return EcgArrays(x, demographics(meta), meta["label"].to_numpy(np.float32), meta)


def test_feature_baseline_learns_the_st_signal() -> None:
    train, test = _arrays(0, 800), _arrays(800, 1200)

    model = FeatureBaseline(fs=100).fit(train)
    scores = model.predict(test)

    assert scores.shape == (len(test),) and ((scores >= 0) & (scores <= 1)).all()
    assert 0.65 < auroc(test.y, scores) < 1.0
    assert model.n_parameters == len(FEATURE_NAMES) + 5 + 1


def test_feature_baseline_survives_ecgs_without_beats() -> None:
    train = _arrays(0, 400)
    flat = EcgArrays(np.zeros_like(train.x[:3]), train.demo[:3], train.y[:3], train.meta.iloc[:3])

    scores = FeatureBaseline(fs=100).fit(train).predict(flat)

    assert np.isfinite(scores).all()
