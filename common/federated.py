"""What a hospital does in a federated round, as plain functions (Flower-free)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from common.cohort import ensure_synthetic_site
from common.config import CohortConfig, TrainConfig
from common.data import EcgArrays, load_split
from common.engine import predict, seed_everything, train_epochs
from common.metrics import MetricError, auroc
from common.models import create_model

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class LocalTrainResult:
    state: StateDict
    num_examples: int
    train_loss: float


@dataclass(frozen=True)
class LocalEvalResult:
    num_examples: int
    positives: int
    auroc: float | None


@lru_cache(maxsize=8)
def site_split(cohort: CohortConfig, site_index: int, data_dir: Path, split: str, target_fs: int) -> EcgArrays:
    """One split of one hospital's data, cached in memory across rounds of the same process."""
    store = ensure_synthetic_site(cohort, site_index, data_dir, progress=False)
    return load_split(store, split, target_fs)


def local_train(
    state: StateDict, data: EcgArrays, cfg: TrainConfig, *, epochs: int, seed: int, prox_mu: float = 0.0
) -> LocalTrainResult:
    """Start from the global weights, train ``epochs`` local epochs, return the new weights."""
    seed_everything(seed)
    model = create_model(cfg.model)
    model.load_state_dict(state)
    losses = train_epochs(model, data, cfg, epochs=epochs, seed=seed, prox_mu=prox_mu)
    return LocalTrainResult(model.state_dict(), len(data), float(np.mean(losses)))


def local_evaluate(state: StateDict, data: EcgArrays, cfg: TrainConfig) -> LocalEvalResult:
    """Aggregate-only evaluation: no per-record score leaves this function."""
    model = create_model(cfg.model)
    model.load_state_dict(state)
    try:
        auc: float | None = auroc(data.y, predict(model, data))
    except MetricError:
        auc = None
    return LocalEvalResult(len(data), data.n_positive, auc)
