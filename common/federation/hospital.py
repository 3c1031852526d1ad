"""What a hospital does in a federated round, as plain functions (Flower-free)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from common.config import CohortConfig, TrainConfig
from common.data.arrays import EcgArrays, load_split
from common.data.sources import RealData
from common.federation import histograms as H
from common.models import create_model
from common.synthetic.cohort import ensure_synthetic_site
from common.training.engine import predict, seed_everything, train_epochs

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class LocalTrainResult:
    state: StateDict
    num_examples: int
    train_loss: float


@dataclass(frozen=True)
class LocalEvalResult:
    """Everything a hospital reports about an evaluation: counts, never a per-record value."""

    num_examples: int
    histogram: H.ScoreHistogram
    counts: H.ThresholdCounts | None


def round_seed(seed: int, site: int, server_round: int) -> int:
    """Seed of one hospital's local training in one round: independent of process and node order."""
    return int(np.random.SeedSequence([seed, site, server_round]).generate_state(1)[0])


@lru_cache(maxsize=8)
def site_split(data: CohortConfig | RealData, site_index: int, data_dir: Path, split: str, target_fs: int) -> EcgArrays:
    """One split of one hospital's data, cached in memory across rounds of the same process.

    A synthetic hospital generates only its own data; real data must have been ingested already
    (the orchestrator does it once), so opening it is a cache hit.
    """
    if isinstance(data, CohortConfig):
        store = ensure_synthetic_site(data, site_index, data_dir, progress=False)
    else:
        store = data.open(data_dir, workers=1, echo=lambda *_: None)[site_index]
    return load_split(store, split, target_fs)


def local_train(
    state: StateDict,
    data: EcgArrays,
    cfg: TrainConfig,
    *,
    epochs: int,
    seed: int,
    prox_mu: float = 0.0,
    rounds: tuple[int, int] | None = None,
) -> LocalTrainResult:
    """Start from the global weights, train ``epochs`` local epochs (FedProx term if ``prox_mu``).

    ``rounds=(server_round, total_rounds)`` places the local epochs in the run's cosine
    learning-rate schedule, as pooled training over the same passes decays it.
    """
    seed_everything(seed)
    model = create_model(cfg.model)
    model.load_state_dict(state)
    schedule = None if rounds is None else ((rounds[0] - 1) * epochs, rounds[1] * epochs)
    losses = train_epochs(model, data, cfg, epochs=epochs, seed=seed, prox_mu=prox_mu, schedule=schedule)
    return LocalTrainResult(model.state_dict(), len(data), float(np.mean(losses)))


def local_evaluate(
    state: StateDict, data: EcgArrays, cfg: TrainConfig, threshold: float | None = None
) -> LocalEvalResult:
    """Score the local split and reduce it to a score histogram (and counts at ``threshold``)."""
    model = create_model(cfg.model)
    model.load_state_dict(state)
    scores = predict(model, data, cfg)
    counts = H.threshold_counts(data.y, scores, threshold) if threshold is not None else None
    return LocalEvalResult(len(data), H.histogram(data.y, scores), counts)
