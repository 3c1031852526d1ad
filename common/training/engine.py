"""Training and evaluation as plain functions (no Flower inside).

The pooled and local-only baselines call :func:`fit`; a federated client calls
:func:`train_epochs` for its local epochs (with the optional FedProx term) and :func:`predict` to
evaluate. With ``crop_s`` set, training sees random crops and prediction aggregates sliding windows
over the whole record, as the PTB-XL benchmark does.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from common.config import TrainConfig
from common.data.arrays import EcgArrays
from common.evaluation.metrics import MetricError, auroc
from common.models import create_model
from common.models.blocks import AUX_HEAD, EcgClassifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    train_loss: float
    val_auroc: float | None
    train_s: float = 0.0
    """Seconds of the epoch's training pass."""
    val_s: float = 0.0
    """Seconds of its validation scoring."""


@dataclass(frozen=True)
class FitResult:
    history: tuple[EpochLog, ...]
    best_epoch: int
    best_val_auroc: float | None
    seconds: float
    samples_seen: int
    stopped_early: bool = False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _pos_weight(y: np.ndarray) -> torch.Tensor:
    n_pos = float(y.sum())
    if n_pos == 0:
        raise MetricError("training data has no AMI positives; cannot weight the classes")
    return torch.tensor((len(y) - n_pos) / n_pos, dtype=torch.float32)


class FocalLoss(nn.Module):
    """Binary focal loss (Lin et al. 2017) with an optional positive-class weight."""

    def __init__(self, gamma: float, pos_weight: torch.Tensor | None) -> None:
        super().__init__()
        self.gamma = gamma
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        bce = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        p_t = torch.exp(-bce)
        loss = (1 - p_t) ** self.gamma * bce
        if self.pos_weight is not None:
            loss = loss * torch.where(y > 0.5, self.pos_weight, torch.ones_like(y))
        return loss.mean()


class AuxiliaryTargetError(ValueError):
    """The auxiliary targets a run asks for are not in the data, or not 0/1."""


def build_model(cfg: TrainConfig, **model_kwargs: object) -> nn.Module:
    """The network ``cfg.model`` names, with the auxiliary head when ``cfg.auxiliary_targets`` are set.

    Every arm, the server's initial weights and a hospital's ClientApp build the model here, so their
    weights always have the same keys.
    """
    model = create_model(cfg.model, **model_kwargs)
    if cfg.auxiliary_targets:
        _with_features(model, cfg).add_auxiliary_head(len(cfg.auxiliary_targets))
    return model


def _with_features(model: nn.Module, cfg: TrainConfig) -> EcgClassifier:
    """``model`` as the zoo's base class, which auxiliary targets need (they are trained on its ECG features)."""
    if not isinstance(model, EcgClassifier):
        raise AuxiliaryTargetError(f"model {cfg.model!r} has no ECG feature vector to train auxiliary targets on")
    return model


def scoring_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A trained state without the auxiliary head: what the network needs to score."""
    return {k: v for k, v in state.items() if not k.startswith(f"{AUX_HEAD}.")}


def auxiliary_matrix(meta: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """``(n, len(columns))`` float32 auxiliary targets from the metadata: 0, 1, or NaN where unknown.

    Raises :class:`AuxiliaryTargetError` naming the column and the hospitals when a column is missing or
    holds anything but 0, 1 and empty cells.
    """
    sites = ", ".join(sorted(map(str, meta["site"].unique()))) if "site" in meta.columns else "the data"
    missing = [c for c in columns if c not in meta.columns]
    if missing:
        raise AuxiliaryTargetError(
            f"auxiliary targets {missing} are not columns of the metadata of {sites}; "
            "PTB-XL stores have one superclass_<class> column per diagnostic superclass (NORM, MI, STTC, CD, HYP) "
            "and one subclass_<subclass> column per diagnostic subclass (subclass_LVH, subclass_LAFB_LPFB, ...)"
        )
    out = np.empty((len(meta), len(columns)), np.float32)
    for j, col in enumerate(columns):
        raw = meta[col]
        values = pd.to_numeric(raw, errors="coerce")
        unknown = raw.isna() | (raw.astype(str).str.strip() == "")
        bad = ~unknown & ~values.isin([0, 1])
        if bad.any():
            example = raw[bad].iloc[0]
            raise AuxiliaryTargetError(
                f"auxiliary target {col!r} of {sites} must be 0, 1 or empty; {int(bad.sum())} records hold "
                f"other values, e.g. {str(example)!r}"
            )
        out[:, j] = values.where(~unknown).to_numpy(np.float32)
    return out


def auxiliary_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the known (not NaN) auxiliary targets of a batch; 0 when none is known."""
    known = ~torch.isnan(targets)
    if not bool(known.any()):
        return logits.sum() * 0.0
    return nn.functional.binary_cross_entropy_with_logits(logits[known], targets[known])


