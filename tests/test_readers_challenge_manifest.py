"""Challenge (.hea + MAT v4 .mat), CSV-manifest and PTB-XL download readers, all offline and small."""

from __future__ import annotations

import io
import math
import pickle
import urllib.error
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.io
import wfdb

from common.data.leads import LEADS
from common.data.readers.base import INDEX_COLUMNS, QCReason, RecordError
from common.data.readers.challenge import (
    ACUTE_CODES,
    ACUTE_MYOCARDIAL_INFARCTION,
    ANTERIOR_MYOCARDIAL_INFARCTION,
    MI_CODES,
    MYOCARDIAL_INFARCTION,
    OLD_MYOCARDIAL_INFARCTION,
    SINUS_RHYTHM,
    ST_ELEVATION,
    ChallengeSource,
    parse_dx,
)
from common.data.readers.download import download_ptbxl
from common.data.readers.manifest import ManifestSource
from common.data.readers.ptbxl import PtbxlSource

RBBB = 59118001  # right bundle branch block: neither MI nor acute

# --------------------------------------------------------------------------- challenge fixtures


def digital(seed: int, n: int = 1000) -> np.ndarray:
    """An int16 ``(12, n)`` signal matrix like the challenge's ``val``."""
    return np.random.default_rng(seed).integers(-3000, 3000, (12, n)).astype(np.int16)


def write_challenge(
    folder: Path,
    name: str,
    val: np.ndarray,
    *,
    fs: float = 500,
    gain: str = "1000/mV",
    names: Sequence[str] = LEADS,
    comments: Sequence[str] = ("#Age: 74", "#Sex: Male", "#Dx: 59118001", "#Rx: Unknown", "#Hx: Unknown"),
    signed_checksum: bool = False,
) -> Path:
    """A challenge record: a real MAT v4 file holding ``val`` and a header in the challenge's style.

    Real challenge headers write the checksum as a *signed* 16-bit number (``-1716``); wfdb writes
    it unsigned, and ``signed_checksum`` picks which.
    """
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(folder / f"{name}.mat"), {"val": val}, format="4")
    lines = [f"{name} {len(names)} {fs:g} {val.shape[1]} 05-Feb-2020 11:39:16"]
    for i, lead in enumerate(names):
        checksum = int(val[i].astype(np.int64).sum()) % 65536
        if signed_checksum and checksum >= 32768:
            checksum -= 65536
        lines.append(f"{name}.mat 16+24 {gain} 16 0 {int(val[i, 0])} {checksum} 0 {lead}")
    (folder / f"{name}.hea").write_text("\n".join([*lines, *comments]) + "\n")
    return folder / name


def dx(*codes: int, age: str = "60", sex: str = "Female") -> tuple[str, ...]:
    return (f"#Age: {age}", f"#Sex: {sex}", "#Dx: " + ",".join(map(str, codes)), "#Rx: Unknown")


@pytest.fixture
def challenge_root(tmp_path: Path) -> Path:
    """Two databases (one with two sub-folders) and a record directly under the root."""
    root = tmp_path / "training"
    cpsc, georgia = root / "cpsc_2018" / "g1", root / "georgia"
    write_challenge(cpsc, "A0001", digital(1), comments=dx(RBBB, MYOCARDIAL_INFARCTION, age="74", sex="Male"))
    write_challenge(cpsc, "Q0001", digital(2), comments=dx(OLD_MYOCARDIAL_INFARCTION, age="NaN"))
    write_challenge(georgia / "g1", "E00001", digital(3), comments=dx(SINUS_RHYTHM, sex="F"))
    acute = dx(ACUTE_MYOCARDIAL_INFARCTION, age="Unknown", sex="Unknown")
    write_challenge(georgia / "g2", "E00002", digital(4), comments=acute)
    write_challenge(georgia / "g2", "E00003", digital(5), comments=dx(ANTERIOR_MYOCARDIAL_INFARCTION))
    write_challenge(root, "X0001", digital(6), comments=("#Age: 300", "#Dx: 164931005"))  # ST elevation, no sex line
    write_challenge(root / "ningbo", "JS00001", digital(7), comments=("#Age: 50", "#Sex: Male", "#Dx: Unknown"))
    return root


# --------------------------------------------------------------------------- challenge


