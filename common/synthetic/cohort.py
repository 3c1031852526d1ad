"""Build or reuse the synthetic cohort in the cohort store."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tqdm.auto import tqdm

from common.config import CohortConfig
from common.data.store import SiteStore, StoreError, write_site_store

log = logging.getLogger(__name__)

DATA_DIR_ENV = "FEDAMI_DATA_DIR"


def default_data_dir() -> Path:
    """Where cohort stores live: ``$FEDAMI_DATA_DIR`` or ``~/.cache/fedami``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fedami"


def synthetic_cohort_dir(cfg: CohortConfig, data_dir: Path) -> Path:
    return Path(data_dir) / f"synthetic-{cfg.key()}"


def ensure_synthetic_site(cfg: CohortConfig, site_index: int, data_dir: Path, *, progress: bool = True) -> SiteStore:
    """Open site ``site_index`` of the cohort, generating it first if it is not on disk yet.

    Only this site's data is generated, so a federated client never builds another hospital's ECGs.
    """
    specs = cfg.site_specs()
    if not 0 <= site_index < len(specs):
        raise ValueError(f"site index {site_index} out of range for a {len(specs)}-site cohort")
    site = specs[site_index]
    path = synthetic_cohort_dir(cfg, data_dir) / site.name
    if path.exists():
        try:
            store = SiteStore.open(path)
        except StoreError as err:
            raise StoreError(f"{err}; delete {path} to regenerate it") from err
        if store.manifest.key == cfg.key():
            return store
        raise StoreError(f"store {path} was built from another configuration; delete it to regenerate")
    # Imported here: the generator pulls in scipy.signal (about 0.7 s), which a federated client
    # opening a hospital that is already on disk does not need.
    from common.synthetic.generator import CHUNK, iter_site_chunks, plan_site

    plan = plan_site(cfg, site_index)
    n = len(plan.metadata)
    chunks = iter_site_chunks(plan, cfg.seed)
    bar = tqdm(total=n, desc=f"generating {site.name} ({site.fs} Hz)", unit="ECG", disable=not progress)

    def counted() -> object:
        for start, x in chunks:
            yield start, x
            bar.update(min(CHUNK, n - start))

    try:
        store = write_site_store(
            path,
            metadata=plan.metadata,
            fs=site.fs,
            n_samples=plan.n_samples,
            chunks=counted(),  # type: ignore[arg-type]
            key=cfg.key(),
            source={"kind": "synthetic", "cohort": cfg.model_dump(mode="json"), "site_index": site_index},
        )
    finally:
        bar.close()
    log.info("wrote %s: %d ECGs", path, n)
    return store


def ensure_synthetic_cohort(cfg: CohortConfig, data_dir: Path, *, progress: bool = True) -> list[SiteStore]:
    """Every site of the cohort, generated where missing."""
    return [ensure_synthetic_site(cfg, i, data_dir, progress=progress) for i in range(cfg.n_sites)]
