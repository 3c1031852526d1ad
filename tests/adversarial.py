"""An adversarial input corpus: inputs that lie about their unit, rate, leads, labels, names and paths.

Three input kinds, each case with its exact expected outcome:

* :func:`wfdb_cases`: plain WFDB records behind one manifest; ``stored`` (with a check of what was
  stored) or the :class:`~common.data.readers.base.QCReason` the record is counted under;
* :func:`challenge_cases`: records of a PhysioNet challenge folder, the same way;
* manifests themselves and the command line are built by the tests (``test_adversarial.py``).

The faults are those found in real exports: WFDB's silent defaults (no rate -> 250 Hz, gain 0 or
none -> 200 per unit, a micro sign dropped from ``µV``), inverted leads, transposed ``.mat`` files,
codes written ``164865005.0``, ISO sex codes, ages written ``45,5``, copies under other names.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from common.data.leads import LEAD_INDEX, LEADS
from common.data.readers.base import QCReason

from .bad_inputs import FS, _edit_header, _write, ecg

Check = Callable[[np.ndarray, pd.Series], None]
"""Asserts on a stored record: its stored signal (12, T) and its metadata row."""


@dataclass(frozen=True)
class Case:
    name: str
    expected: str
    """``stored`` or the QC reason (its value) the record must be counted under."""
    row: dict[str, object] = field(default_factory=dict)
    """Manifest fields other than the defaults."""
    check: Check | None = None


STORED = "stored"


def same_signal(true_mv: np.ndarray, fs: float = FS, atol: float = 3e-3) -> Check:
    """The stored signal is the true one, preprocessed: nothing scaled, inverted or scrambled."""
    from common.config import PreprocessConfig
    from common.data.preprocess import preprocess_signal

    def check(stored: np.ndarray, _: pd.Series) -> None:
        expected, _ = preprocess_signal(true_mv.T.astype(np.float32), fs, PreprocessConfig())
        np.testing.assert_allclose(stored, expected, atol=atol)

    return check


def metadata(**want: object) -> Check:
    def check(_: np.ndarray, meta: pd.Series) -> None:
        for key, value in want.items():
            assert meta[key] == value, (key, meta[key], value)

    return check


def _lines(rec: Path) -> list[str]:
    return rec.with_suffix(".hea").read_text().splitlines()


def _set_signal_field(rec: Path, field_index: int, fn: Callable[[str], str]) -> None:
    """Rewrite one whitespace field of every signal line of a header."""

    def edit(lines: list[str]) -> list[str]:
        out = [lines[0]]
        for line in lines[1:]:
            if line.startswith("#"):
                out.append(line)
                continue
            tokens = line.split(" ")
            tokens[field_index] = fn(tokens[field_index])
            out.append(" ".join(tokens))
        return out

    _edit_header(rec, edit)


def wfdb_cases(folder: Path) -> list[Case]:
    """Write the WFDB records into ``folder``; return the cases (the manifest is the tests')."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    base = ecg(100)
    _write(folder, "plain", base)
    cases.append(Case("plain", STORED, {"label": 1}, same_signal(base)))

    # Gains WFDB replaces by 200 per unit without a word.
    _set_signal_field(_write(folder, "gain_zero", ecg(101)), 2, lambda g: "0" + g[g.index("(") :])
    cases.append(Case("gain_zero", QCReason.UNCALIBRATED))
    _set_signal_field(_write(folder, "gain_missing", ecg(102)), 2, lambda g: g[g.index("(") :])  # "(0)/mV"
    cases.append(Case("gain_missing", QCReason.UNCALIBRATED))
    # The early challenge headers: samples at 1000 per mV, the header says 200 (five times too large).
    _set_signal_field(_write(folder, "gain_200_for_1000", ecg(103)), 2, lambda g: g.replace("1000", "200", 1))
    cases.append(Case("gain_200_for_1000", QCReason.IMPLAUSIBLE_AMPLITUDE))

    # Units: absent on a record written in microvolts (WFDB's default is mV: 1000 times too large).
    uv = ecg(104) * 1000
    rec = _write(folder, "no_units_in_uv", uv, units=["uV"] * 12, gain=1.0)
    _set_signal_field(rec, 2, lambda g: g.split("/")[0])
    cases.append(Case("no_units_in_uv", QCReason.IMPLAUSIBLE_AMPLITUDE))
    # The micro sign, as U+00B5 or U+03BC, in UTF-8 or Latin-1: wfdb drops the byte and reads volts.
    for name, sign, encoding in (("micro_b5_utf8", "\u00b5", "utf-8"), ("micro_3bc_utf8", "\u03bc", "utf-8"),
                                 ("micro_b5_latin1", "\u00b5", "latin-1")):  # fmt: skip
        true = ecg(105 + len(cases))
        rec = _write(folder, name, true * 1000, units=["uV"] * 12, gain=1.0)
        hea = rec.with_suffix(".hea")
        hea.write_bytes(hea.read_text().replace("/uV", f"/{sign}V").encode(encoding))
        cases.append(Case(name, STORED, {}, same_signal(true)))
    # Volts written as millivolts: a thousand times too small.
    _write(folder, "volts_as_mv", ecg(110) / 1000, gain=1e6)
    cases.append(Case("volts_as_mv", QCReason.IMPLAUSIBLE_AMPLITUDE))

    # Sampling rates WFDB reads as 250 Hz.
    _edit_header(_write(folder, "no_rate", ecg(111)), lambda ls: [" ".join(ls[0].split()[:2]), *ls[1:]])
    cases.append(Case("no_rate", QCReason.UNKNOWN_FS))
    _edit_header(_write(folder, "negative_rate", ecg(112)), lambda ls: [ls[0].replace(f" {FS} ", f" -{FS} "), *ls[1:]])
    cases.append(Case("negative_rate", QCReason.UNKNOWN_FS))
    _edit_header(
        _write(folder, "rate_with_counter", ecg(113)),
        lambda ls: [ls[0].replace(f" {FS} ", f" {FS}/1000(0) "), *ls[1:]],
    )
    cases.append(Case("rate_with_counter", STORED, {}, same_signal(ecg(113))))
    _write(folder, "rate_500", ecg(114, fs=500), fs=500)
    cases.append(Case("rate_500", STORED, {}, same_signal(ecg(114, fs=500), fs=500)))

    # Leads: an inverted aVR (Cabrera), upper-case and Roman spellings, extra channels.
    true = ecg(115)
    inverted = true.copy()
    inverted[:, LEAD_INDEX["aVR"]] *= -1
    _write(folder, "minus_avr", inverted, names=[("-aVR" if n == "aVR" else n) for n in LEADS])
    cases.append(Case("minus_avr", STORED, {}, same_signal(true)))
    _write(folder, "avr_upper", ecg(116), names=[n.upper() for n in LEADS])
    cases.append(Case("avr_upper", STORED, {}, same_signal(ecg(116))))
    with_extra = np.concatenate([ecg(117), ecg(118)[:, :1]], axis=1)
    rec = _write(folder, "extra_channel_uncalibrated", with_extra, names=[*LEADS, "RESP"])
    _edit_header(rec, lambda ls: [*ls[:-1], ls[-1].replace("1000.0(0)/mV", "0(0)/mV", 1)])
    cases.append(Case("extra_channel_uncalibrated", STORED, {}, same_signal(ecg(117))))
    rec = _write(folder, "eleven_and_a_duplicate", np.concatenate([ecg(119)[:, :11], ecg(119)[:, :1]], axis=1),
                 names=[*LEADS[:11], "X"])  # fmt: skip
    _edit_header(rec, lambda ls: [*ls[:-1], ls[-1].rsplit(" ", 1)[0] + " I"])  # V6 missing, I twice
    cases.append(Case("eleven_and_a_duplicate", QCReason.MISSING_LEAD))

    # Baselines and formats.
    true = ecg(120)
    rec = _write(folder, "baseline_offset", true)
    digital = np.round(true * 1000).astype(np.int16) + 100
    rec.with_suffix(".dat").write_bytes(digital.astype("<i2").tobytes())
    sums = iter(int(v) % 65536 for v in digital.astype(np.int64).sum(axis=0))
    _set_signal_field(rec, 2, lambda g: g.replace("(0)", "(100)"))
    _set_signal_field(rec, 6, lambda _: str(next(sums)))
    cases.append(Case("baseline_offset", STORED, {}, same_signal(true)))
    wfdb.wrsamp("fmt_212", fs=FS, units=["mV"] * 12, sig_name=list(LEADS), p_signal=ecg(121) / 2, fmt=["212"] * 12,
                adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder))  # fmt: skip
    cases.append(Case("fmt_212", STORED, {}, same_signal(ecg(121) / 2)))
    _multi_frequency(folder, "multi_frequency", ecg(122))
    cases.append(Case("multi_frequency", STORED, {}, same_signal(ecg(122))))
    _edit_header(_write(folder, "crlf_and_comments", ecg(123)), lambda ls: ["# exported by X", *ls, "#Age: 61"])
    rec = folder / "crlf_and_comments.hea"
    rec.write_bytes(rec.read_bytes().replace(b"\n", b"\r\n"))
    cases.append(Case("crlf_and_comments", STORED, {}, same_signal(ecg(123))))
    _write(folder, "listed_with_extension", ecg(124))
    cases.append(Case("listed_with_extension", STORED, {"record": "records/listed_with_extension.dat"},
                      same_signal(ecg(124))))  # fmt: skip

    # Copies: the same bytes under another name.
    copy = folder / "copy_of_plain"
    shutil.copy(folder / "plain.dat", copy.with_suffix(".dat"))
    copy.with_suffix(".hea").write_text((folder / "plain.hea").read_text().replace("plain", "copy_of_plain"))
    cases.append(Case("copy_of_plain", QCReason.DUPLICATE, {"patient_id": "p-someone-else"}))

    # Paths that are no record: a symbolic-link loop, a folder named like a header.
    (folder / "loop.hea").symlink_to(folder / "loop.hea")
    cases.append(Case("loop", QCReason.UNREADABLE))
    (folder / "a_folder.hea").mkdir()
    cases.append(Case("a_folder", QCReason.UNREADABLE))

    # Demographics written as people write them.
    _write(folder, "age_decimal_comma", ecg(125))
    cases.append(Case("age_decimal_comma", STORED, {"age": "45,5"}, metadata(age=45.5)))
    _write(folder, "age_with_unit", ecg(126))
    cases.append(Case("age_with_unit", STORED, {"age": "45 y"}, metadata(age=45.0)))
    _write(folder, "age_top_coded", ecg(127))
    cases.append(Case("age_top_coded", STORED, {"age": "90+"}, metadata(age=90.0)))
    _write(folder, "age_words", ecg(128))
    cases.append(Case("age_words", QCReason.UNREADABLE_AGE, {"age": "forty-five"}))
    _write(folder, "age_300_not_ptbxl", ecg(129))
    cases.append(Case("age_300_not_ptbxl", QCReason.IMPLAUSIBLE_AGE, {"age": 300}))
    _write(folder, "sex_word", ecg(130))
    cases.append(Case("sex_word", STORED, {"sex": "Female"}, metadata(sex="F")))
    _write(folder, "sex_unknown_word", ecg(131))
    cases.append(Case("sex_unknown_word", STORED, {"sex": "unknown"}, metadata(sex="")))
    _write(folder, "sex_gibberish", ecg(132))
    cases.append(Case("sex_gibberish", QCReason.UNREADABLE_SEX, {"sex": "xx"}))
    return cases