def test_challenge_index_fields(challenge_root: Path) -> None:
    index = ChallengeSource(root=challenge_root).index()

    unread = ["age_unreadable", "sex_unreadable", "label_unreadable", "unreadable"]
    assert list(index.columns) == [*INDEX_COLUMNS, "dx", *unread]
    assert index["record_id"].tolist() == [
        "X0001",
        "cpsc_2018/g1/A0001",
        "cpsc_2018/g1/Q0001",
        "georgia/g1/E00001",
        "georgia/g2/E00002",
        "georgia/g2/E00003",
        "ningbo/JS00001",
    ]
    assert index["patient_id"].tolist() == ["X0001", "A0001", "Q0001", "E00001", "E00002", "E00003", "JS00001"]
    assert index["site"].tolist() == ["challenge", "cpsc_2018", "cpsc_2018", "georgia", "georgia", "georgia", "ningbo"]
    assert index["sex"].tolist() == ["", "M", "F", "F", "", "F", "M"]
    np.testing.assert_array_equal(index["age"].to_numpy(), [90, 74, np.nan, 60, np.nan, 60, 50])
    assert index["path"].tolist() == [str(challenge_root.resolve() / r) for r in index["record_id"]]
    assert index.loc[1, "dx"] == f"{RBBB},{MYOCARDIAL_INFARCTION}"


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        # X0001 STE, A0001 MI+RBBB, Q0001 old MI, E00001 sinus, E00002 acute MI, E00003 anterior MI, JS no Dx
        ("mi", [0, 1, 1, 0, 1, 1, np.nan]),
        ("acute", [1, 0, 0, 0, 1, 0, np.nan]),
    ],
)
def test_challenge_labels_from_dx_codes(challenge_root: Path, label: str, expected: list[float]) -> None:
    index = ChallengeSource(root=challenge_root, label=label).index()

    np.testing.assert_array_equal(index["label"].to_numpy(), expected)
    assert index["label"].dtype == np.float64


def test_challenge_code_sets_are_the_documented_ones() -> None:
    assert sorted(MI_CODES) == [54329005, 57054005, 164865005, 164867002]
    assert sorted(ACUTE_CODES) == [57054005, 164931005] and ST_ELEVATION in ACUTE_CODES
    assert parse_dx(" 164865005, 59118001 ") == {164865005, 59118001}
    assert parse_dx("Unknown") is None and parse_dx("") is None and parse_dx(None) is None


def test_challenge_site_override_and_describe(challenge_root: Path) -> None:
    src = ChallengeSource(root=challenge_root, label="acute", site="hospital_x")

    index = src.index()
    clone = pickle.loads(pickle.dumps(src))

    assert set(index["site"]) == {"hospital_x"}
    assert src.describe() == {
        "kind": "challenge",
        "root": str(challenge_root),
        "label": "acute",
        "site": "hospital_x",
        "positive_codes": [57054005, 164931005],
    }
    assert clone == src


def test_challenge_mat_signal_reads_back_exactly(tmp_path: Path) -> None:
    val = digital(11, n=2500)
    rec = write_challenge(tmp_path, "A0042", val)
    assert np.array_equal(scipy.io.loadmat(str(rec.with_suffix(".mat")))["val"], val)  # a real MAT v4 file
    src = ChallengeSource(root=tmp_path)

    raw = src.load(src.index().iloc[0])

    assert raw.signal.dtype == np.float32 and raw.signal.shape == (12, 2500) and raw.fs == 500
    np.testing.assert_allclose(raw.signal, val / 1000.0, atol=1e-6)  # 1 µV ADC steps, exact
    assert "Dx: 59118001" in raw.comments


def test_challenge_matches_the_same_signal_written_by_wfdb(tmp_path: Path) -> None:
    """The .mat path and wfdb's own .dat writing of the same samples read back identically."""
    val = digital(12, n=800)
    write_challenge(tmp_path / "mat", "A0007", val)
    wfdb.wrsamp(
        "A0007",
        fs=500,
        units=["mV"] * 12,
        sig_name=list(LEADS),
        d_signal=val.T.astype(np.int64),
        fmt=["16"] * 12,
        adc_gain=[1000.0] * 12,
        baseline=[0] * 12,
        write_dir=str(tmp_path),
    )

    from_mat = ChallengeSource(root=tmp_path / "mat")
    from_dat = ManifestSource(path=_manifest(tmp_path, [{"record": "A0007"}]))

    np.testing.assert_array_equal(
        from_mat.load(from_mat.index().iloc[0]).signal, from_dat.load(from_dat.index().iloc[0]).signal
    )


