"""Generating the synthetic cohort into the store (a prepare step; see :mod:`common.synthetic.key`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from tqdm.auto import tqdm

from common.config import CohortConfig
from common.data.store import SiteStore, StoreError, write_site_store
from common.synthetic.key import GENERATOR_VERSION, cohort_key, synthetic_cohort_dir

log = logging.getLogger(__name__)


def ensure_synthetic_site(cfg: CohortConfig, site_index: int, data_dir: Path, *, progress: bool = True) -> SiteStore:
    """Open site ``site_index`` of the cohort, generating it first if it is not on disk yet."""
    specs = cfg.site_specs()
    if not 0 <= site_index < len(specs):
        raise ValueError(f"site index {site_index} out of range for a {len(specs)}-site cohort")
    site = specs[site_index]
    path = synthetic_cohort_dir(cfg, data_dir) / site.name
    key = cohort_key(cfg)
    if path.exists():
        try:
            store = SiteStore.open(path)
        except StoreError as err:
            raise StoreError(f"{err}; delete {path} to regenerate it") from err
        if store.manifest.key == key:
            return store
        raise StoreError(f"store {path} was built from another configuration; delete it to regenerate")
    from common.synthetic.generator import CHUNK, iter_site_chunks, plan_site

    plan = plan_site(cfg, site_index)
    n = len(plan.metadata)
    bar = tqdm(total=n, desc=f"generating {site.name} ({site.fs} Hz)", unit="ECG", disable=not progress)

    def counted() -> Iterator[tuple[int, object]]:
        for start, x in iter_site_chunks(plan, cfg.seed):
            yield start, x
            bar.update(min(CHUNK, n - start))

    try:
        store = write_site_store(
            path,
            metadata=plan.metadata,
            fs=site.fs,
            n_samples=plan.n_samples,
            chunks=counted(),  # type: ignore[arg-type]
            key=key,
            source={
                "kind": "synthetic",
                "generator_version": GENERATOR_VERSION,
                "cohort": cfg.model_dump(mode="json"),
                "site_index": site_index,
            },
        )
    finally:
        bar.close()
    log.info("wrote %s: %d ECGs", path, n)
    return store


def ensure_synthetic_cohort(cfg: CohortConfig, data_dir: Path, *, progress: bool = True) -> list[SiteStore]:
    """Every site of the cohort, generated where missing."""
    return [ensure_synthetic_site(cfg, i, data_dir, progress=progress) for i in range(cfg.n_sites)]
