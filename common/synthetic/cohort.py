"""Generating the synthetic cohort into the store (a prepare step; see :mod:`common.synthetic.key`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from common.config import CohortConfig, SiteSpec
from common.data.leads import N_LEADS
from common.data.preprocess import resample
from common.data.splits import SPLITS
from common.data.store import SiteStore, StoreError, write_site_store
from common.synthetic.key import GENERATOR_VERSION, cohort_key, synthetic_cohort_dir

log = logging.getLogger(__name__)


def stored_fs(cfg: CohortConfig, site: SiteSpec) -> int:
    """The rate ``site`` is stored at: ``cfg.store_fs``, unless the hospital records below it."""
    return min(cfg.store_fs or site.fs, site.fs)


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
    fs = stored_fs(cfg, site)
    rate = f"{site.fs} Hz" if fs == site.fs else f"{site.fs} Hz, stored at {fs} Hz"
    bar = tqdm(total=n, desc=f"generating {site.name} ({rate})", unit="ECG", disable=not progress)
    meta = plan.metadata if cfg.store_fs is None else plan.metadata.assign(fs=fs, device_fs=site.fs)

    def counted() -> Iterator[tuple[int, object]]:
        for start, x in iter_site_chunks(plan, cfg.seed):
            yield start, resample(x, site.fs, fs)  # the same resampling a split's loading would do
            bar.update(min(CHUNK, n - start))

    try:
        store = write_site_store(
            path,
            metadata=meta,
            fs=fs,
            n_samples=round(plan.n_samples * fs / site.fs),
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


def cohort_plan(cfg: CohortConfig) -> pd.DataFrame:
    """What generating ``cfg`` would write, per hospital, without rendering a signal.

    Columns: hospital, device_fs and stored_fs (Hz), ECGs, patients, positives, prevalence, the ECGs of
    each split and store_bytes (the signals file). The patients, labels and splits are the generator's
    own plan, so they are exactly what :func:`ensure_synthetic_cohort` would store.
    """
    from common.synthetic.generator import plan_site

    rows = []
    for i, site in enumerate(cfg.site_specs()):
        plan = plan_site(cfg, i)
        meta, fs = plan.metadata, stored_fs(cfg, site)
        n_samples = round(plan.n_samples * fs / site.fs)
        splits = meta["split"].value_counts()
        rows.append(
            {
                "hospital": site.name, "device_fs": site.fs, "stored_fs": fs, "ecgs": len(meta),
                "patients": int(meta["patient_id"].nunique()), "positives": int(meta["label"].sum()),
                "prevalence": float(meta["label"].mean()),
                **{f"{s}_ecgs": int(splits.get(s, 0)) for s in SPLITS},
                "store_bytes": len(meta) * N_LEADS * n_samples * 4,
            }
        )  # fmt: skip
    return pd.DataFrame(rows)