def test_challenge_lead_spellings_order_and_units_are_normalised(tmp_path: Path) -> None:
    val = digital(21)
    order = [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]  # V6 ... I
    upper = [LEADS[i].upper() for i in order]  # AVR, AVL, AVF
    write_challenge(tmp_path / "mv", "R1", val)
    write_challenge(tmp_path / "uv", "R1", val[order] * 5, gain="5/uV", names=upper)  # 5 ADC steps per µV
    mv, uv = ChallengeSource(root=tmp_path / "mv"), ChallengeSource(root=tmp_path / "uv")

    a = mv.load(mv.index().iloc[0]).signal
    b = uv.load(uv.index().iloc[0]).signal

    np.testing.assert_allclose(b, a, atol=1e-7)
    np.testing.assert_allclose(b[LEADS.index("aVR")], val[3] / 1000.0, atol=1e-7)


def test_challenge_variable_lengths_and_rates(tmp_path: Path) -> None:
    write_challenge(tmp_path, "S0001", digital(31, n=5000), fs=1000)
    write_challenge(tmp_path, "I0001", digital(32, n=2570), fs=257)
    write_challenge(tmp_path, "A0001", digital(33, n=9000))
    src = ChallengeSource(root=tmp_path)

    loaded = {row["record_id"]: src.load(row) for row in src.index().to_dict("records")}

    assert {k: (r.signal.shape[1], r.fs) for k, r in loaded.items()} == {
        "S0001": (5000, 1000.0),
        "I0001": (2570, 257.0),
        "A0001": (9000, 500.0),
    }


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda hea: hea.write_text("A0001 twelve leads at 500 Hz\n#Age: 51\n#Sex: Male\n#Dx: 164865005\n"),
        lambda hea: hea.write_bytes(b"\x00\xff\xfe garbage"),
    ],
    ids=["bad_record_line", "binary"],
)
def test_challenge_corrupt_header_is_indexed_and_unreadable(tmp_path: Path, corrupt: Any) -> None:
    write_challenge(tmp_path, "A0000", digital(40))
    corrupt(write_challenge(tmp_path, "A0001", digital(41)).with_suffix(".hea"))
    src = ChallengeSource(root=tmp_path)

    index = src.index()
    with pytest.raises(RecordError) as err:
        src.load(index.iloc[1])

    assert index["record_id"].tolist() == ["A0000", "A0001"]
    assert err.value.reason is QCReason.UNREADABLE
    src.load(index.iloc[0])  # the healthy neighbour still reads


def test_challenge_signed_checksums_as_in_real_headers(tmp_path: Path) -> None:
    val = digital(50)
    write_challenge(tmp_path, "A0001", val, signed_checksum=True)
    assert any(" -" in line.split("mV")[1] for line in (tmp_path / "A0001.hea").read_text().splitlines()[1:])
    src = ChallengeSource(root=tmp_path)

    raw = src.load(src.index().iloc[0])

    np.testing.assert_allclose(raw.signal, val / 1000.0, atol=1e-6)


def test_challenge_root_without_records_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no \*\.hea"):
        ChallengeSource(root=tmp_path).index()
    with pytest.raises(FileNotFoundError, match="not a folder"):
        ChallengeSource(root=tmp_path / "absent").index()


# --------------------------------------------------------------------------- manifest


def write_mv(folder: Path, name: str, sig: np.ndarray, fs: int) -> None:
    """Write ``sig`` (T, 12) in mV as a 12-lead WFDB record (format 16, 1 µV steps)."""
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * 12,
        sig_name=list(LEADS),
        p_signal=sig,
        fmt=["16"] * 12,
        adc_gain=[1000.0] * 12,
        baseline=[0] * 12,
        write_dir=str(folder),
    )


def write_wfdb(folder: Path, name: str, seed: int) -> np.ndarray:
    """A WFDB record (.hea + .dat) of 500 samples at 250 Hz; returns the signal in mV (T, 12)."""
    sig = np.round(np.random.default_rng(seed).normal(0, 0.5, (500, 12)), 3)
    write_mv(folder, name, sig, 250)
    return sig


def _manifest(folder: Path, rows: list[dict[str, Any]], name: str = "manifest.csv") -> Path:
    defaults = {"patient_id": "p1", "site": "hospital_a", "age": 60, "sex": "M", "label": 0}
    path = folder / name
    pd.DataFrame([{**defaults, **r} for r in rows]).to_csv(path, index=False)
    return path


