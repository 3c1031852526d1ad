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
import re
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

from common.config import OTHER_SITE, IngestConfig, PreprocessConfig, QCConfig
from common.data.leads import N_LEADS
from common.data.preprocess import bandpass, filter_signal, finish_signal
from common.data.qc import QualityReport, check_amplitude, check_row, check_signal
from common.data.readers.base import INDEX_COLUMNS, QCReason, RawEcg, RecordError, Source
from common.data.splits import assign_splits, merge_small_sites
from common.data.store import SiteStore, StoreError, write_json, write_site_store

log = logging.getLogger(__name__)

REPORT_FILE: Final[str] = "qc_report.json"
REPORT_TABLE: Final[str] = "qc_report.csv"
RECORDS_TABLE: Final[str] = "qc_records.csv"
SETTINGS_FILE: Final[str] = "ingest.json"
_BATCH: Final[int] = 64
INGEST_VERSION: Final[int] = 4
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
        except OSError:  # missing, not a folder, unreadable: the reader will say so record by record
            h.update(f"{folder}|unlisted\n".encode())
            continue
        for e in entries:
            if e.name in names or e.name.rsplit(".", 1)[0] in names:
                try:
                    st = e.stat()
                except OSError:  # a broken or looping link: the record is counted unreadable later
                    h.update(f"{folder / e.name}|unreadable\n".encode())
                    continue
                if e.is_file():
                    h.update(f"{folder / e.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def ingest_key(source: Source, cfg: IngestConfig, index: pd.DataFrame) -> str:
    payload = json.dumps(
        {
            "version": INGEST_VERSION,
            "source": source.describe(),
            "ingest": cfg.model_dump(mode="json"),
            "columns": sorted(index.columns),  # a reader that gains a column (an auxiliary target) makes a new store
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256((payload + _fingerprint(index)).encode()).hexdigest()[:12]


# Worker side: the source and settings are sent once per process by the pool initialiser.
_worker: dict[str, Any] = {}


def _init_worker(source: Source, cfg: IngestConfig) -> None:
    _worker["source"], _worker["cfg"] = source, cfg


@dataclass(frozen=True)
class _Processed:
    """One record after reading, quality control and preprocessing: its signal, or why not."""

    signal: np.ndarray | None
    padded: bool
    digest: str
    """sha256 of the signal as read: byte-identical records under other names share it."""
    failure: RecordError | None


def prepare_record(raw: RawEcg, pre: PreprocessConfig, qc: QCConfig) -> tuple[np.ndarray, bool]:
    """Quality control and preprocessing of one record as read: the store's signal and whether it was padded.

    The one path from a read record to a stored one: ingest and ``fedami predict`` both take it.
    Raises :class:`RecordError` with the reason a record cannot be used.
    """
    check_signal(raw, qc)
    filtered = filter_signal(raw.signal, raw.fs, pre)
    if raw.units == "mV":  # a standardised source (PTB-XL's filtered array) has no amplitude to check
        check_amplitude(filtered if pre.bandpass_hz is not None else bandpass(filtered, pre.target_fs), qc)
    x, padded = finish_signal(filtered, pre)
    if not np.isfinite(x).all():  # a filter can blow up on pathological input
        raise RecordError(QCReason.NAN, "non-finite values after preprocessing")
    return x, padded


def _process(rows: Sequence[Mapping[str, Any]]) -> list[_Processed]:
    source: Source = _worker["source"]
    cfg: IngestConfig = _worker["cfg"]
    out: list[_Processed] = []
    for row in rows:
        try:
            raw = source.load(row)
            digest = hashlib.sha256(np.ascontiguousarray(raw.signal).tobytes() + f"|{raw.fs}".encode()).hexdigest()
            x, padded = prepare_record(raw, cfg.preprocess, cfg.qc)
            out.append(_Processed(x, padded, digest, None))
        except RecordError as err:
            out.append(_Processed(None, False, "", err))
        except Exception as err:  # an unexpected reader failure is still a counted skip, never a crash
            failure = RecordError(QCReason.UNREADABLE, f"{type(err).__name__}: {err}")
            out.append(_Processed(None, False, "", failure))
    return out


def _batches(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), _BATCH):
        yield rows[i : i + _BATCH]


def _run(
    source: Source, cfg: IngestConfig, rows: list[dict[str, Any]], workers: int, desc: str, progress: bool
) -> Iterator[_Processed]:
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


SITE_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""A hospital name is a folder name: letters, digits, '.', '_' and '-', not starting with '.' (no path parts)."""


def _validate_index(index: pd.DataFrame, cfg: IngestConfig) -> None:
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise ValueError(f"source index lacks columns {missing}")
    if index.empty:
        raise ValueError("the source lists no records")
    bad_sites = sorted({str(s) for s in index["site"].unique() if not SITE_NAME.fullmatch(str(s))})
    if bad_sites:
        raise ValueError(
            f"hospital names must start with a letter or digit and hold only letters, digits, '.', '_' and '-' "
            f"(at most 64; each names a folder): rename {bad_sites}"
        )
    if "signal_units" in index.columns and cfg.preprocess.normalise != "per_record":
        units = sorted(set(index["signal_units"]) - {"mV"})
        if units:
            raise ValueError(
                f"the source has records in {units}, which can only be pooled with mV records under "
                "per-record standardisation: --normalise per_record (preprocess.normalise)"
            )


def _row_checks(index: pd.DataFrame, cfg: IngestConfig, report: QualityReport) -> np.ndarray:
    """Checks on the index rows alone (duplicates, age, sex, label); returns which rows go on to be read."""
    keep = np.ones(len(index), dtype=bool)
    seen: set[str] = set()
    for i, row in enumerate(index.to_dict("records")):
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
    return keep


def _warnings(stores: Sequence[SiteStore]) -> list[str]:
    """Hospitals a study cannot use as they are: an empty split, or no AMI positive in a split."""
    out = []
    for s in stores:
        m = s.metadata
        for split in ("train", "val", "test"):
            part = m.loc[m["split"] == split, "label"]
            if len(part) == 0:
                out.append(f"hospital {s.site!r} has no {split} records")
            elif int(part.sum()) == 0:
                out.append(f"hospital {s.site!r} has no AMI positive in its {split} split ({len(part)} ECGs)")
    return out


def ingest(
    source: Source,
    cfg: IngestConfig,
    data_dir: Path,
    *,
    workers: int | None = None,
    progress: bool = True,
    echo: Any = print,
) -> IngestResult:
    """Ingest ``source`` into per-site stores under ``data_dir``; reuse them when nothing changed.

    Every record read ends stored or skipped under a reason (``qc_records.csv``). A hospital none of
    whose records can be used is left out and reported (``unusable_sites`` in ``qc_report.json``,
    and on the console); when no hospital is usable the ingest is an error with the table of why.
    """
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
    keep = _row_checks(index, cfg, report)

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n_t = round(cfg.preprocess.length_s * cfg.preprocess.target_fs)
    workers = workers if workers is not None else max(1, min(os.cpu_count() or 1, 8))
    signal_of: dict[str, str] = {}  # digest -> record id of its first copy, over every hospital
    try:
        for site in sorted(index["site"].unique()):
            rows_df = index[(index["site"] == site) & keep]
            rows = rows_df.to_dict("records")
            good: list[int] = []
            signals: list[np.ndarray] = []
            padded: list[bool] = []
            for k, done in enumerate(_run(source, cfg, rows, workers, f"ingesting {site}", progress)):
                record_id = str(rows[k]["record_id"])
                failure = done.failure
                if failure is None and done.digest in signal_of:
                    failure = RecordError(
                        QCReason.DUPLICATE, f"the same signal as {signal_of[done.digest]}, which is kept"
                    )
                if failure is not None:
                    report.add_skip(site, failure, record_id)
                    continue
                assert done.signal is not None
                signal_of[done.digest] = record_id
                report.add_stored(site, record_id, done.padded)
                good.append(k)
                signals.append(done.signal)
                padded.append(done.padded)
            if not good:
                report.forget_site(site, _why(report, site))
                continue
            meta = rows_df.iloc[good].reset_index(drop=True).drop(columns=["path"])
            meta["fs"] = cfg.preprocess.target_fs
            meta["padded"] = padded
            meta["label"] = meta["label"].astype(int)
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
        if len(report.unusable) == len(index["site"].unique()):
            raise StoreError(
                "no hospital has a usable record after quality control:\n" + report.table().to_string(index=False)
            )
        report.warnings.extend(_warnings([SiteStore.open(p) for p in sorted(tmp.iterdir()) if p.is_dir()]))
        write_json(tmp / REPORT_FILE, report.to_dict())
        report.table().to_csv(tmp / REPORT_TABLE, index=False)
        report.records_table().to_csv(tmp / RECORDS_TABLE, index=False)
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
    announce(report, echo)
    return _open_result(out, cached=False)


def _why(report: QualityReport, site: str) -> str:
    reasons: Mapping[str, int] = report.skipped.get(site, {})
    return ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])) or "no records"


def announce(report: QualityReport, echo: Any = print) -> None:
    """The hospitals left out and the warnings, prominently."""
    for site, why in report.unusable.items():
        echo(f"!! hospital {site!r} was left out: none of its records is usable ({why}); see {RECORDS_TABLE}")
    for warning in report.warnings:
        echo(f"!! {warning}")


def _open_result(out: Path, *, cached: bool) -> IngestResult:
    stores = [SiteStore.open(p) for p in sorted(out.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    records = pd.read_csv(out / RECORDS_TABLE, dtype={"record_id": str, "site": str, "status": str, "detail": str})
    report = QualityReport.from_files(json.loads((out / REPORT_FILE).read_text()), records)
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
