"""Ingest: source -> quality control -> preprocessing -> one cohort store per site.

Every index row ends either in a site store or in the quality report under a reason. Reading is
parallel over records (worker processes), and the result is cached in the store under a key made
from the source's description, the ingest settings and the files' names, sizes and times, so a
second run with the same inputs is instant.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from common.config import OTHER_SITE, IngestConfig
from common.data.leads import N_LEADS
from common.data.preprocess import preprocess_signal
from common.data.qc import QualityReport, check_row, check_signal
from common.data.readers.base import INDEX_COLUMNS, QCReason, RecordError, Source
from common.data.splits import assign_splits, merge_small_sites
from common.data.store import SiteStore, StoreError, write_json, write_site_store

log = logging.getLogger(__name__)

REPORT_FILE: Final[str] = "qc_report.json"
REPORT_TABLE: Final[str] = "qc_report.csv"
SETTINGS_FILE: Final[str] = "ingest.json"
_BATCH: Final[int] = 64
INGEST_VERSION: Final[int] = 1
"""Bumped whenever ingest output changes for the same inputs, so old caches are not reused."""


@dataclass(frozen=True)
class IngestResult:
    stores: list[SiteStore]
    report: QualityReport
    path: Path
    cached: bool


def _fingerprint(index: pd.DataFrame) -> str:
    """Names, sizes and modification times of every file the index points at.

    Each folder is listed once (a record ``path`` is a file, or a WFDB record name whose files are
    ``name.<extension>``), so this stays linear in the number of records.
    """
    wanted: dict[Path, set[str]] = {}
    for p in set(index["path"].astype(str).str.partition("#")[0]):
        wanted.setdefault(Path(p).parent, set()).add(Path(p).name)
    h = hashlib.sha256()
    for folder in sorted(wanted):
        names = wanted[folder]
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except FileNotFoundError:
            h.update(f"{folder}|missing\n".encode())
            continue
        for e in entries:
            if e.is_file() and (e.name in names or e.name.rsplit(".", 1)[0] in names):
                st = e.stat()
                h.update(f"{folder / e.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def ingest_key(source: Source, cfg: IngestConfig, index: pd.DataFrame) -> str:
    payload = json.dumps(
        {"version": INGEST_VERSION, "source": source.describe(), "ingest": cfg.model_dump(mode="json")},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256((payload + _fingerprint(index)).encode()).hexdigest()[:12]


# Worker side: the source and settings are sent once per process by the pool initialiser.
_worker: dict[str, Any] = {}


def _init_worker(source: Source, cfg: IngestConfig) -> None:
    _worker["source"], _worker["cfg"] = source, cfg


def _process(rows: Sequence[Mapping[str, Any]]) -> list[tuple[np.ndarray | None, bool, RecordError | None]]:
    source: Source = _worker["source"]
    cfg: IngestConfig = _worker["cfg"]
    out: list[tuple[np.ndarray | None, bool, RecordError | None]] = []
    for row in rows:
        try:
            raw = source.load(row)
            check_signal(raw, cfg.qc)
            x, padded = preprocess_signal(raw.signal, raw.fs, cfg.preprocess)
            if not np.isfinite(x).all():  # a filter can blow up on pathological input
                raise RecordError(QCReason.NAN, "non-finite values after preprocessing")
            out.append((x, padded, None))
        except RecordError as err:
            out.append((None, False, err))
        except Exception as err:  # an unexpected reader failure is still a counted skip, never a crash
            out.append((None, False, RecordError(QCReason.UNREADABLE, f"{type(err).__name__}: {err}")))
    return out


def _batches(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), _BATCH):
        yield rows[i : i + _BATCH]


def _run(
    source: Source, cfg: IngestConfig, rows: list[dict[str, Any]], workers: int, desc: str, progress: bool
) -> Iterator[tuple[np.ndarray | None, bool, RecordError | None]]:
    bar = tqdm(total=len(rows), desc=desc, unit="ECG", disable=not progress)
    try:
        if workers <= 1:
            _init_worker(source, cfg)
            results: Iterator[list[Any]] = map(_process, _batches(rows))
            for batch in results:
                bar.update(len(batch))
                yield from batch
        else:
            # forkserver: workers fork from a clean server that imported this module once, which is
            # cheap per worker and safe even when the caller has torch's thread pools running.
            ctx = get_context("forkserver")
            ctx.set_forkserver_preload([__name__])
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(source, cfg)) as pool:
                for batch in pool.map(_process, _batches(rows)):
                    bar.update(len(batch))
                    yield from batch
    finally:
        bar.close()


def _validate_index(index: pd.DataFrame, cfg: IngestConfig) -> None:
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise ValueError(f"source index lacks columns {missing}")
    if "units" in index.columns and (index["units"] != "mV").any() and cfg.preprocess.normalise != "per_record":
        units = sorted(set(index["units"]) - {"mV"})
        raise ValueError(
            f"the source has records in {units}, which can only be pooled with mV records under "
            "per-record standardisation: set preprocess.normalise='per_record'"
        )


def ingest(
    source: Source,
    cfg: IngestConfig,
    data_dir: Path,
    *,
    workers: int | None = None,
    progress: bool = True,
    echo: Any = print,
) -> IngestResult:
    """Ingest ``source`` into per-site stores under ``data_dir``; reuse them when nothing changed."""
    index = source.index().reset_index(drop=True)
    _validate_index(index, cfg)
    kind = str(source.describe().get("kind", "source"))
    out = Path(data_dir) / f"{kind}-{ingest_key(source, cfg, index)}"
    if (out / REPORT_FILE).is_file():
        echo(f"reusing ingested {kind} stores in {out}")
        return _open_result(out, cached=True)

    report = QualityReport()
    index = merge_small_sites(index, cfg.min_site_records, other=OTHER_SITE)
    index["split"] = assign_splits(index, cfg.split_fractions, cfg.seed)
    keep = np.ones(len(index), dtype=bool)
    seen: set[str] = set()
    for i, row in enumerate(index.to_dict("records")):
        report.read[row["site"]] += 1
        try:
            if isinstance(row.get("duplicate_of"), str) and row["duplicate_of"]:
                raise RecordError(QCReason.DUPLICATE, f"same ECG as {row['duplicate_of']}, which is kept")
            if row["record_id"] in seen:
                raise RecordError(QCReason.DUPLICATE, "record id seen before")
            seen.add(row["record_id"])
            check_row(row, cfg.qc)
        except RecordError as err:
            report.add_skip(row["site"], err, row["record_id"])
            keep[i] = False

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n_t = round(cfg.preprocess.length_s * cfg.preprocess.target_fs)
    workers = workers if workers is not None else max(1, min(os.cpu_count() or 1, 8))
    try:
        for site in sorted(index["site"].unique()):
            rows_df = index[(index["site"] == site) & keep]
            rows = rows_df.to_dict("records")
            good: list[int] = []
            signals: list[np.ndarray] = []
            padded: list[bool] = []
            for k, (x, pad, failure) in enumerate(_run(source, cfg, rows, workers, f"ingesting {site}", progress)):
                if failure is not None:
                    report.add_skip(site, failure, rows[k]["record_id"])
                    continue
                assert x is not None
                good.append(k)
                signals.append(x)
                padded.append(pad)
            if not good:
                raise StoreError(
                    f"site {site!r} has no usable records after quality control ({report.skipped.get(site)})"
                )
            meta = rows_df.iloc[good].reset_index(drop=True).drop(columns=["path"])
            meta["fs"] = cfg.preprocess.target_fs
            meta["padded"] = padded
            meta["label"] = meta["label"].astype(int)
            report.stored[site] = len(meta)
            report.padded[site] = int(sum(padded))
            stack = np.stack(signals).reshape(len(signals), N_LEADS, n_t)
            write_site_store(
                tmp / site,
                metadata=meta,
                fs=cfg.preprocess.target_fs,
                n_samples=n_t,
                chunks=[(0, stack)],
                key=out.name,
                source={"kind": kind, "source": source.describe(), "ingest": cfg.model_dump(mode="json")},
                preprocessing=cfg.preprocess.model_dump(mode="json"),
            )
        write_json(tmp / REPORT_FILE, report.to_dict())
        report.table().to_csv(tmp / REPORT_TABLE, index=False)
        write_json(tmp / SETTINGS_FILE, {"source": source.describe(), "ingest": cfg.model_dump(mode="json")})
        try:
            tmp.rename(out)
        except OSError:
            if not (out / REPORT_FILE).is_file():
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    echo(f"ingested {kind} into {out}")
    echo(report.table().to_string(index=False))
    return _open_result(out, cached=False)


def _open_result(out: Path, *, cached: bool) -> IngestResult:
    stores = [SiteStore.open(p) for p in sorted(out.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    report = QualityReport.from_dict(json.loads((out / REPORT_FILE).read_text()))
    return IngestResult(stores, report, out, cached)


def site_table(stores: Sequence[SiteStore]) -> pd.DataFrame:
    """ECGs, patients and positives per site and split, the acceptance table of an ingest."""
    rows = []
    for s in stores:
        m = s.metadata
        row: dict[str, Any] = {
            "site": s.site,
            "ecgs": len(m),
            "patients": m["patient_id"].nunique(),
            "positives": int(m["label"].sum()),
        }
        for split in ("train", "val", "test"):
            row[f"{split}_pos"] = int(m.loc[m["split"] == split, "label"].sum())
        rows.append(row)
    df = pd.DataFrame(rows)
    total = {"site": "all", **{c: int(df[c].sum()) for c in df.columns if c != "site"}}
    total["patients"] = int(sum(s.metadata["patient_id"].nunique() for s in stores))
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)


def check_positives(stores: Sequence[SiteStore], splits: Sequence[str]) -> None:
    """Raise naming the site and split where a split that needs AMI positives has none."""
    for s in stores:
        for split in splits:
            n = int(s.metadata.loc[s.metadata["split"] == split, "label"].sum())
            if n == 0:
                raise StoreError(f"site {s.site!r} has no AMI positives in its {split} split")
