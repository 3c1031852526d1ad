"""The on-disk cohort store: one folder per site, the same for synthetic and real ECGs.

A site store holds

* ``signals.npy``: float32 ``(n_records, 12, n_samples)`` in mV, canonical lead order, read back
  memory-mapped so training never loads a whole site unless it asks to;
* ``metadata.csv``: one row per record with at least :data:`REQUIRED_COLUMNS`;
* ``manifest.json``: sampling rate, shape, units, where the data came from and the key of the
  configuration that produced it.

A store is written into a temporary folder and renamed into place when complete, so a folder that
exists is always whole, and two processes building the same store never see each other's halves.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from common.data.leads import LEADS, N_LEADS, UNITS
from common.data.npyfile import NpyRows, NpyWriter
from common.evaluation.metrics import jsonable

STORE_VERSION: Final[int] = 1
SIGNALS_FILE: Final[str] = "signals.npy"
METADATA_FILE: Final[str] = "metadata.csv"
MANIFEST_FILE: Final[str] = "manifest.json"
REQUIRED_COLUMNS: Final[tuple[str, ...]] = (
    "record_id", "patient_id", "site", "age", "sex", "label", "fs", "split",
)  # fmt: skip
_STRING_COLUMNS: Final[tuple[str, ...]] = ("record_id", "patient_id", "site", "sex", "split")


class StoreError(RuntimeError):
    """A store is missing, incomplete or inconsistent."""


class StoreManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = STORE_VERSION
    site: str
    fs: int
    n_records: int
    n_samples: int
    leads: tuple[str, ...] = LEADS
    units: str = UNITS
    dtype: str = "float32"
    key: str
    source: dict[str, Any]
    preprocessing: dict[str, Any] | None = None
    """How ingest preprocessed the signals (None: raw device signals, as the synthetic cohort)."""


@dataclass(frozen=True)
class SiteStore:
    """An opened site store. ``signals()`` reads its rows from the file when indexed (:class:`NpyRows`)."""

    path: Path
    manifest: StoreManifest
    metadata: pd.DataFrame

    @property
    def site(self) -> str:
        return self.manifest.site

    def signals(self) -> NpyRows:
        return NpyRows(self.path / SIGNALS_FILE)

    @classmethod
    def open(cls, path: Path) -> SiteStore:
        """Open and validate a store folder; raise :class:`StoreError` naming what is wrong."""
        path = Path(path)
        for name in (SIGNALS_FILE, METADATA_FILE, MANIFEST_FILE):
            if not (path / name).is_file():
                raise StoreError(f"store {path} is incomplete: {name} is missing")
        manifest = StoreManifest.model_validate_json((path / MANIFEST_FILE).read_text())
        if manifest.version != STORE_VERSION:
            raise StoreError(f"store {path} has version {manifest.version}, expected {STORE_VERSION}")
        meta = read_metadata(path / METADATA_FILE)
        try:
            sig = NpyRows(path / SIGNALS_FILE)
        except ValueError as err:
            raise StoreError(f"store {path} is unreadable: {err}") from None
        expected = (manifest.n_records, N_LEADS, manifest.n_samples)
        if sig.shape != expected or len(meta) != manifest.n_records:
            raise StoreError(
                f"store {path} is inconsistent: signals {sig.shape}, metadata rows {len(meta)}, "
                f"manifest expects {expected}"
            )
        return cls(path, manifest, meta)


def read_metadata(path: Path) -> pd.DataFrame:
    """Read a metadata table with ids and categories as strings and empty cells as missing."""
    meta = pd.read_csv(path, dtype={c: str for c in _STRING_COLUMNS}, keep_default_na=False, na_values=[""])
    missing = [c for c in REQUIRED_COLUMNS if c not in meta.columns]
    if missing:
        raise StoreError(f"metadata {path} lacks columns {missing}")
    for col in meta.columns:
        if col != "age" and pd.api.types.is_string_dtype(meta[col]):
            meta[col] = meta[col].fillna("").astype(str)
    return meta


def write_site_store(
    path: Path,
    *,
    metadata: pd.DataFrame,
    fs: int,
    n_samples: int,
    chunks: Iterable[tuple[int, np.ndarray]],
    key: str,
    source: dict[str, Any],
    preprocessing: dict[str, Any] | None = None,
) -> SiteStore:
    """Write a site store atomically from signal chunks and return it opened.

    ``chunks`` yields ``(first_record_index, float32 (b, 12, n_samples))`` and must cover every
    record exactly once. If another process completed the same store meanwhile, theirs is kept.
    """
    path = Path(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in metadata.columns]
    if missing:
        raise StoreError(f"cannot write store {path}: metadata lacks columns {missing}")
    sites = metadata["site"].unique()
    if len(sites) != 1:
        raise StoreError(f"a site store holds one site, got {list(sites)}")
    n = len(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        written = np.zeros(n, dtype=bool)
        with NpyWriter(tmp / SIGNALS_FILE, (n, N_LEADS, n_samples), np.float32) as arr:
            for start, x in chunks:
                if x.ndim != 3 or x.shape[1:] != (N_LEADS, n_samples) or start + len(x) > n:
                    raise StoreError(f"chunk at {start} has shape {x.shape}, expected (b, {N_LEADS}, {n_samples})")
                arr.write(start, x)
                written[start : start + len(x)] = True
        if not written.all():
            raise StoreError(f"{int((~written).sum())} of {n} records were never written to {path}")
        metadata.to_csv(tmp / METADATA_FILE, index=False)
        manifest = StoreManifest(
            site=str(sites[0]),
            fs=fs,
            n_records=n,
            n_samples=n_samples,
            key=key,
            source=source,
            preprocessing=preprocessing,
        )
        (tmp / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
        try:
            tmp.rename(path)
        except OSError:
            if not (path / MANIFEST_FILE).is_file():
                raise
            shutil.rmtree(tmp)  # another process finished the same store first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SiteStore.open(path)


def summarise(stores: Iterable[SiteStore]) -> pd.DataFrame:
    """Per-site table: ECGs, patients, positives, prevalence, rate, age and sex mix."""
    rows = []
    for s in stores:
        m = s.metadata
        rows.append(
            {
                "site": s.site,
                "fs_hz": s.manifest.fs,
                "ecgs": len(m),
                "patients": m["patient_id"].nunique(),
                "positives": int(m["label"].sum()),
                "prevalence": round(float(m["label"].mean()), 4),
                "age_mean": round(float(m["age"].mean()), 1),
                "male_frac": round(float((m["sex"] == "M").mean()), 3),
            }
        )
    return pd.DataFrame(rows)


def write_json(path: Path, payload: Any) -> None:
    """``payload`` as strict JSON (:func:`~common.evaluation.metrics.jsonable`: NaN and infinities, which JSON has
    no words for, as null; numpy scalars and arrays as plain numbers and lists)."""
    path.write_text(json.dumps(jsonable(payload), indent=2, sort_keys=False, default=str, allow_nan=False) + "\n")