def make_loss(cfg: TrainConfig, y: np.ndarray) -> nn.Module:
    weight = _pos_weight(y) if cfg.pos_weight == "auto" else None
    if cfg.loss == "focal":
        return FocalLoss(cfg.focal_gamma, weight)
    return nn.BCEWithLogitsLoss(pos_weight=weight)


def _crop_len(cfg: TrainConfig, n_t: int) -> int | None:
    if cfg.crop_s is None:
        return None
    n = round(cfg.crop_s * cfg.target_fs)
    return n if n < n_t else None


def random_crops(x: torch.Tensor, length: int, gen: torch.Generator) -> torch.Tensor:
    """One random window of ``length`` samples per record of ``x`` (B, C, T)."""
    starts = torch.randint(0, x.shape[-1] - length + 1, (x.shape[0],), generator=gen)
    idx = starts[:, None] + torch.arange(length)[None, :]
    return torch.gather(x, 2, idx[:, None, :].expand(-1, x.shape[1], -1))


def augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """A training batch (B, C, T) as another recording of the same hearts might show it.

    Per record and lead: a gain drawn log-normally (``augment_gain``), a slow baseline sway of 0.1-0.5 Hz
    like breathing (``augment_wander``) and white noise (``augment_noise``), the last two sized by the lead's
    own SD so they mean the same on records in mV and on standardised ones. With every setting 0 the batch
    is returned as it is and ``gen`` is not drawn from, so runs without augmentation repeat exactly.
    """
    if not (cfg.augment_gain or cfg.augment_noise or cfg.augment_wander):
        return x
    b, c, t = x.shape
    sd = x.std(dim=-1, keepdim=True)
    if cfg.augment_gain:
        x = x * torch.exp(cfg.augment_gain * torch.randn(b, c, 1, generator=gen))
    if cfg.augment_wander:
        hz = 0.1 + 0.4 * torch.rand(b, 1, 1, generator=gen)
        phase = 2 * math.pi * torch.rand(b, c, 1, generator=gen)
        seconds = torch.arange(t, dtype=x.dtype) / cfg.target_fs
        x = x + cfg.augment_wander * sd * torch.sin(2 * math.pi * hz * seconds + phase)
    if cfg.augment_noise:
        x = x + cfg.augment_noise * sd * torch.randn(b, c, t, generator=gen)
    return x


