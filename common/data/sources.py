"""The datasets a run can use, all ending as site stores: synthetic, or real PTB-XL."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from common.config import CohortConfig
from common.data.arrays import EcgArrays, concat, load_split
from common.data.ingest import IngestConfig, ingest
from common.data.preprocess import PreprocessConfig
from common.data.readers.manifest import ManifestSource
from common.data.readers.ptbxl import Label, ptbxl_source
from common.data.store import SiteStore
from common.synthetic.cohort import ensure_synthetic_cohort


class PtbxlDataset(BaseModel):
    """Real PTB-XL: raw records (and optionally the shared filtered array), hospitals by recording
    site with small sites merged, PTB-XL folds, per-record standardisation (the filtered array is
    z-scored, so raw records must be too)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: Path
    filtered: Path | None = None
    label: Label = "mi"
    likelihood: float = 50.0
    min_site_records: int = 100

    def open(self, data_dir: Path, *, workers: int | None = None, echo: Any = print) -> list[SiteStore]:
        source = ptbxl_source(self.root, self.filtered, label=self.label, likelihood=self.likelihood)
        cfg = IngestConfig(preprocess=PreprocessConfig(normalise="per_record"), min_site_records=self.min_site_records)
        return ingest(source, cfg, data_dir, workers=workers, progress=True, echo=echo).stores


class ManifestDataset(BaseModel):
    """A hospital network's own WFDB exports listed in one CSV manifest (one row per ECG, a ``site``
    column naming the hospital); ingested with the default preprocessing, splits per hospital."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path
    min_site_records: int = 0

    def open(self, data_dir: Path, *, workers: int | None = None, echo: Any = print) -> list[SiteStore]:
        cfg = IngestConfig(min_site_records=self.min_site_records)
        return ingest(ManifestSource(path=self.path), cfg, data_dir, workers=workers, progress=True, echo=echo).stores


RealData = PtbxlDataset | ManifestDataset


def real_data(spec: Mapping[str, str]) -> RealData:
    """The real dataset a flat spec names: ``{kind: ptbxl, root, filtered}`` or ``{kind: manifest, path}``."""
    if spec.get("kind") == "manifest":
        return ManifestDataset(path=Path(spec["path"]))
    filtered = spec.get("filtered", "")
    return PtbxlDataset(root=Path(spec["root"]), filtered=Path(filtered) if filtered else None)


def open_stores(data: CohortConfig | RealData, data_dir: Path, *, echo: Any = print) -> list[SiteStore]:
    if isinstance(data, CohortConfig):
        return ensure_synthetic_cohort(data, data_dir)
    return data.open(data_dir, echo=echo)


def pooled_split(stores: list[SiteStore], split: str, target_fs: int) -> EcgArrays:
    """One split of every hospital, pooled (the centralised arm)."""
    return concat([load_split(s, split, target_fs) for s in stores])
