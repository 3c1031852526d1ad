"""The datasets a run can use, all ending as site stores: synthetic, or real PTB-XL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from common.cohort import ensure_synthetic_cohort
from common.config import CohortConfig
from common.data import EcgArrays, concat, load_split
from common.ingest import IngestConfig, ingest
from common.preprocess import PreprocessConfig
from common.readers.ptbxl import PtbxlCombinedSource, PtbxlFilteredSource, PtbxlSource
from common.store import SiteStore


class PtbxlDataset(BaseModel):
    """Real PTB-XL: raw records (and optionally the shared filtered array), hospitals by recording
    site with small sites merged, PTB-XL folds, per-record standardisation (the filtered array is
    z-scored, so raw records must be too)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: Path
    filtered: Path | None = None
    label: str = "mi"
    likelihood: float = 50.0
    min_site_records: int = 100

    def open(self, data_dir: Path, *, workers: int | None = None, echo: Any = print) -> list[SiteStore]:
        opts: dict[str, Any] = {"label": self.label, "likelihood": self.likelihood}
        raw = PtbxlSource(root=self.root, **opts)
        source: Any = raw
        if self.filtered is not None:
            source = PtbxlCombinedSource(
                raw=raw, filtered=PtbxlFilteredSource(root=self.filtered, ptbxl_root=self.root, **opts)
            )
        cfg = IngestConfig(preprocess=PreprocessConfig(normalise="per_record"), min_site_records=self.min_site_records)
        return ingest(source, cfg, data_dir, workers=workers, progress=True, echo=echo).stores


def open_stores(data: CohortConfig | PtbxlDataset, data_dir: Path, *, echo: Any = print) -> list[SiteStore]:
    if isinstance(data, CohortConfig):
        return ensure_synthetic_cohort(data, data_dir)
    return data.open(data_dir, echo=echo)


def pooled_split(stores: list[SiteStore], split: str, target_fs: int) -> EcgArrays:
    """One split of every hospital, pooled (the centralised arm)."""
    return concat([load_split(s, split, target_fs) for s in stores])
