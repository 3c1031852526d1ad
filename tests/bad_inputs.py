"""A corpus of real-world faults, made with ``wfdb`` writing and byte-level corruption.

:func:`build_corpus` writes WFDB records into a folder and a manifest CSV (the format a hospital
uses) whose ``expected`` column says what ingest must do with each record: ``stored`` or the
:class:`~common.data.readers.base.QCReason` value it is counted under.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from common.data.leads import LEADS
from common.data.readers.base import QCReason

FS = 250
DUR_S = 10.0


def ecg(seed: int, n: int | None = None, fs: int = FS) -> np.ndarray:
    """A plausible 12-lead ECG ``(T, 12)`` in mV: spiky beats plus noise, with III = II - I."""
    rng = np.random.default_rng(seed)
    n = n or int(DUR_S * fs)
    t = np.arange(n) / fs
    beats = np.exp(-0.5 * (((t % 0.8) - 0.4) / 0.012) ** 2) + 0.25 * np.exp(-0.5 * (((t % 0.8) - 0.65) / 0.05) ** 2)
    x = beats[:, None] * rng.uniform(0.4, 1.5, 12)[None, :] + rng.normal(0, 0.02, (n, 12))
    x[:, 2] = x[:, 1] - x[:, 0]
    return x


def _write(folder: Path, name: str, sig: np.ndarray, *, fs: float = FS, names: list[str] | None = None,
           units: list[str] | None = None, gain: float = 1000.0) -> Path:  # fmt: skip
    names = names or list(LEADS)
    wfdb.wrsamp(
        name,
        fs=fs,
        units=units or ["mV"] * len(names),
        sig_name=names,
        p_signal=sig,
        fmt=["16"] * len(names),
        adc_gain=[gain] * len(names),
        baseline=[0] * len(names),
        write_dir=str(folder),
    )
    return folder / name


def _edit_header(rec: Path, fn: Callable[[list[str]], list[str]]) -> None:
    hea = rec.with_suffix(".hea")
    hea.write_text("\n".join(fn(hea.read_text().splitlines())) + "\n")


def _corrupt(rec: Path, fn: Callable[[bytes], bytes]) -> None:
    dat = rec.with_suffix(".dat")
    dat.write_bytes(fn(dat.read_bytes()))


def build_corpus(folder: Path) -> pd.DataFrame:
    """Write the corpus; return the manifest (also saved as ``folder / 'manifest.csv'``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []

    def add(
        name: str, expected: str, *, age: object = 60, sex: object = "M", label: object = 0, record: str | None = None
    ) -> None:
        rows.append({"record": record or name, "patient_id": f"p-{name}", "site": "corpus", "age": age, "sex": sex,
                     "label": label, "expected": expected})  # fmt: skip

    stored = "stored"
    # Records that must be stored (some needing normalisation on the way in).
    _write(folder, "good", ecg(0))
    add("good", stored, label=1)
    _write(folder, "good_upper_names", ecg(1), names=[n.upper() for n in LEADS])
    add("good_upper_names", stored)
    _write(folder, "good_microvolts", ecg(2) * 1000, units=["uV"] * 12, gain=1.0)
    add("good_microvolts", stored, label=1)
    reordered = [*reversed(LEADS), "VX", "VY", "VZ"]
    sig15 = np.concatenate([ecg(3)[:, ::-1], ecg(33)[:, :3]], axis=1)
    _write(folder, "good_15_leads_reordered", sig15, names=reordered)
    add("good_15_leads_reordered", stored)
    _write(folder, "good_500hz", ecg(4, fs=500), fs=500)
    add("good_500hz", stored)
    _write(folder, "good_short_padded", ecg(5, n=int(8 * FS)))
    add("good_short_padded", stored, label=1)
    _write(folder, "good_long_cropped", ecg(6, n=int(12 * FS)))
    add("good_long_cropped", stored)
    _write(folder, "good_missing_age_sex", ecg(7))
    add("good_missing_age_sex", stored, age="", sex="")

    # Faults, each a distinct way real exports break.
    _write(folder, "no_dat", ecg(10)).with_suffix(".dat").unlink()
    add("no_dat", QCReason.UNREADABLE)
    add("no_header", QCReason.UNREADABLE)  # listed in the manifest, never written
    _corrupt(_write(folder, "truncated_half", ecg(11)), lambda b: b[: len(b) // 2])
    add("truncated_half", QCReason.TRUNCATED)
    _corrupt(_write(folder, "empty_dat", ecg(12)), lambda b: b"")
    add("empty_dat", QCReason.TRUNCATED)
    _write(folder, "garbage_header", ecg(13)).with_suffix(".hea").write_bytes(bytes(range(256)) * 4)
    add("garbage_header", QCReason.UNREADABLE)
    _edit_header(_write(folder, "zero_fs", ecg(14)), lambda ls: [ls[0].replace(f" {FS} ", " 0 ", 1), *ls[1:]])
    add("zero_fs", QCReason.UNKNOWN_FS)
    _write(folder, "fs_20hz", ecg(15, n=200, fs=20), fs=20)
    add("fs_20hz", QCReason.UNKNOWN_FS)
    _corrupt(_write(folder, "flipped_byte", ecg(16)), lambda b: b[:1001] + bytes([b[1001] ^ 0xFF]) + b[1002:])
    add("flipped_byte", QCReason.CHECKSUM)
    _corrupt(_write(folder, "random_bytes", ecg(17)), lambda b: np.random.default_rng(0).bytes(len(b)))
    add("random_bytes", QCReason.CHECKSUM)
    nan_sig = ecg(18)
    nan_sig[500:600, 7] = np.nan
    _write(folder, "nan_samples", nan_sig)
    add("nan_samples", QCReason.NAN)
    nan_lead = ecg(19)
    nan_lead[:, 4] = np.nan
    _write(folder, "nan_lead", nan_lead)
    add("nan_lead", QCReason.NAN)
    flat = ecg(20)
    flat[:, 8] = 0.0
    _write(folder, "flat_lead", flat)
    add("flat_lead", QCReason.FLAT_LEAD)
    _write(folder, "all_flat", np.zeros((int(DUR_S * FS), 12)))
    add("all_flat", QCReason.FLAT_LEAD)
    _write(folder, "eleven_leads", ecg(21)[:, :11], names=list(LEADS[:11]))
    add("eleven_leads", QCReason.MISSING_LEAD)
    _write(folder, "unknown_lead_names", ecg(22), names=[f"X{i}" for i in range(12)])
    add("unknown_lead_names", QCReason.MISSING_LEAD)
    clipped = ecg(23)
    clipped[1000:1150, 1] = 5.0  # 0.6 s pinned at the amplifier's rail
    clipped[:, 2] = clipped[:, 1] - clipped[:, 0]
    _write(folder, "clipped", clipped)
    add("clipped", QCReason.SATURATION)
    _write(folder, "two_seconds", ecg(24, n=2 * FS))
    add("two_seconds", QCReason.TOO_SHORT)
    _write(folder, "odd_units", ecg(25), units=["furlong"] * 12)
    add("odd_units", QCReason.UNKNOWN_UNITS)
    _write(folder, "age_150", ecg(26))
    add("age_150", QCReason.IMPLAUSIBLE_AGE, age=150)
    _write(folder, "age_negative", ecg(27))
    add("age_negative", QCReason.IMPLAUSIBLE_AGE, age=-3)
    _write(folder, "no_label", ecg(28))
    add("no_label", QCReason.MISSING_LABEL, label="")
    _edit_header(
        _write(folder, "header_longer", ecg(29)),
        lambda ls: [ls[0].replace(f" {int(DUR_S * FS)}", f" {int(2 * DUR_S * FS)}"), *ls[1:]],
    )
    add("header_longer", QCReason.TRUNCATED)
    _edit_header(
        _write(folder, "wrong_file_name", ecg(30)),
        lambda ls: [ls[0], *(line.replace("wrong_file_name.dat", "elsewhere.dat") for line in ls[1:])],
    )
    add("wrong_file_name", QCReason.UNREADABLE)
    _edit_header(_write(folder, "no_signals", ecg(31)), lambda ls: [ls[0].replace(" 12 ", " 0 ", 1)])
    add("no_signals", QCReason.MISSING_LEAD)
    rows.append({**rows[0], "expected": QCReason.DUPLICATE})  # the same record listed twice

    manifest = pd.DataFrame(rows)
    manifest["expected"] = manifest["expected"].astype(str)
    manifest.to_csv(folder / "manifest.csv", index=False)
    return manifest