def test_manifest_relative_and_absolute_records_with_extra_columns(tmp_path: Path) -> None:
    rel_sig = write_wfdb(tmp_path / "export" / "2024", "ecg_1", seed=1)
    abs_sig = write_wfdb(tmp_path / "elsewhere", "ecg_2", seed=2)
    absolute = str(tmp_path / "elsewhere" / "ecg_2.hea")  # a trailing extension is tolerated
    path = _manifest(
        tmp_path / "export",
        [
            {"record": "2024/ecg_1", "patient_id": "P-1", "age": 67, "sex": "female", "label": 1},
            {"record": absolute, "patient_id": "P-2", "age": "", "sex": ""},
        ],
    )
    extras = pd.read_csv(path).assign(ward=["cardio", "ed"], bmi=[27.5, np.nan])
    extras.to_csv(path, index=False)
    src = ManifestSource(path=path)

    index = src.index()

    assert list(index.columns) == [*INDEX_COLUMNS, "age_unreadable", "sex_unreadable", "ward", "bmi"]
    assert index["record_id"].tolist() == ["2024/ecg_1", str(tmp_path / "elsewhere" / "ecg_2")]
    assert index["path"].tolist() == [
        str((tmp_path / "export" / "2024" / "ecg_1").resolve()),
        str(tmp_path / "elsewhere" / "ecg_2"),
    ]
    assert index["patient_id"].tolist() == ["P-1", "P-2"] and index["site"].tolist() == ["hospital_a"] * 2
    assert index["sex"].tolist() == ["F", ""] and index["label"].tolist() == [1.0, 0.0]
    np.testing.assert_array_equal(index["age"].to_numpy(), [67.0, np.nan])
    assert index["ward"].tolist() == ["cardio", "ed"]
    np.testing.assert_array_equal(index["bmi"].to_numpy(), [27.5, np.nan])  # numbers stay numbers
    np.testing.assert_allclose(src.load(index.iloc[0]).signal, rel_sig.T, atol=1e-6)
    np.testing.assert_allclose(src.load(index.iloc[1]).signal, abs_sig.T, atol=1e-6)


def test_manifest_record_id_column_and_missing_label(tmp_path: Path) -> None:
    path = _manifest(
        tmp_path,
        [
            {"record": "a", "record_id": "hosp-a-0001", "label": ""},
            {"record": "b", "record_id": "", "label": 1, "patient_id": ""},
        ],
    )

    index = ManifestSource(path=path).index()

    assert index["record_id"].tolist() == ["hosp-a-0001", "b"]
    assert index["patient_id"].tolist() == ["p1", "b"]  # no patient id: the record stands in
    assert math.isnan(index.loc[0, "label"]) and index.loc[1, "label"] == 1.0
    assert "record_id" not in index.columns[len(INDEX_COLUMNS) :]


def test_manifest_missing_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    pd.DataFrame([{"record": "a", "patient_id": "p", "age": 1}]).to_csv(path, index=False)

    with pytest.raises(ValueError, match=r"m\.csv lacks the required column\(s\) \['site', 'sex', 'label'\]"):
        ManifestSource(path=path).index()


def test_manifest_conflicting_duplicate_ids_are_an_error(tmp_path: Path) -> None:
    path = _manifest(tmp_path, [{"record": "a", "label": 1}, {"record": "b"}, {"record": "a", "label": 0}])

    with pytest.raises(ValueError, match=r"record id\(s\) \['a'\] appear more than once with different"):
        ManifestSource(path=path).index()


def test_manifest_identical_duplicate_rows_pass_on_for_the_ingest_to_count(tmp_path: Path) -> None:
    path = _manifest(tmp_path, [{"record": "a", "note": "first"}, {"record": "a", "note": "listed twice"}])

    index = ManifestSource(path=path).index()

    assert index["record_id"].tolist() == ["a", "a"]


def test_manifest_invalid_label_is_an_error(tmp_path: Path) -> None:
    path = _manifest(tmp_path, [{"record": "a", "label": 1}, {"record": "b", "label": "AMI"}])

    with pytest.raises(ValueError, match=r"label must be 0, 1 or empty; line\(s\) 3 have \['AMI'\]"):
        ManifestSource(path=path).index()


def test_manifest_describe_changes_with_its_content(tmp_path: Path) -> None:
    path = _manifest(tmp_path, [{"record": "a"}])
    src = ManifestSource(path=path)
    before = src.describe()

    _manifest(tmp_path, [{"record": "a", "label": 1}])

    assert before["kind"] == "manifest" and before["path"] == str(path)
    assert src.describe()["sha256"] != before["sha256"]
    assert pickle.loads(pickle.dumps(src)) == src


# --------------------------------------------------------------------------- download

BASE = "https://example.org/ptb-xl/1.0.3/"


