"""Training and evaluation as plain functions (no Flower inside).

The pooled and local-only baselines call :func:`fit`; a federated client calls
:func:`train_epochs` for its local epochs and :func:`predict` to evaluate.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from common.config import TrainConfig
from common.data import EcgArrays
from common.metrics import MetricError, auroc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    train_loss: float
    val_auroc: float | None


@dataclass(frozen=True)
class FitResult:
    history: tuple[EpochLog, ...]
    best_epoch: int
    best_val_auroc: float | None
    seconds: float
    samples_seen: int


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _pos_weight(y: np.ndarray) -> torch.Tensor:
    n_pos = float(y.sum())
    if n_pos == 0:
        raise MetricError("training data has no AMI positives; cannot weight the classes")
    return torch.tensor((len(y) - n_pos) / n_pos, dtype=torch.float32)


def train_epochs(
    model: nn.Module,
    data: EcgArrays,
    cfg: TrainConfig,
    *,
    epochs: int,
    seed: int,
    optimizer: torch.optim.Optimizer | None = None,
    prox_mu: float = 0.0,
) -> list[float]:
    """Run ``epochs`` passes over ``data``; returns the mean loss of each epoch.

    With ``prox_mu > 0`` the FedProx term ``mu/2 * ||w - w_start||^2`` is added, ``w_start`` being
    the weights the call started from (the global model in a federated round).
    """
    if len(data) == 0:
        raise ValueError("no training records")
    torch.set_num_threads(cfg.num_threads)
    opt = optimizer or torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=_pos_weight(data.y))
    anchor = [p.detach().clone() for p in model.parameters()] if prox_mu > 0 else []
    x, demo, y = torch.from_numpy(data.x), torch.from_numpy(data.demo), torch.from_numpy(data.y)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        total, n = 0.0, 0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on a single record
                continue
            loss = loss_fn(model(x[idx], demo[idx]), y[idx])
            if prox_mu > 0:
                loss = loss + prox_mu / 2 * sum(
                    ((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True)
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        losses.append(total / max(n, 1))
    return losses


@torch.no_grad()
def predict(model: nn.Module, data: EcgArrays, batch_size: int = 256) -> np.ndarray:
    """AMI probabilities for every record."""
    model.eval()
    out = [
        torch.sigmoid(
            model(torch.from_numpy(data.x[i : i + batch_size]), torch.from_numpy(data.demo[i : i + batch_size]))
        )
        for i in range(0, len(data), batch_size)
    ]
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


def fit(
    model: nn.Module,
    train: EcgArrays,
    val: EcgArrays,
    cfg: TrainConfig,
    *,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> FitResult:
    """Train for ``cfg.epochs`` and restore the weights of the epoch with the best validation AUROC."""
    seed_everything(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    history: list[EpochLog] = []
    best_state, best_auc, best_epoch = copy.deepcopy(model.state_dict()), None, 0
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        (loss,) = train_epochs(model, train, cfg, epochs=1, seed=cfg.seed * 1000 + epoch, optimizer=opt)
        sched.step()
        try:
            val_auc: float | None = auroc(val.y, predict(model, val))
        except MetricError as err:
            log.warning("validation AUROC undefined (%s); keeping the last epoch", err)
            val_auc = None
        entry = EpochLog(epoch, loss, val_auc)
        history.append(entry)
        if on_epoch:
            on_epoch(entry)
        if val_auc is None or best_auc is None or val_auc > best_auc:
            best_state, best_auc, best_epoch = copy.deepcopy(model.state_dict()), val_auc, epoch
    model.load_state_dict(best_state)
    return FitResult(tuple(history), best_epoch, best_auc, time.perf_counter() - t0, cfg.epochs * len(train))
