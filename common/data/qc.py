"""Quality control: every record either passes or is counted under a reason; nothing is dropped silently."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from common.config import QCConfig
from common.data.leads import LEADS
from common.data.readers.base import QCReason, RawEcg, RecordError


def _text(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def check_row(row: Mapping[str, Any], cfg: QCConfig) -> None:
    """Checks that need only the index row: age, sex and label, as read and as they could not be read."""
    if _text(row, "unreadable"):
        raise RecordError(QCReason.UNREADABLE, _text(row, "unreadable"))
    if _text(row, "age_unreadable"):
        raise RecordError(QCReason.UNREADABLE_AGE, f"age {_text(row, 'age_unreadable')!r} is not a number of years")
    if _text(row, "sex_unreadable"):
        raise RecordError(QCReason.UNREADABLE_SEX, f"sex {_text(row, 'sex_unreadable')!r} is neither male nor female")
    if _text(row, "label_unreadable"):
        raise RecordError(QCReason.UNREADABLE_LABEL, _text(row, "label_unreadable"))
    age = row.get("age")
    if age is not None and not (isinstance(age, float) and math.isnan(age)):
        lo, hi = cfg.age_range
        if not lo <= float(age) <= hi:
            raise RecordError(QCReason.IMPLAUSIBLE_AGE, f"age {age} outside {lo}-{hi}")
    label = row.get("label")
    if cfg.require_label and (label is None or (isinstance(label, float) and math.isnan(label))):
        raise RecordError(QCReason.MISSING_LABEL, "no label")


def _longest_run(mask: np.ndarray) -> np.ndarray:
    """Longest run of True per row of a 2-D boolean array."""
    out = np.zeros(mask.shape[0], dtype=np.int64)
    for i, m in enumerate(mask):
        if m.any():
            edges = np.flatnonzero(np.diff(np.concatenate([[0], m.astype(np.int8), [0]])))
            out[i] = int((edges[1::2] - edges[::2]).max())
    return out


def check_signal(raw: RawEcg, cfg: QCConfig) -> None:
    """Checks on the signal: sampling rate, length, NaN/inf, flat leads, clipping."""
    lo, hi = cfg.fs_range_hz
    if not lo <= raw.fs <= hi:
        raise RecordError(QCReason.UNKNOWN_FS, f"sampling rate {raw.fs} Hz outside {lo}-{hi} Hz")
    x = raw.signal
    duration = x.shape[-1] / raw.fs
    if duration < cfg.min_duration_s:
        raise RecordError(QCReason.TOO_SHORT, f"{duration:.2f} s < {cfg.min_duration_s} s")
    bad = ~np.isfinite(x)
    if bad.any():
        leads = [LEADS[i] for i in np.flatnonzero(bad.any(-1))]
        raise RecordError(QCReason.NAN, f"{int(bad.sum())} NaN/inf samples in {leads}")
    ptp = x.max(-1) - x.min(-1)
    flat = np.flatnonzero(ptp < cfg.flat_ptp)
    if len(flat) == len(ptp) and ptp.max() > 0:  # every lead moves, none by a hundredth of a mV: a scale error
        raise RecordError(
            QCReason.IMPLAUSIBLE_AMPLITUDE,
            f"every lead spans less than {cfg.flat_ptp} mV (at most {ptp.max():.3g} mV): a gain or unit error?",
        )
    if len(flat):
        raise RecordError(QCReason.FLAT_LEAD, f"flat leads {[LEADS[i] for i in flat]} (peak-to-peak < {cfg.flat_ptp})")
    run = max(3, math.ceil(cfg.saturation_run_s * raw.fs))
    top = _longest_run(x == x.max(-1, keepdims=True))
    bottom = _longest_run(x == x.min(-1, keepdims=True))
    clipped = np.flatnonzero((top >= run) | (bottom >= run))
    if len(clipped):
        raise RecordError(QCReason.SATURATION, f"leads {[LEADS[i] for i in clipped]} stuck at their extreme")


def check_amplitude(filtered: np.ndarray, cfg: QCConfig) -> None:
    """A 12-lead ECG in mV whose typical lead spans an implausible range has a gain or unit error.

    ``filtered`` is the band-passed signal in mV; its median over the leads of each lead's
    peak-to-peak must lie in ``cfg.amplitude_mv``. A record written in uV but read as mV is 1000
    times too large, one whose gain was taken as WFDB's default 200 instead of 1000 five times.
    """
    lo, hi = cfg.amplitude_mv
    median = float(np.median(filtered.max(-1) - filtered.min(-1)))
    if not lo <= median <= hi:
        raise RecordError(
            QCReason.IMPLAUSIBLE_AMPLITUDE,
            f"the median lead spans {median:.3g} mV peak to peak, outside {lo}-{hi} mV: a gain or unit error?",
        )


STORED: str = "stored"


@dataclass
class QualityReport:
    """What happened to every record read: stored (padded or not) or skipped under a reason.

    The per-site counts, the examples and the table are all derived from :attr:`records`, so they
    add up to the records found. Hospitals that kept no record are in :attr:`unusable` with why.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    unusable: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def add_stored(self, site: str, record_id: str, padded: bool) -> None:
        self.records.append({"record_id": record_id, "site": site, "status": STORED, "detail": "", "padded": padded})

    def add_skip(self, site: str, err: RecordError, record_id: str) -> None:
        self.records.append(
            {"record_id": record_id, "site": site, "status": err.reason.value, "detail": err.detail, "padded": False}
        )

    def forget_site(self, site: str, why: str) -> None:
        """A hospital with nothing usable: its records stay listed, the hospital is reported unusable."""
        self.unusable[site] = why

    @property
    def read(self) -> Counter[str]:
        return Counter(r["site"] for r in self.records)

    @property
    def stored(self) -> Counter[str]:
        return Counter(r["site"] for r in self.records if r["status"] == STORED)

    @property
    def padded(self) -> Counter[str]:
        return Counter(r["site"] for r in self.records if r["padded"])

    @property
    def skipped(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {}
        for r in self.records:
            if r["status"] != STORED:
                out.setdefault(r["site"], Counter())[r["status"]] += 1
        return out

    @property
    def examples(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in self.records:
            if r["status"] != STORED and len(ex := out.setdefault(r["status"], [])) < 5:
                ex.append(f"{r['record_id']}: {r['detail']}")
        return out

    def records_table(self) -> pd.DataFrame:
        """One row per record read: id, hospital, ``stored`` or the reason, the detail, padded."""
        return pd.DataFrame(self.records, columns=["record_id", "site", "status", "detail", "padded"])

    def table(self) -> pd.DataFrame:
        """One row per site: read, stored, padded and one column per skip reason seen."""
        sites = sorted(set(self.read) | set(self.skipped))
        reasons = sorted({r for c in self.skipped.values() for r in c})
        rows = []
        for s in sites:
            row: dict[str, Any] = {"site": s, "read": self.read[s], "stored": self.stored[s], "padded": self.padded[s]}
            row.update({r: self.skipped.get(s, Counter())[r] for r in reasons})
            rows.append(row)
        return pd.DataFrame(rows)

    def skipped_total(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for c in self.skipped.values():
            total.update(c)
        return dict(sorted(total.items()))

    @classmethod
    def from_files(cls, summary: Mapping[str, Any], records: pd.DataFrame) -> QualityReport:
        """Inverse of :meth:`to_dict` and :meth:`records_table` (a cached ingest reads its report back)."""
        rows = records.fillna({"detail": ""}).to_dict(orient="records")
        for r in rows:
            r["record_id"], r["site"], r["padded"] = str(r["record_id"]), str(r["site"]), bool(r["padded"])
        return cls(records=rows, unusable=dict(summary["unusable_sites"]), warnings=list(summary["warnings"]))

    def to_dict(self) -> dict[str, Any]:
        """The summary (``qc_report.json``); every record is in :meth:`records_table` (``qc_records.csv``)."""
        return {
            "per_site": self.table().to_dict(orient="records"),
            "skipped_total": self.skipped_total(),
            "unusable_sites": self.unusable,
            "warnings": self.warnings,
            "examples": self.examples,
        }
