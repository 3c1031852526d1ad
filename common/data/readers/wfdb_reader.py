"""Plain WFDB records (``.hea`` + ``.dat`` or ``.mat``): any rate, 12 or more leads, any unit."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from common.data.readers.base import QCReason, RawEcg, RecordError, to_canonical

# Bytes per sample of the WFDB storage formats, to tell a truncated signal file before parsing it.
_BYTES_PER_SAMPLE: Final[dict[str, float]] = {
    "8": 1, "80": 1, "16": 2, "61": 2, "160": 2, "24": 3, "32": 4, "212": 1.5, "310": 4 / 3, "311": 4 / 3,
}  # fmt: skip

if TYPE_CHECKING:
    import wfdb


def _check_files(record: Path, header: wfdb.Record) -> None:
    per_file: dict[str, list[int]] = {}
    for ch, name in enumerate(header.file_name or []):
        per_file.setdefault(name, []).append(ch)
    for name, channels in per_file.items():
        f = record.parent / name
        if not f.is_file():
            raise RecordError(QCReason.UNREADABLE, f"signal file {f} is missing")
        bps = _BYTES_PER_SAMPLE.get(str(header.fmt[channels[0]]))
        if f.suffix.lower() == ".mat" or bps is None or not header.sig_len:
            continue
        offset = int((header.byte_offset or [0] * len(header.fmt))[channels[0]] or 0)
        expected = offset + math.ceil(header.sig_len * len(channels) * bps)
        if f.stat().st_size < expected:
            raise RecordError(QCReason.TRUNCATED, f"{f.name} has {f.stat().st_size} bytes, header needs {expected}")


def _diagnose(record: Path) -> None:
    """Raise the specific :class:`RecordError` for a record that ``wfdb`` could not read."""
    import wfdb

    try:
        header = wfdb.rdheader(str(record))
    except Exception as err:  # wfdb raises many types for a corrupt header
        raise RecordError(QCReason.UNREADABLE, f"corrupt header {record}.hea: {err}") from err
    if header.fs is None or not np.isfinite(header.fs) or header.fs <= 0:
        raise RecordError(QCReason.UNKNOWN_FS, f"header gives sampling rate {header.fs!r}")
    if not header.n_sig:
        raise RecordError(QCReason.MISSING_LEAD, "header declares no signals")
    _check_files(record, header)


def read_wfdb(record: Path, *, verify_checksum: bool = True) -> RawEcg:
    """Read a WFDB record given its path without extension.

    Returns the 12 standard leads in mV (names and units normalised). Raises :class:`RecordError`
    for a missing or corrupt header, missing or truncated signal files, checksum mismatches, an
    unknown sampling rate or unit, or missing leads.
    """
    import wfdb  # here, not at import: hospitals' training processes never read WFDB

    record = Path(record)
    if not record.with_suffix(".hea").is_file():
        raise RecordError(QCReason.UNREADABLE, f"no header {record}.hea")
    try:
        rec = wfdb.rdrecord(str(record), physical=False, return_res=64)
    except Exception as err:  # parse the header alone to say precisely what is wrong
        _diagnose(record)
        raise RecordError(QCReason.UNREADABLE, f"cannot read {record}: {err}") from err
    fs = rec.fs
    if fs is None or not np.isfinite(fs) or fs <= 0:
        raise RecordError(QCReason.UNKNOWN_FS, f"header gives sampling rate {fs!r}")
    if not rec.n_sig:
        raise RecordError(QCReason.MISSING_LEAD, "header declares no signals")
    if rec.d_signal is None or rec.d_signal.shape[0] < (rec.sig_len or 0):
        raise RecordError(QCReason.TRUNCATED, f"{record}: fewer samples than the header's {rec.sig_len}")
    if verify_checksum and rec.checksum is not None:
        got = rec.calc_checksum()
        bad = [
            rec.sig_name[i]
            for i, (a, b) in enumerate(zip(got, rec.checksum, strict=False))
            if b is not None and (a - b) % 65536 != 0
        ]
        if bad:
            raise RecordError(QCReason.CHECKSUM, f"{record}: checksum mismatch in {bad}")
    physical = rec.dac(expanded=False, return_res=64)
    return RawEcg(
        to_canonical(physical, rec.sig_name, rec.units or ["mV"] * rec.n_sig),
        float(fs),
        "mV",
        tuple(rec.comments or ()),
    )


def header_fields(comments: tuple[str, ...]) -> dict[str, str]:
    """``#Key: value`` header comments as a dict with lower-case keys (``age``, ``sex``, ``dx`` ...)."""
    out: dict[str, str] = {}
    for line in comments:
        key, sep, value = line.lstrip("#").partition(":")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def load_wfdb_row(row: Mapping[str, Any]) -> RawEcg:
    """Loader for an index row whose ``path`` is a WFDB record path without extension."""
    return read_wfdb(Path(str(row["path"])))