def _multi_frequency(folder: Path, name: str, sig: np.ndarray) -> None:
    """Twelve leads at the frame rate and a pacing channel at twice it: a valid multi-frequency record."""
    n = len(sig)
    expanded = [sig[:, i] for i in range(12)] + [np.repeat(np.sin(np.arange(n) / 5), 2) * 0.3]
    rec = wfdb.Record(
        record_name=name, n_sig=13, fs=FS, sig_len=n, e_p_signal=expanded, samps_per_frame=[1] * 12 + [2],
        sig_name=[*LEADS, "PACE"], units=["mV"] * 13, fmt=["16"] * 13, adc_gain=[1000.0] * 13, baseline=[0] * 13,
    )  # fmt: skip
    rec.e_d_signal = rec.adc(expanded=True)
    rec.set_d_features(expanded=True)
    rec.set_defaults()
    rec.wrsamp(expanded=True, write_dir=str(folder))


# -------------------------------------------------------------------------------------------------- challenge


def write_challenge(
    root: Path,
    name: str,
    digital: np.ndarray,
    *,
    comments: tuple[str, ...] = (),
    gain: str = "1000",
    units: str = "mV",
    transpose: bool = False,
    checksums: bool = True,
    fs: int = 500,
) -> Path:
    """A challenge record: ``name.mat`` (MATLAB v4, int16 ``val``) and ``name.hea``; returns the record path."""
    root.mkdir(parents=True, exist_ok=True)
    n_sig, n = digital.shape
    matrix = digital.T if transpose else digital  # stored column-major: (signals x samples) interleaves
    rows, cols = matrix.shape
    header = np.array([30, rows, cols, 0, 4], "<i4").tobytes() + b"val\x00"
    (root / f"{name}.mat").write_bytes(header + np.asfortranarray(matrix).astype("<i2").tobytes(order="F"))
    lines = [f"{name} {n_sig} {fs} {n}"]
    for i, lead in enumerate(LEADS):
        checksum = int(digital[i].astype(np.int64).sum()) % 65536
        # without checksums real headers leave out checksum and block size and go on with the lead name
        tail = f"{checksum} 0 {lead}" if checksums else lead
        lines.append(f"{name}.mat 16+24 {gain}/{units} 16 0 {int(digital[i, 0])} {tail}")
    (root / f"{name}.hea").write_text("\n".join([*lines, *comments]) + "\n", encoding="utf-8")
    return root / name


