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
from typing import Any, Final, Literal, Protocol

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
    UNCALIBRATED = "uncalibrated_gain"
    IMPLAUSIBLE_AMPLITUDE = "implausible_amplitude"
    IMPLAUSIBLE_AGE = "implausible_age"
    UNREADABLE_AGE = "unreadable_age"
    UNREADABLE_SEX = "unreadable_sex"
    MISSING_LABEL = "missing_label"
    UNREADABLE_LABEL = "unreadable_label"
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
    """Canonical spelling of a lead name (``AVR`` -> ``aVR``, ``MLII`` -> ``II``), None if unknown.

    An inverted lead (``-aVR``, Cabrera's display) is not the lead: see :func:`lead_of_channel`.
    """
    lead, inverted = lead_of_channel(name)
    return None if inverted else lead


def lead_of_channel(name: str) -> tuple[str | None, bool]:
    """The standard lead a channel records and whether it is stored inverted (``-aVR`` = minus aVR)."""
    text = str(name).strip()
    inverted = text.startswith("-")
    key = re.sub(r"[\s_\-]", "", text.lstrip("-+")).upper()
    lead = _LEAD_ALIASES.get(key) or _LEAD_ALIASES.get(key.removeprefix("LEAD"))  # "Lead V1", "LEAD_aVF"
    return lead, inverted


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
    for lead, (ch, sign) in lead_channels(names).items():
        out[LEAD_INDEX[lead]] = sign * signal[:, ch] * unit_scale_to_mv(units[ch])
    return out


def lead_channels(names: Sequence[str]) -> dict[str, tuple[int, float]]:
    """Channel and sign (-1 for an inverted recording such as ``-aVR``) of each of the 12 leads.

    Extra channels are ignored; a lead that appears twice keeps its first occurrence. A missing
    lead is a :class:`RecordError`.
    """
    found: dict[str, tuple[int, float]] = {}
    for ch, name in enumerate(names):
        lead, inverted = lead_of_channel(name)
        if lead is not None and lead not in found:
            found[lead] = (ch, -1.0 if inverted else 1.0)
    missing = [lead for lead in LEADS if lead not in found]
    if missing:
        raise RecordError(QCReason.MISSING_LEAD, f"leads {missing} absent (channels: {list(names)})")
    return found


SexCoding = Literal["letters", "ptbxl", "iso5218"]
"""How a source writes sex: words or letters (M/F, male/female), PTB-XL's 0 male / 1 female, or
ISO 5218's 1 male / 2 female (0 not known, 9 not applicable)."""

_MISSING_TEXT: Final[frozenset[str]] = frozenset({"", "nan", "none", "null", "na", "n/a", "unknown", "not known", "?"})
_MALE: Final[frozenset[str]] = frozenset({"m", "male", "man", "masculine"})
_FEMALE: Final[frozenset[str]] = frozenset({"f", "female", "woman", "feminine"})
_NUMERIC_SEX: Final[dict[str, dict[str, str]]] = {
    "ptbxl": {"0": "M", "1": "F"},
    "iso5218": {"1": "M", "2": "F", "0": "", "9": ""},
}


class Unreadable(str):
    """A value that is present but cannot be read (``"45 y."`` as an age, ``"3"`` as a sex).

    Readers return it in the index (``age_unreadable``, ``sex_unreadable``) so that ingest counts the
    record under a reason instead of storing it with a missing or wrong value.
    """


def _blank(value: object) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return str(value).strip().lower() in _MISSING_TEXT


def parse_sex(value: object, coding: SexCoding = "letters") -> str | Unreadable:
    """ "M", "F", "" (missing) or the :class:`Unreadable` text, under the source's ``coding``."""
    if _blank(value):
        return ""
    s = str(value).strip().lower()
    s = s[:-2] if s.endswith(".0") else s
    if s in _MALE:
        return "M"
    if s in _FEMALE:
        return "F"
    if coding in _NUMERIC_SEX and s in _NUMERIC_SEX[coding]:
        return _NUMERIC_SEX[coding][s]
    return Unreadable(str(value).strip())


def normalise_sex(value: object, coding: SexCoding = "letters") -> str:
    """ "M", "F" or "" (missing or unreadable: use :func:`parse_sex` to tell those apart)."""
    sex = parse_sex(value, coding)
    return "" if isinstance(sex, Unreadable) else sex


PTBXL_AGE_90_PLUS: Final[float] = 300.0
"""PTB-XL writes ages of 90 and over as 300 (de-identification)."""
_AGE: Final = re.compile(
    r"^(?P<cmp>>=?|\u2265)?\s*(?P<years>[-+]?\d+(?:[.,]\d+)?)\s*(?P<plus>\+)?\s*"
    r"(?:y|yr|yrs|year|years|a|j|jahre|ans|años)?\.?$",
    re.IGNORECASE,
)


def parse_age(value: object, *, ptbxl: bool = False) -> float | Unreadable:
    """Age in years (NaN when missing) or the :class:`Unreadable` text.

    Reads ``61``, ``61.5``, ``61,5``, ``61 y``, ``61 years`` and top codes ``90+`` / ``>89`` (as their
    number). ``ptbxl``: PTB-XL's 300 (90 or over) becomes 90; elsewhere 300 stays, an implausible age.
    """
    if _blank(value):
        return math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        age = float(value)
    else:
        m = _AGE.match(str(value).strip())
        if m is None:
            return Unreadable(str(value).strip())
        age = float(m["years"].replace(",", "."))
        if m["cmp"] in (">",) and not m["plus"]:
            age += 1  # ">89" is 90 or older
    if ptbxl and age == PTBXL_AGE_90_PLUS:
        return 90.0
    return age


def normalise_age(value: object, *, ptbxl: bool = False) -> float:
    """Age in years, NaN when missing or unreadable (use :func:`parse_age` to tell those apart)."""
    age = parse_age(value, ptbxl=ptbxl)
    return math.nan if isinstance(age, Unreadable) else age


def demographics_columns(ages: Sequence[object], sexes: Sequence[object], *, coding: SexCoding = "letters",
                         ptbxl: bool = False) -> dict[str, list[object]]:  # fmt: skip
    """Index columns ``age``, ``sex`` and the texts that could not be read (``age_unreadable``, ``sex_unreadable``)."""
    age = [parse_age(v, ptbxl=ptbxl) for v in ages]
    sex = [parse_sex(v, coding) for v in sexes]
    return {
        "age": [math.nan if isinstance(a, Unreadable) else a for a in age],
        "sex": ["" if isinstance(x, Unreadable) else x for x in sex],
        "age_unreadable": [str(a) if isinstance(a, Unreadable) else "" for a in age],
        "sex_unreadable": [str(x) if isinstance(x, Unreadable) else "" for x in sex],
    }
