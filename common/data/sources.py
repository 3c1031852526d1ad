"""Preparing a run's data: the data settings -> a folder of site stores, one per hospital.

This is the explicit prepare step (``fedami ingest``, and the first thing ``fedami run`` and
``fedami study`` do): the synthetic cohort is generated, real records are read, checked,
preprocessed and stored. A federated node never calls this; it only opens what was prepared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.config import ChallengeData, DataSource, ManifestData, PtbxlData, SyntheticData
from common.data.arrays import EcgArrays, concat, load_split
from common.data.readers.base import Source
from common.data.store import SiteStore


@dataclass(frozen=True)
class Prepared:
    """Prepared data: the folder holding one site store per hospital, and the stores."""

    path: Path
    stores: list[SiteStore]

    @property
    def hospitals(self) -> tuple[str, ...]:
        return tuple(s.site for s in self.stores)


def reader(data: PtbxlData | ManifestData | ChallengeData) -> Source:
    """The reader of a real data source, with every setting from ``data``."""
    if isinstance(data, PtbxlData):
        from common.data.readers.ptbxl import ptbxl_source

        return ptbxl_source(
            data.root, data.filtered, rate=data.rate, label=data.label, likelihood=data.likelihood,
            hospital_column=data.hospital,
        )  # fmt: skip
    if isinstance(data, ManifestData):
        from common.data.readers.manifest import ManifestSource

        return ManifestSource(path=data.path, sex_codes=data.sex_codes)
    from common.data.readers.challenge import ChallengeSource

    return ChallengeSource(root=data.root, label=data.label)


def prepare(
    data: DataSource,
    data_dir: Path,
    *,
    workers: int | None = None,
    progress: bool = True,
    echo: Callable[..., Any] = print,
) -> Prepared:
    """Generate or ingest ``data`` under ``data_dir`` (reused when already there) and open its stores."""
    if isinstance(data, SyntheticData):
        from common.synthetic.cohort import ensure_synthetic_cohort, synthetic_cohort_dir

        stores = ensure_synthetic_cohort(data.cohort, data_dir, progress=progress)
        return Prepared(synthetic_cohort_dir(data.cohort, data_dir), stores)
    from common.data.ingest import ingest

    result = ingest(reader(data), data.ingest, data_dir, workers=workers, progress=progress, echo=echo)
    return Prepared(result.path, result.stores)


def pooled_split(stores: Sequence[SiteStore], split: str, target_fs: int) -> EcgArrays:
    """One split of every hospital, pooled (the centralised arm)."""
    return concat([load_split(s, split, target_fs) for s in stores])


def warm_splits(stores: Sequence[SiteStore], target_fs: int) -> None:
    """Preprocess every split of every store at ``target_fs`` into the stores' caches."""
    for store in stores:
        for split in ("train", "val", "test"):
            load_split(store, split, target_fs)


def export_stores(stores: Sequence[SiteStore], out: Path) -> list[Path]:
    """Copy each hospital's store (and its preprocessed splits) to ``out/<hospital>``.

    A deployed node mounts its own folder only. A folder already there must hold the same store
    (the same manifest); anything else is an error, never overwritten.
    """
    import shutil

    from common.data.store import MANIFEST_FILE, StoreError

    done = []
    for store in stores:
        target = out / store.site
        if target.exists():
            same = (target / MANIFEST_FILE).is_file() and (target / MANIFEST_FILE).read_text() == (
                store.path / MANIFEST_FILE
            ).read_text()
            if not same:
                raise StoreError(f"{target} exists and holds another store: remove it or export elsewhere")
        else:  # copied beside it, then renamed: an interrupted export never leaves a half store in place
            partial = out / f".{store.site}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(store.path, partial)
            partial.rename(target)
        done.append(target)
    return done
