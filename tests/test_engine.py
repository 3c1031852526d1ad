from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from common.config import TrainConfig
from common.data import EcgArrays, concat, load_split
from common.engine import fit, predict, train_epochs
from common.metrics import MetricError
from common.models import create_model
from common.store import SiteStore

CFG = TrainConfig(epochs=3, batch_size=16, lr=3e-3, seed=0, num_threads=1)


def _toy(n: int = 64, seed: int = 0) -> EcgArrays:
    """Positives carry a 0.5 mV offset on V2: trivially separable."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 4 == 0).astype(np.float32)
    x = rng.normal(0, 0.1, (n, 12, 200)).astype(np.float32)
    x[y == 1, 7] += 0.5
    return EcgArrays(x, np.zeros((n, 5), np.float32), y, pd.DataFrame({"record_id": range(n)}))


def test_training_learns_a_separable_toy_task() -> None:
    torch.manual_seed(0)
    model = create_model("cnn1d")
    data = _toy()

    losses = train_epochs(model, data, CFG, epochs=4, seed=0)
    scores = predict(model, _toy(seed=1))

    assert losses[-1] < losses[0]
    assert scores.shape == (64,) and ((scores >= 0) & (scores <= 1)).all()
    assert scores[_toy(seed=1).y == 1].min() > scores[_toy(seed=1).y == 0].max()


def test_training_is_reproducible_from_the_seed() -> None:
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        model = create_model("cnn1d")
        train_epochs(model, _toy(), CFG, epochs=1, seed=5)
        states.append(model.state_dict())

    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_no_positives_is_a_clear_error() -> None:
    data = _toy()
    no_pos = EcgArrays(data.x, data.demo, np.zeros_like(data.y), data.meta)

    with pytest.raises(MetricError, match="no AMI positives"):
        train_epochs(create_model("cnn1d"), no_pos, CFG, epochs=1, seed=0)


def test_fit_keeps_the_best_validation_epoch() -> None:
    torch.manual_seed(0)
    model = create_model("cnn1d")

    result = fit(model, _toy(), _toy(seed=2), CFG)

    best = max(h.val_auroc for h in result.history if h.val_auroc is not None)
    assert result.best_val_auroc == best
    assert result.history[result.best_epoch - 1].val_auroc == best
    assert result.samples_seen == CFG.epochs * 64


def test_sites_at_different_rates_pool_after_resampling(tiny_cohort: list[SiteStore]) -> None:
    parts = [load_split(s, "train", 100) for s in tiny_cohort]

    pooled = concat(parts)

    assert {p.x.shape[-1] for p in parts} == {1000}
    assert len(pooled) == sum(len(p) for p in parts)
    assert pooled.demo.shape == (len(pooled), 5)
    assert set(pooled.meta["split"]) == {"train"}
