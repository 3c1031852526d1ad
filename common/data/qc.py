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


def check_row(row: Mapping[str, Any], cfg: QCConfig) -> None:
    """Checks that need only the index row: age and label."""
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
    if len(flat):
        raise RecordError(QCReason.FLAT_LEAD, f"flat leads {[LEADS[i] for i in flat]} (peak-to-peak < {cfg.flat_ptp})")
    run = max(3, math.ceil(cfg.saturation_run_s * raw.fs))
    top = _longest_run(x == x.max(-1, keepdims=True))
    bottom = _longest_run(x == x.min(-1, keepdims=True))
    clipped = np.flatnonzero((top >= run) | (bottom >= run))
    if len(clipped):
        raise RecordError(QCReason.SATURATION, f"leads {[LEADS[i] for i in clipped]} stuck at their extreme")


@dataclass
class QualityReport:
    """Per-site counts: records read, stored, padded, and skipped per reason (with examples)."""

    read: Counter[str] = field(default_factory=Counter)
    stored: Counter[str] = field(default_factory=Counter)
    padded: Counter[str] = field(default_factory=Counter)
    skipped: dict[str, Counter[str]] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add_skip(self, site: str, err: RecordError, record_id: str) -> None:
        self.skipped.setdefault(site, Counter())[err.reason.value] += 1
        ex = self.examples.setdefault(err.reason.value, [])
        if len(ex) < 5:
            ex.append(f"{record_id}: {err.detail}")

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
    def from_dict(cls, d: Mapping[str, Any]) -> QualityReport:
        """Inverse of :meth:`to_dict` (a cached ingest reads its report back)."""
        rep = cls(examples={k: list(v) for k, v in d.get("examples", {}).items()})
        for row in d["per_site"]:
            site = row["site"]
            rep.read[site], rep.stored[site], rep.padded[site] = row["read"], row["stored"], row["padded"]
            skipped = {k: int(v) for k, v in row.items() if k not in {"site", "read", "stored", "padded"} and v}
            if skipped:
                rep.skipped[site] = Counter(skipped)
        return rep

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_site": self.table().to_dict(orient="records"),
            "skipped_total": self.skipped_total(),
            "examples": self.examples,
        }
