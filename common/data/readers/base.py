"""What every reader shares: the record error taxonomy, the raw ECG, lead names and units.

Readers know nothing about torch or Flower. Each one turns a source into an *index* (a DataFrame
with one row per record and at least :data:`INDEX_COLUMNS`) and loads one record at a time as a
:class:`RawEcg` in the canonical lead order and mV, or raises :class:`RecordError` with a reason
from :class:`QCReason`. Nothing is dropped silently: the ingest pipeline counts every error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

import numpy as np
import pandas as pd

from common.data.leads import LEAD_INDEX, LEADS, N_LEADS

INDEX_COLUMNS: Final[tuple[str, ...]] = ("record_id", "patient_id", "site", "age", "sex", "label", "path")
"""Columns every reader's index has. ``age`` is float (NaN = missing), ``sex`` "M"/"F"/"",
``label`` 0/1 or NaN when unknown, ``path`` what the reader's ``load`` needs to find the record."""


class QCReason(StrEnum):
    """Why a record did not enter the store."""

    UNREADABLE = "unreadable"
    TRUNCATED = "truncated"
    CHECKSUM = "checksum_mismatch"
    NAN = "nan_or_inf"
    FLAT_LEAD = "flat_lead"
    MISSING_LEAD = "missing_lead"
    SATURATION = "saturation"
    TOO_SHORT = "too_short"
    UNKNOWN_FS = "unknown_sampling_rate"
    UNKNOWN_UNITS = "unknown_units"
    IMPLAUSIBLE_AGE = "implausible_age"
    MISSING_LABEL = "missing_label"
    DUPLICATE = "duplicate_record"


class RecordError(Exception):
    """A record that cannot be used, with the reason it is counted under."""

    def __init__(self, reason: QCReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[RecordError], tuple[QCReason, str]]:
        # rebuilt from (reason, detail) when it crosses a process boundary
        return (RecordError, (self.reason, self.detail))


@dataclass(frozen=True)
class RawEcg:
    """One ECG as read: ``signal`` float32 ``(12, T)`` in the canonical order and unit."""

    signal: np.ndarray
    fs: float
    units: str = "mV"
    comments: tuple[str, ...] = field(default=())


class Source(Protocol):
    """A data source the ingest pipeline can read (picklable: it crosses process boundaries)."""

    def describe(self) -> dict[str, Any]:
        """JSON-ready description: the reader's kind and settings (part of the cache key)."""
        ...

    def index(self) -> pd.DataFrame:
        """One row per record with at least :data:`INDEX_COLUMNS`."""
        ...

    def load(self, row: Mapping[str, Any]) -> RawEcg:
        """Read one record (a row of :meth:`index`), or raise :class:`RecordError`."""
        ...


_LEAD_ALIASES: Final[dict[str, str]] = {
    **{name.upper(): name for name in LEADS},
    "MLII": "II",
    "DI": "I",
    "DII": "II",
    "DIII": "III",
    "LEADI": "I",
    "LEADII": "II",
    "LEADIII": "III",
}

_UNIT_TO_MV: Final[dict[str, float]] = {
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "µv": 1e-3,
    "μv": 1e-3,
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
    "nv": 1e-6,
}


def canonical_lead(name: str) -> str | None:
    """Canonical spelling of a lead name (``AVR`` -> ``aVR``, ``MLII`` -> ``II``), None if unknown."""
    key = re.sub(r"[\s_\-]", "", str(name)).upper()
    return _LEAD_ALIASES.get(key)


def unit_scale_to_mv(unit: str) -> float:
    """Factor that converts values in ``unit`` to mV; :class:`RecordError` for an unknown unit."""
    scale = _UNIT_TO_MV.get(str(unit).strip().lower())
    if scale is None:
        raise RecordError(QCReason.UNKNOWN_UNITS, f"unit {unit!r} is not one of mV, uV, V")
    return scale


def to_canonical(signal: np.ndarray, names: Sequence[str], units: Sequence[str]) -> np.ndarray:
    """Pick the 12 standard leads from ``signal`` ``(T, n_channels)`` by name and convert to mV.

    Extra channels (a 15-lead recording, rhythm strips) are ignored; a lead that appears twice
    keeps its first occurrence. Returns float32 ``(12, T)``.
    """
    if signal.ndim != 2 or signal.shape[1] != len(names) or len(units) != len(names):
        raise RecordError(QCReason.UNREADABLE, f"signal shape {signal.shape} does not match {len(names)} channel names")
    out = np.empty((N_LEADS, signal.shape[0]), dtype=np.float32)
    found: dict[str, int] = {}
    for ch, name in enumerate(names):
        lead = canonical_lead(name)
        if lead is not None and lead not in found:
            found[lead] = ch
    missing = [lead for lead in LEADS if lead not in found]
    if missing:
        raise RecordError(QCReason.MISSING_LEAD, f"leads {missing} absent (channels: {list(names)})")
    for lead, ch in found.items():
        out[LEAD_INDEX[lead]] = signal[:, ch] * unit_scale_to_mv(units[ch])
    return out


def normalise_sex(value: object) -> str:
    """ "M", "F" or "" from the many ways sources write sex (PTB-XL: 0 male, 1 female)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    s = str(value).strip().lower()
    if s in {"m", "male", "man", "0", "0.0"}:
        return "M"
    if s in {"f", "female", "woman", "1", "1.0"}:
        return "F"
    return ""


PTBXL_AGE_90_PLUS: Final[float] = 300.0
"""PTB-XL writes ages of 90 and over as 300 (de-identification)."""


def normalise_age(value: object) -> float:
    """Age in years as float, NaN when missing; PTB-XL's 300 (90 or over) becomes 90."""
    try:
        age = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    if math.isnan(age):
        return math.nan
    return 90.0 if age == PTBXL_AGE_90_PLUS else age