def window_starts(n_t: int, length: int) -> list[int]:
    """Starts of half-overlapping windows covering the whole record (the last one flush with the end)."""
    starts = list(range(0, n_t - length + 1, max(1, length // 2)))
    if starts[-1] != n_t - length:
        starts.append(n_t - length)
    return starts


def proximal_term(params: list[torch.Tensor], anchor: list[torch.Tensor], mu: float) -> torch.Tensor:
    """FedProx: ``mu / 2 * ||w - w_global||^2`` over all trainable parameters."""
    sq = sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))
    return mu / 2 * torch.as_tensor(sq)


def cosine_factor(epoch: int, total: int) -> float:
    """Learning-rate multiplier of 0-based ``epoch`` out of ``total``: cosine annealing to zero.

    The closed form of torch's ``CosineAnnealingLR``; pooled training and federated rounds share it,
    so both arms decay the learning rate the same way over the same passes over the data.
    """
    return 0.5 * (1.0 + math.cos(math.pi * epoch / total))


def train_epochs(
    model: nn.Module,
    data: EcgArrays,
    cfg: TrainConfig,
    *,
    epochs: int,
    seed: int,
    optimizer: torch.optim.Optimizer | None = None,
    prox_mu: float = 0.0,
    schedule: tuple[int, int] | None = None,
) -> list[float]:
    """Run ``epochs`` passes over ``data``; returns the mean loss of each epoch (with the auxiliary loss, if any).

    With ``prox_mu > 0`` the FedProx term ``mu/2 * ||w - w_start||^2`` is added, ``w_start`` being
    the weights the call started from (the global model in a federated round). With
    ``schedule=(first, total)`` the passes are epochs ``first, first + 1, ...`` of a ``total``-epoch
    cosine schedule (a federated round's place in the whole run).
    """
    if len(data) == 0:
        raise ValueError("no training records")
    aux_model = _with_features(model, cfg) if cfg.auxiliary_targets else None
    aux = torch.from_numpy(auxiliary_matrix(data.meta, cfg.auxiliary_targets)) if aux_model is not None else None
    torch.set_num_threads(cfg.num_threads)
    opt = optimizer or torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = make_loss(cfg, data.y)
    anchor = [p.detach().clone() for p in model.parameters()] if prox_mu > 0 else []
    demo, y = torch.from_numpy(data.demo), torch.from_numpy(data.y)
    crop = _crop_len(cfg, data.x.shape[-1])
    gen = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for e in range(epochs):
        if schedule is not None:
            for group in opt.param_groups:
                group["lr"] = cfg.lr * cosine_factor(schedule[0] + e, schedule[1])
        order = torch.randperm(len(y), generator=gen)
        total, n = 0.0, 0
        batches = range(0, len(order), cfg.batch_size)
        for start in tqdm(batches, desc="train", unit="batch", leave=False, disable=not cfg.progress):
            idx = order[start : start + cfg.batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on a single record
                continue
            rows = torch.from_numpy(data.x[idx.numpy()])  # read from disk by rows: a split is never held whole
            xb = augment(rows if crop is None else random_crops(rows, crop, gen), cfg, gen)
            if aux_model is None or aux is None:
                loss = loss_fn(model(xb, demo[idx]), y[idx])
            else:
                logits, aux_logits = aux_model.forward_with_auxiliary(xb, demo[idx])
                loss = loss_fn(logits, y[idx]) + cfg.auxiliary_weight * auxiliary_loss(aux_logits, aux[idx])
            if prox_mu > 0:
                loss = loss + proximal_term(list(model.parameters()), anchor, prox_mu)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        losses.append(total / max(n, 1))
    return losses


def score_records(
    model: nn.Module, x: torch.Tensor, demo: torch.Tensor, cfg: TrainConfig | None = None
) -> torch.Tensor:
    """AMI probabilities (B,) of whole records ``x`` (B, 12, T): the mean or max over half-overlapping
    windows when ``cfg.crop_s`` is set, unless scored ``whole``. The one scoring rule of evaluation,
    prediction and the explanations (which differentiate through it)."""
    crop = _crop_len(cfg, x.shape[-1]) if cfg is not None and cfg.window_aggregate != "whole" else None
    if crop is None:
        return torch.sigmoid(model(x, demo))
    probs = torch.stack([torch.sigmoid(model(x[..., s : s + crop], demo)) for s in window_starts(x.shape[-1], crop)])
    return probs.mean(0) if cfg is None or cfg.window_aggregate == "mean" else probs.amax(0)


def predict(model: nn.Module, data: EcgArrays, cfg: TrainConfig | None = None, batch_size: int = 256) -> np.ndarray:
    """AMI probabilities for every record (:func:`score_records`), in batches, without gradients."""
    model.eval()
    if len(data) == 0:
        return np.zeros(0)
    out = []
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            xb, db = torch.from_numpy(data.x[i : i + batch_size]), torch.from_numpy(data.demo[i : i + batch_size])
            out.append(score_records(model, xb, db, cfg))
    return torch.cat(out).numpy().astype(np.float64)


def fit(
    model: nn.Module,
    train: EcgArrays,
    val: EcgArrays,
    cfg: TrainConfig,
    *,
    epochs: int,
    patience: int | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
    checkpoint: Path | None = None,
) -> FitResult:
    """Train ``epochs`` epochs with a cosine learning-rate schedule, keep the epoch with the best validation AUROC.

    Stops early after ``patience`` epochs without improvement. With ``checkpoint`` the best
    weights are written there (``.pt``, a torch state dict) with a JSON sidecar of epoch and AUROC.
    """
    seed_everything(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: cosine_factor(e, epochs))
    history: list[EpochLog] = []
    best_state, best_auc, best_epoch = copy.deepcopy(model.state_dict()), None, 0
    t0 = time.perf_counter()
    stopped = False
    for epoch in range(1, epochs + 1):
        t_epoch = time.perf_counter()
        (loss,) = train_epochs(model, train, cfg, epochs=1, seed=cfg.seed * 1000 + epoch, optimizer=opt)
        sched.step()
        t_val = time.perf_counter()
        try:
            val_auc: float | None = auroc(val.y, predict(model, val, cfg))
        except MetricError as err:
            log.warning("validation AUROC undefined (%s); keeping the last epoch", err)
            val_auc = None
        entry = EpochLog(epoch, loss, val_auc, t_val - t_epoch, time.perf_counter() - t_val)
        history.append(entry)
        if on_epoch:
            on_epoch(entry)
        if val_auc is None or best_auc is None or val_auc > best_auc:
            best_state, best_auc, best_epoch = copy.deepcopy(model.state_dict()), val_auc, epoch
            if checkpoint is not None:
                save_checkpoint(checkpoint, best_state, {"epoch": epoch, "val_auroc": val_auc})
        elif patience is not None and epoch - best_epoch >= patience:
            stopped = True
            break
    model.load_state_dict(best_state)
    seen = len(history) * len(train)
    return FitResult(tuple(history), best_epoch, best_auc, time.perf_counter() - t0, seen, stopped)


def save_checkpoint(path: Path, state: dict[str, torch.Tensor], info: dict[str, object]) -> None:
    """Weights as a torch state dict plus a readable JSON sidecar, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=True)
    return state