def fake_ptbxl(tmp_path: Path) -> dict[str, bytes]:
    """A tiny PTB-XL (2 records at 100 and 500 Hz) as URL -> bytes."""
    files: dict[str, bytes] = {}
    rows = []
    for ecg_id in (1, 2):
        for fs, suffix in ((100, "lr"), (500, "hr")):
            rel = f"records{fs}/00000/{ecg_id:05d}_{suffix}"
            sig = np.random.default_rng(ecg_id).normal(0, 0.3, (10 * fs, 12))
            write_mv(tmp_path / "src" / Path(rel).parent, Path(rel).name, sig, fs)
            for ext in (".hea", ".dat"):
                files[BASE + rel + ext] = (tmp_path / "src" / (rel + ext)).read_bytes()
        rows.append(
            {
                "ecg_id": ecg_id,
                "patient_id": 100.0 + ecg_id,
                "age": 56.0,
                "sex": ecg_id % 2,
                "site": 0.0,
                "device": "CS-12",
                "scp_codes": "{'IMI': 100.0}" if ecg_id == 1 else "{'NORM': 100.0}",
                "infarction_stadium1": "",
                "strat_fold": ecg_id,
                "filename_lr": f"records100/00000/{ecg_id:05d}_lr",
                "filename_hr": f"records500/00000/{ecg_id:05d}_hr",
            }
        )
    files[BASE + "ptbxl_database.csv"] = pd.DataFrame(rows).to_csv(index=False).encode()
    files[BASE + "scp_statements.csv"] = b",description,diagnostic_class\nIMI,inferior MI,MI\nNORM,normal ECG,NORM\n"
    files[BASE + "RECORDS"] = b"records100/00000/00001_lr\nrecords100/00000/00002_lr\n"
    return files


class FakeOpener:
    """Serves files from a dict like urlopen; records every URL asked for."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.calls: list[str] = []

    def __call__(self, url: str, timeout: float | None = None) -> io.BytesIO:
        self.calls.append(url)
        if url not in self.files:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)  # type: ignore[arg-type]
        return io.BytesIO(self.files[url])


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_download_ptbxl_layout_is_readable_by_the_ptbxl_reader(tmp_path: Path) -> None:
    files = fake_ptbxl(tmp_path)
    opener = FakeOpener(files)

    dest = download_ptbxl(tmp_path / "ptbxl", rate=100, base_url=BASE, opener=opener, progress=False)

    assert _tree(dest) == [
        "RECORDS",
        "ptbxl_database.csv",
        "records100/00000/00001_lr.dat",
        "records100/00000/00001_lr.hea",
        "records100/00000/00002_lr.dat",
        "records100/00000/00002_lr.hea",
        "scp_statements.csv",
    ]
    assert all((dest / f).read_bytes() == files[BASE + f] for f in _tree(dest))
    assert opener.calls[:3] == [BASE + "ptbxl_database.csv", BASE + "scp_statements.csv", BASE + "RECORDS"]
    assert len(opener.calls) == 7
    src = PtbxlSource(root=dest, rate=100)
    index = src.index()
    assert index["label"].tolist() == [1.0, 0.0]
    assert not any(c.startswith("subclass_") for c in index.columns)  # the table names no subclass: no such column
    assert src.load(index.iloc[0]).signal.shape == (12, 1000)


def test_download_ptbxl_resumes_without_fetching_what_is_there(tmp_path: Path) -> None:
    files = fake_ptbxl(tmp_path)
    dest = download_ptbxl(tmp_path / "ptbxl", rate=500, base_url=BASE, opener=FakeOpener(files), progress=False)
    assert "records500/00000/00002_hr.dat" in _tree(dest) and not (dest / "records100").exists()
    (dest / "records500/00000/00002_hr.dat").unlink()  # interrupted before this file
    (dest / "records500/00000/00001_hr.hea").write_bytes(b"")  # a zero-size leftover
    again = FakeOpener(files)

    download_ptbxl(dest, rate=500, base_url=BASE, opener=again, progress=False)
    download_ptbxl(dest, rate=500, base_url=BASE, opener=(idle := FakeOpener(files)), progress=False)

    assert sorted(again.calls) == [BASE + "records500/00000/00001_hr.hea", BASE + "records500/00000/00002_hr.dat"]
    assert idle.calls == []
    assert all((dest / f).read_bytes() == files[BASE + f] for f in _tree(dest))


def test_download_failure_leaves_no_partial_file(tmp_path: Path) -> None:
    files = fake_ptbxl(tmp_path)
    del files[BASE + "records100/00000/00002_lr.dat"]

    with pytest.raises(urllib.error.HTTPError):
        download_ptbxl(tmp_path / "ptbxl", base_url=BASE, opener=FakeOpener(files), progress=False, workers=1)

    tree = _tree(tmp_path / "ptbxl")
    assert "records100/00000/00002_lr.dat" not in tree and not any(".part" in f for f in tree)
    assert "records100/00000/00001_lr.dat" in tree  # kept, so a rerun resumes
