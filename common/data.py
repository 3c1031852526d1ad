"""Model-ready arrays from site stores: one split, resampled and filtered, with demographics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from common.preprocess import bandpass, demographics, resample, standardise
from common.splits import SPLITS
from common.store import SiteStore

_LOAD_CHUNK = 512


@dataclass(frozen=True)
class EcgArrays:
    """Signals ``x`` (n, 12, T) float32 mV, demographics (n, 5), labels (n,) and metadata rows."""

    x: np.ndarray
    demo: np.ndarray
    y: np.ndarray
    meta: pd.DataFrame

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_positive(self) -> int:
        return int(self.y.sum())


def site_train_stats(store: SiteStore) -> tuple[np.ndarray, np.ndarray]:
    """Per-lead mean and SD over the site's training split only (never validation or test)."""
    train = np.flatnonzero(store.metadata["split"].to_numpy() == "train")
    if len(train) == 0:
        raise ValueError(f"site {store.site!r} has no training records to fit standardisation on")
    sig = store.signals()
    total = np.zeros(sig.shape[1])
    sq = np.zeros(sig.shape[1])
    for start in range(0, len(train), _LOAD_CHUNK):
        chunk = np.asarray(sig[train[start : start + _LOAD_CHUNK]], dtype=np.float64)
        total += chunk.sum(axis=(0, 2))
        sq += (chunk**2).sum(axis=(0, 2))
    n = len(train) * sig.shape[2]
    mean = total / n
    return mean, np.sqrt(np.maximum(sq / n - mean**2, 0.0))


def load_split(store: SiteStore, split: str | None, target_fs: int) -> EcgArrays:
    """Load one split (or all records with ``split=None``) of a site at ``target_fs``.

    Raw device signals (the synthetic cohort) are resampled and band-passed here; ingested stores
    were preprocessed at ingest and are only resampled if asked for another rate, and standardised
    with the site's training statistics when their preprocessing says ``site_train``.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    meta = store.metadata
    idx = np.arange(len(meta)) if split is None else np.flatnonzero(meta["split"].to_numpy() == split)
    sig = store.signals()
    pre = store.manifest.preprocessing
    stats = site_train_stats(store) if pre is not None and pre.get("normalise") == "site_train" else None
    parts = []
    for start in range(0, len(idx), _LOAD_CHUNK):
        chunk = np.asarray(sig[idx[start : start + _LOAD_CHUNK]])
        if stats is not None:
            chunk = standardise(chunk, *stats)
        chunk = resample(chunk, store.manifest.fs, target_fs)
        parts.append(bandpass(chunk, target_fs) if pre is None else chunk)
    n_t = round(store.manifest.n_samples * target_fs / store.manifest.fs)
    x = np.concatenate(parts) if parts else np.zeros((0, 12, n_t), np.float32)
    rows = meta.iloc[idx].reset_index(drop=True)
    return EcgArrays(x, demographics(rows), rows["label"].to_numpy(np.float32), rows)


def concat(parts: Sequence[EcgArrays]) -> EcgArrays:
    """Pool arrays from several sites (they must share the sampling rate and length)."""
    lengths = {p.x.shape[-1] for p in parts}
    if len(lengths) != 1:
        raise ValueError(f"cannot pool arrays of different lengths {sorted(lengths)}; resample first")
    return EcgArrays(
        np.concatenate([p.x for p in parts]),
        np.concatenate([p.demo for p in parts]),
        np.concatenate([p.y for p in parts]),
        pd.concat([p.meta for p in parts], ignore_index=True),
    )
