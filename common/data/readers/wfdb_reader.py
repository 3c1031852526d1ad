"""Plain WFDB records (``.hea`` + ``.dat`` or ``.mat``): any rate, 12 or more leads, any unit.

The header is read as written (:mod:`common.data.readers.wfdb_header`), never through wfdb's
defaults, and the physical signal is computed from it: ``(digital - baseline) / gain``, converted
to mV, inverted where a channel records an inverted lead (``-aVR``). ``wfdb`` reads the samples of
``.dat`` files; a challenge ``.mat`` file (MATLAB v4) is read here, in whichever orientation its
matrix is stored. Checksums are verified on the samples as stored (every sample of a signal with
several samples per frame), then such a signal is averaged to one value per frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np

from common.data.leads import LEADS
from common.data.readers.base import QCReason, RawEcg, RecordError, lead_channels, unit_scale_to_mv
from common.data.readers.wfdb_header import SignalSpec, WfdbHeader, check_calibrated, parse_header

# Bytes per sample of the WFDB storage formats, to tell a truncated signal file before parsing it.
_BYTES_PER_SAMPLE: Final[dict[str, float]] = {
    "8": 1, "80": 1, "16": 2, "61": 2, "160": 2, "24": 3, "32": 4, "212": 1.5, "310": 4 / 3, "311": 4 / 3,
}  # fmt: skip
_INVALID_SAMPLE: Final[dict[str, int]] = {
    "80": -(2**7), "310": -(2**9), "311": -(2**9), "212": -(2**11), "16": -(2**15), "61": -(2**15),
    "160": -(2**15), "24": -(2**23), "32": -(2**31),
}  # fmt: skip
"""The digital value WFDB stores for a missing sample, per format (format 8 has none)."""
_MAT_TYPES: Final[dict[int, str]] = {0: "<f8", 1: "<f4", 2: "<i4", 3: "<i2", 4: "<u2", 5: "<u1"}
"""MATLAB v4 precision digit (the P of MOPT) -> little-endian numpy dtype."""


def _check_files(record: Path, header: WfdbHeader) -> None:
    per_file: dict[str, list[SignalSpec]] = {}
    for spec in header.signals:
        per_file.setdefault(spec.file, []).append(spec)
    for name, specs in per_file.items():
        f = record.parent / name
        if not f.is_file():
            raise RecordError(QCReason.UNREADABLE, f"signal file {f} is missing")
        bps = _BYTES_PER_SAMPLE.get(specs[0].fmt)
        if f.suffix.lower() == ".mat" or bps is None or not header.n_samples:
            continue
        per_frame = sum(s.samples_per_frame for s in specs)
        expected = specs[0].byte_offset + math.ceil(header.n_samples * per_frame * bps)
        if f.stat().st_size < expected:
            raise RecordError(QCReason.TRUNCATED, f"{f.name} has {f.stat().st_size} bytes, header needs {expected}")


def _read_mat(file: Path, header: WfdbHeader) -> list[np.ndarray]:
    """The samples of a MATLAB v4 file holding one (signals x samples) matrix, either orientation."""
    raw = file.read_bytes()
    if len(raw) < 20:
        raise RecordError(QCReason.TRUNCATED, f"{file.name} has {len(raw)} bytes: no MATLAB v4 header")
    mopt, rows, cols, imag, name_len = (int(v) for v in np.frombuffer(raw[:20], "<i4"))
    if mopt // 1000 != 0 or imag != 0 or (mopt // 10) % 10 not in _MAT_TYPES or not 0 < name_len < 64:
        raise RecordError(QCReason.UNREADABLE, f"{file.name} is not a little-endian MATLAB v4 real matrix")
    dtype = np.dtype(_MAT_TYPES[(mopt // 10) % 10])
    start = 20 + name_len
    n_sig, n = header.n_signals, header.n_samples
    if (rows, cols) == (n_sig, n) or (n is None and rows == n_sig):
        leads_first = False  # column-major (signals x samples): samples interleaved, as WFDB format 16
    elif (rows, cols) == (n, n_sig) or (n is None and cols == n_sig):
        leads_first = True  # stored transposed (samples x signals): each signal contiguous
    else:
        raise RecordError(
            QCReason.UNREADABLE, f"{file.name} holds a {rows} x {cols} matrix; the header says {n_sig} signals x {n}"
        )
    need = start + rows * cols * dtype.itemsize
    if len(raw) < need:
        raise RecordError(QCReason.TRUNCATED, f"{file.name} has {len(raw)} bytes, its matrix needs {need}")
    data = np.frombuffer(raw, dtype, count=rows * cols, offset=start).astype(np.float64)
    by_signal = data.reshape(n_sig, -1) if leads_first else data.reshape(-1, n_sig).T
    return list(by_signal)


def _read_dat(record: Path, header: WfdbHeader) -> list[np.ndarray]:
    import wfdb  # here, not at import: hospitals' training processes never read WFDB

    try:
        rec = wfdb.rdrecord(str(record), physical=False, smooth_frames=False, return_res=64)
    except Exception as err:  # wfdb raises many types for a corrupt record
        raise RecordError(QCReason.UNREADABLE, f"cannot read {record}: {err}") from err
    signals = [np.asarray(s, dtype=np.float64) for s in rec.e_d_signal]
    n = header.n_samples
    for spec, s in zip(header.signals, signals, strict=True):
        if n is not None and len(s) < n * spec.samples_per_frame:
            raise RecordError(QCReason.TRUNCATED, f"{record}: fewer samples than the header's {n}")
    return signals


def _digital(record: Path, header: WfdbHeader) -> list[np.ndarray]:
    mats = {s.file for s in header.signals if s.file.lower().endswith(".mat")}
    if not mats:
        return _read_dat(record, header)
    if len(mats) > 1 or len({s.file for s in header.signals}) > 1:
        raise RecordError(QCReason.UNREADABLE, f"{record}: signals spread over several files including a .mat")
    return _read_mat(record.parent / next(iter(mats)), header)


def _verify_checksums(record: Path, header: WfdbHeader, digital: list[np.ndarray]) -> None:
    bad = [
        spec.name or spec.file
        for spec, s in zip(header.signals, digital, strict=True)
        if spec.checksum is not None and (int(np.sum(s)) - spec.checksum) % 65536 != 0
    ]
    if bad:
        raise RecordError(QCReason.CHECKSUM, f"{record}: checksum mismatch in {bad}")


def _physical(spec: SignalSpec, digital: np.ndarray, record: Path) -> np.ndarray:
    """One signal in mV at the frame rate."""
    gain = check_calibrated(spec, record)
    scale = unit_scale_to_mv(spec.units or "mV")  # the WFDB default unit is mV
    x = (digital - spec.zero_level) / gain * scale
    invalid = _INVALID_SAMPLE.get(spec.fmt)
    if invalid is not None:
        x[digital == invalid] = np.nan
    if spec.samples_per_frame > 1:
        x = x[: len(x) - len(x) % spec.samples_per_frame].reshape(-1, spec.samples_per_frame).mean(axis=1)
    return x


def read_wfdb(record: Path, *, verify_checksum: bool = True) -> RawEcg:
    """Read a WFDB record given its path without extension.

    Returns the 12 standard leads in mV (names, inversions and units normalised). Raises
    :class:`RecordError` for a missing or corrupt header, a missing or non-positive sampling rate,
    missing or truncated signal files, checksum mismatches, an uncalibrated gain, an unknown unit or
    missing leads.
    """
    record = Path(record)
    hea = record.with_name(record.name + ".hea")  # not with_suffix: a record may be named "ecg.001"
    if hea.is_symlink() and not hea.exists():
        raise RecordError(QCReason.UNREADABLE, f"header {hea} is a broken or looping symbolic link")
    if not hea.is_file():
        raise RecordError(QCReason.UNREADABLE, f"no header {hea}" + (" (a folder)" if hea.is_dir() else ""))
    header = parse_header(hea)
    if header.fs is None:
        raise RecordError(QCReason.UNKNOWN_FS, f"{hea.name} gives no sampling rate (WFDB would assume 250 Hz)")
    if not math.isfinite(header.fs) or header.fs <= 0:
        raise RecordError(QCReason.UNKNOWN_FS, f"{hea.name} gives sampling rate {header.fs:g}")
    if not header.n_signals:
        raise RecordError(QCReason.MISSING_LEAD, "header declares no signals")
    leads = lead_channels([s.name for s in header.signals])
    _check_files(record, header)
    digital = _digital(record, header)
    if verify_checksum:
        _verify_checksums(record, header, digital)
    used = {ch for ch, _ in leads.values()}
    physical = {ch: _physical(header.signals[ch], digital[ch], record) for ch in sorted(used)}
    lengths = {len(x) for x in physical.values()}
    if len(lengths) != 1:
        raise RecordError(QCReason.UNREADABLE, f"{record}: the leads have different lengths {sorted(lengths)}")
    signal = np.stack([leads[lead][1] * physical[leads[lead][0]] for lead in LEADS]).astype(np.float32)
    return RawEcg(signal, float(header.fs), "mV", header.comments)


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
