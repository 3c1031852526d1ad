"""A WFDB header read as written, so that nothing wfdb would assume silently reaches the signal.

``wfdb``'s header parser fills absent or unusual fields with defaults: no sampling rate becomes
250 Hz, a negative one too, a gain of 0 or none becomes 200 per unit, and a unit written with a
micro sign (``µV``) loses that byte and becomes ``V``. Those defaults turn real exports into
signals off by factors of 5 to a million. This parser keeps every field as it is written (``None``
where it is absent), so the reader can refuse what is undefined and convert the rest exactly.

Header syntax (https://physionet.org/physiotools/wag/header-5.htm)::

    RECORD[/SEGMENTS] N_SIGNALS [FS[/COUNTER_FS[(BASE_COUNTER)]] [N_SAMPLES [TIME [DATE]]]]
    FILE FORMAT[xSAMPLES_PER_FRAME][:SKEW][+OFFSET]
         [GAIN[(BASELINE)][/UNITS] [RES [ZERO [INIT [CHECKSUM [BLOCK [NAME]]]]]]]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from common.data.readers.base import QCReason, RecordError

_FORMAT: Final = re.compile(r"^(?P<fmt>\d+)(?:x(?P<spf>\d+))?(?::(?P<skew>\d+))?(?:\+(?P<offset>\d+))?$")
_GAIN: Final = re.compile(
    r"^(?P<gain>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)?(?:\((?P<baseline>[-+]?\d+)\))?(?:/(?P<units>.*))?$"
)
_INTEGER: Final = re.compile(r"^[-+]?\d+$")
_FS: Final = re.compile(r"^(?P<fs>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?:/[^(]*)?(?:\(.*\))?$")


@dataclass(frozen=True)
class SignalSpec:
    """One signal line: ``None`` where the header leaves a field out."""

    file: str
    fmt: str
    samples_per_frame: int
    byte_offset: int
    gain: float | None
    baseline: int | None
    units: str | None
    adc_zero: int | None
    checksum: int | None
    name: str

    @property
    def zero_level(self) -> int:
        """The digital value of 0 physical units: the baseline, else the ADC zero, else 0 (the spec's defaults)."""
        if self.baseline is not None:
            return self.baseline
        return self.adc_zero if self.adc_zero is not None else 0


@dataclass(frozen=True)
class WfdbHeader:
    name: str
    n_signals: int
    fs: float | None
    """Frames per second as written; ``None`` where the record line gives none."""
    n_samples: int | None
    signals: tuple[SignalSpec, ...]
    comments: tuple[str, ...]


def read_text(path: Path) -> str:
    """A header's text: UTF-8, else Latin-1 (which keeps a single-byte ``µ``)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _int(token: str | None, what: str, where: Path) -> int | None:
    if token is None or token == "":
        return None
    try:
        return int(token)
    except ValueError:
        raise RecordError(QCReason.UNREADABLE, f"{where.name}: {what} {token!r} is not an integer") from None


def parse_header(path: Path) -> WfdbHeader:
    """Parse a single-segment header; :class:`RecordError` names the first field that cannot be read."""
    try:
        text = read_text(path)
    except OSError as err:
        raise RecordError(QCReason.UNREADABLE, f"cannot read header {path}: {err}") from err
    if "\x00" in text:
        raise RecordError(QCReason.UNREADABLE, f"{path.name} is not a text header (it holds NUL bytes)")
    comments = tuple(line.strip()[1:].strip() for line in text.splitlines() if line.lstrip().startswith("#"))
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise RecordError(QCReason.UNREADABLE, f"{path.name} has no record line")
    record = lines[0].split()
    if len(record) < 2:
        raise RecordError(QCReason.UNREADABLE, f"{path.name}: record line {lines[0]!r} lacks the number of signals")
    name, _, segments = record[0].partition("/")
    if segments:
        raise RecordError(QCReason.UNREADABLE, f"{path.name} is a multi-segment record, which is not supported")
    n_sig = _int(record[1], "number of signals", path)
    assert n_sig is not None
    fs: float | None = None
    if len(record) > 2:
        m = _FS.match(record[2])
        if m is None:
            raise RecordError(QCReason.UNKNOWN_FS, f"{path.name}: sampling rate {record[2]!r} is not a number")
        fs = float(m["fs"])
    n_samples = _int(record[3], "number of samples", path) if len(record) > 3 else None
    if len(lines) - 1 < n_sig:
        raise RecordError(QCReason.UNREADABLE, f"{path.name} declares {n_sig} signals but has {len(lines) - 1} lines")
    signals = tuple(_signal(line, path) for line in lines[1 : 1 + n_sig])
    return WfdbHeader(name, n_sig, fs, n_samples, signals, comments)


def _signal(line: str, path: Path) -> SignalSpec:
    tokens = line.split()
    if len(tokens) < 2:
        raise RecordError(QCReason.UNREADABLE, f"{path.name}: signal line {line!r} lacks a format")
    fmt = _FORMAT.match(tokens[1])
    if fmt is None:
        raise RecordError(QCReason.UNREADABLE, f"{path.name}: format {tokens[1]!r} is not a WFDB format")
    gain = baseline = units = None
    if len(tokens) > 2:
        g = _GAIN.match(tokens[2])
        if g is None:
            raise RecordError(QCReason.UNREADABLE, f"{path.name}: gain field {tokens[2]!r} cannot be read")
        gain = float(g["gain"]) if g["gain"] else None
        baseline = int(g["baseline"]) if g["baseline"] else None
        units = g["units"] or None
    # ADC resolution, zero, initial value, checksum, block size: integers while they last (real headers
    # leave out the last ones and go on with the description, which wfdb accepts too)
    numbers: list[int] = []
    for token in tokens[3:8]:
        if not _INTEGER.match(token):
            break
        numbers.append(int(token))
    field = dict(enumerate(numbers))
    return SignalSpec(
        file=tokens[0],
        fmt=fmt["fmt"],
        samples_per_frame=int(fmt["spf"] or 1),
        byte_offset=int(fmt["offset"] or 0),
        gain=gain,
        baseline=baseline,
        units=units,
        adc_zero=field.get(1),
        checksum=field.get(3),
        name=" ".join(tokens[3 + len(numbers) :]),
    )


def check_calibrated(spec: SignalSpec, where: Path) -> float:
    """The signal's gain in ADC units per physical unit; a missing or zero gain is refused.

    WFDB reads both as "uncalibrated, assume 200": an amplitude off by the real gain's ratio to 200.
    """
    if spec.gain is None or spec.gain == 0 or not math.isfinite(spec.gain):
        written = "no gain" if spec.gain is None else f"gain {spec.gain:g}"
        raise RecordError(
            QCReason.UNCALIBRATED,
            f"{where.name}: signal {spec.name or spec.file!r} has {written} (WFDB would assume 200 per unit: "
            "uncalibrated amplitude)",
        )
    return spec.gain
