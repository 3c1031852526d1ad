"""Model-ready arrays from site stores: one split, resampled and filtered, with demographics."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from common.data.npyfile import NpyRows, NpyWriter, RowStack, Signals
from common.data.preprocess import bandpass, demographics, resample, standardise
from common.data.splits import SPLITS
from common.data.store import SiteStore

log = logging.getLogger(__name__)

_LOAD_CHUNK = 512
CACHE_DIR: Final[str] = "cache"
"""Folder inside a site store for preprocessed splits (derived data: deleting it is always safe)."""
_CACHE_VERSION: Final[int] = 1
"""Bump when preprocessing in :func:`load_split` changes, so old cache files are not read."""


@dataclass(frozen=True)
class EcgArrays:
    """Signals ``x`` (n, 12, T) float32 mV, demographics (n, 5), labels (n,) and metadata rows.

    ``x`` is read from disk by rows when it comes from a store's cache (:mod:`common.data.npyfile`):
    index it (``x[idx]``, ``x[a:b]``) for arrays; ``np.asarray(x)`` reads all of it.
    """

    x: Signals
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
    with the site's training statistics when their preprocessing says ``site_train``. The result
    is cached in the store (see :func:`_cached_signals`), so later loads map it from disk.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    meta = store.metadata
    idx = np.arange(len(meta)) if split is None else np.flatnonzero(meta["split"].to_numpy() == split)
    x = _cached_signals(store, split or "all", idx, target_fs)
    rows = meta.iloc[idx].reset_index(drop=True)
    return EcgArrays(x, demographics(rows), rows["label"].to_numpy(np.float32), rows)


def model_input(
    x: np.ndarray,
    fs: int,
    target_fs: int,
    *,
    raw: bool,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Stored signals ``(..., 12, T)`` at ``fs`` -> the model's input at ``target_fs``.

    A preprocessed store's records are standardised with the hospital's training ``stats`` (when its
    preprocessing says ``site_train``) and resampled; raw device signals (``raw``) are resampled
    and band-passed. ``fedami predict`` takes the same step after ingest's preprocessing.
    """
    if stats is not None:
        x = standardise(x, *stats)
    x = resample(x, fs, target_fs)
    return bandpass(x, target_fs) if raw else x


def _preprocessed_chunks(store: SiteStore, idx: np.ndarray, target_fs: int) -> Iterator[np.ndarray]:
    """The model-ready signals of records ``idx``, chunk by chunk (a split is never held whole)."""
    sig = store.signals()
    pre = store.manifest.preprocessing
    stats = site_train_stats(store) if pre is not None and pre.get("normalise") == "site_train" else None
    for start in range(0, len(idx), _LOAD_CHUNK):
        chunk = sig[idx[start : start + _LOAD_CHUNK]]
        yield model_input(chunk, store.manifest.fs, target_fs, raw=pre is None, stats=stats).astype(np.float32)


def _preprocessed(store: SiteStore, idx: np.ndarray, target_fs: int) -> np.ndarray:
    parts = list(_preprocessed_chunks(store, idx, target_fs))
    return np.concatenate(parts) if parts else np.zeros((0, 12, _length(store, target_fs)), np.float32)


def _length(store: SiteStore, target_fs: int) -> int:
    return round(store.manifest.n_samples * target_fs / store.manifest.fs)


def split_cache_path(store: SiteStore, name: str, idx: np.ndarray, target_fs: int) -> Path:
    """Where the preprocessed signals of records ``idx`` at ``target_fs`` are cached in ``store``.

    The name carries a digest of the store's manifest, the record indices and the cache version, so
    a changed store or split never reads a stale file.
    """
    h = hashlib.sha256(store.manifest.model_dump_json().encode())
    h.update(np.ascontiguousarray(idx, dtype=np.int64).tobytes())
    h.update(f"{_CACHE_VERSION}:{target_fs}".encode())
    return store.path / CACHE_DIR / f"{name}-{target_fs}hz-{h.hexdigest()[:16]}.npy"


def _cached_signals(store: SiteStore, name: str, idx: np.ndarray, target_fs: int) -> Signals:
    """Preprocessed signals, computed once per store, split and rate, then read from the file by rows.

    The file is written chunk by chunk and read on demand (:mod:`common.data.npyfile`), so neither
    building it nor training from it holds a split in memory, and the processes of a simulation
    share one hospital's file through the page cache; a client that serves a hospital again is
    spared the resampling and filtering. If the store is not writable the signals are returned
    uncached, in memory, with a warning.
    """
    if len(idx) == 0:
        return _preprocessed(store, idx, target_fs)
    path = split_cache_path(store, name, idx, target_fs)
    if path.is_file():
        return NpyRows(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(exist_ok=True)
        with NpyWriter(tmp, (len(idx), 12, _length(store, target_fs)), np.float32) as out:
            start = 0
            for chunk in _preprocessed_chunks(store, idx, target_fs):
                out.write(start, chunk)
                start += len(chunk)
        tmp.replace(path)  # atomic: a process that loses the race replaces an identical file
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        log.warning("cannot cache preprocessed signals in %s (%s); using them uncached", path.parent, err)
        return _preprocessed(store, idx, target_fs)
    return NpyRows(path)


def concat(parts: Sequence[EcgArrays]) -> EcgArrays:
    """Pool arrays from several sites (they must share the sampling rate and length); the signals are
    stacked by reference, not copied (:class:`common.data.npyfile.RowStack`)."""
    lengths = {p.x.shape[-1] for p in parts}
    if len(lengths) != 1:
        raise ValueError(f"cannot pool arrays of different lengths {sorted(lengths)}; resample first")
    return EcgArrays(
        parts[0].x if len(parts) == 1 else RowStack([p.x for p in parts]),
        np.concatenate([p.demo for p in parts]),
        np.concatenate([p.y for p in parts]),
        pd.concat([p.meta for p in parts], ignore_index=True),
    )