def challenge_cases(root: Path) -> list[Case]:
    """Write the challenge records under ``root/site_a``; return the cases (ingested with label ``mi``)."""
    site = root / "site_a"
    cases: list[Case] = []

    def digital(seed: int) -> np.ndarray:
        return np.round(ecg(seed, fs=500).T * 1000).astype(np.int16)  # 1 uV steps at 1000 per mV

    def true(seed: int) -> np.ndarray:
        return digital(seed).T / 1000.0

    dx_mi = "#Dx: 164865005"
    write_challenge(site, "C0001", digital(1), comments=("#Age: 70", "#Sex: Male", dx_mi))
    cases.append(Case("C0001", STORED, {}, lambda s, m: (same_signal(true(1), 500)(s, m), metadata(label=1)(s, m))))
    male = ("#Age: 70", "#Sex: Male", dx_mi)
    write_challenge(site, "C0002", digital(2), comments=male, transpose=True, checksums=False)
    cases.append(Case("C0002", STORED, {}, same_signal(true(2), 500)))
    write_challenge(site, "C0003", digital(3), comments=("#Age: 70", "#Sex: Male", dx_mi), transpose=True)
    cases.append(Case("C0003", STORED, {}, same_signal(true(3), 500)))
    rec = write_challenge(site, "C0004", digital(4), comments=("#Dx: 59118001",))
    mat = rec.with_suffix(".mat")
    mat.write_bytes(mat.read_bytes()[:20] + mat.read_bytes()[20:] + b"\x00" * 64)  # still a 12 x n matrix
    cases.append(Case("C0004", STORED, {}, metadata(label=0)))
    rec = write_challenge(site, "C0005", digital(5), comments=("#Dx: 59118001",))
    raw = bytearray(rec.with_suffix(".mat").read_bytes())
    raw[4:8] = np.array([11], "<i4").tobytes()  # 11 rows: matches neither orientation
    rec.with_suffix(".mat").write_bytes(bytes(raw))
    cases.append(Case("C0005", QCReason.UNREADABLE))
    write_challenge(site, "C0006", digital(6), comments=("#Dx: 164865005.0,59118001",))
    cases.append(Case("C0006", STORED, {}, metadata(label=1)))
    write_challenge(site, "C0007", digital(7), comments=("#Dx: 164865005 (MI)",))
    cases.append(Case("C0007", STORED, {}, metadata(label=1)))
    write_challenge(site, "C0008", digital(8), comments=("#Dx: 59118001, myocardial infarction",))
    cases.append(Case("C0008", QCReason.UNREADABLE_LABEL))
    write_challenge(site, "C0009", digital(9), comments=("#Dx: 59118001, 164865005 (MI), nonsense",))
    cases.append(Case("C0009", STORED, {}, metadata(label=1)))  # a readable MI code decides
    write_challenge(site, "C0010", digital(10), comments=("#Dx:",))
    cases.append(Case("C0010", QCReason.MISSING_LABEL))
    write_challenge(site, "C0011", digital(11), comments=("#Sex: 1", "#Dx: 59118001"))
    cases.append(Case("C0011", QCReason.UNREADABLE_SEX))
    write_challenge(site, "C0012", digital(12), comments=("#Age: 45,5", "#Sex: Female", "#Dx: 59118001"))
    cases.append(Case("C0012", STORED, {}, metadata(age=45.5, sex="F")))
    write_challenge(site, "C0013", digital(13), comments=("#Age: NaN", "#Dx: 59118001"))
    cases.append(Case("C0013", STORED, {}, lambda s, m: assert_nan(m["age"])))
    write_challenge(site, "C0014", digital(14), comments=("#Dx: 59118001",), gain="200")  # early release
    cases.append(Case("C0014", QCReason.IMPLAUSIBLE_AMPLITUDE))
    write_challenge(site, "C0015", digital(15), comments=("#Dx: 59118001",), gain="0")
    cases.append(Case("C0015", QCReason.UNCALIBRATED))
    write_challenge(site, "C0016", np.round(true(16).T * 1e6 / 1000).astype(np.int16), comments=("#Dx: 59118001",),
                    gain="1", units="\u00b5V")  # fmt: skip
    cases.append(Case("C0016", STORED, {}, same_signal(np.round(true(16) * 1000) / 1000, 500)))
    write_challenge(site, "C0017", digital(17), comments=("#Dx: 59118001",))
    (site / "C0017.mat").unlink()
    cases.append(Case("C0017", QCReason.UNREADABLE))
    (site / "C0018.hea").symlink_to(site / "C0018.hea")
    cases.append(Case("C0018", QCReason.UNREADABLE))
    rec = write_challenge(site, "C0019", digital(19), comments=("#Dx: 59118001",))
    _edit_header(rec, lambda ls: [" ".join(ls[0].split()[:2]), *ls[1:]])
    cases.append(Case("C0019", QCReason.UNKNOWN_FS))
    write_challenge(site, "C0020", digital(20), comments=("#Age: 300", "#Dx: 59118001"))
    cases.append(Case("C0020", STORED, {}, metadata(age=90.0)))  # PTB-XL's top code, as the challenge carries it
    # A hidden folder (notebook checkpoints, editor backups) holds copies: never read as a hospital's.
    write_challenge(root / "site_a" / ".ipynb_checkpoints", "C0001", digital(1), comments=(dx_mi,))
    return cases


def assert_nan(value: object) -> None:
    assert isinstance(value, float) and np.isnan(value), value
