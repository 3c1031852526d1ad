"""Input that lies: every case of the adversarial corpus ends read right, counted under its reason, or refused.

Four kinds of input, each case with its exact outcome (see ``tests/adversarial.py`` for the records):
WFDB records behind a manifest, PhysioNet challenge folders, manifest files themselves, and bad
command lines of the main job. No case may end in a traceback or in a silently wrong value.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.config import IngestConfig
from common.data.ingest import RECORDS_TABLE, REPORT_FILE, IngestResult, ingest
from common.data.readers.challenge import ChallengeSource
from common.data.readers.manifest import ManifestSource
from common.data.store import StoreError

from .adversarial import STORED, Case, challenge_cases, wfdb_cases
from .bad_inputs import _write, ecg

WFDB_CASES = [
    "plain", "gain_zero", "gain_missing", "gain_200_for_1000", "no_units_in_uv", "micro_b5_utf8", "micro_3bc_utf8",
    "micro_b5_latin1", "volts_as_mv", "no_rate", "negative_rate", "rate_with_counter", "rate_500", "minus_avr",
    "avr_upper", "extra_channel_uncalibrated", "eleven_and_a_duplicate", "baseline_offset", "fmt_212",
    "multi_frequency", "crlf_and_comments", "listed_with_extension", "copy_of_plain", "loop", "a_folder",
    "age_decimal_comma",
    "age_with_unit", "age_top_coded", "age_words", "age_300_not_ptbxl", "sex_word", "sex_unknown_word", "sex_gibberish",
]  # fmt: skip
CHALLENGE_CASES = [f"C{i:04d}" for i in range(1, 21)]


def _quiet(*_: object) -> None:
    pass


def _outcomes(result: IngestResult) -> dict[str, str]:
    records = pd.read_csv(result.path / RECORDS_TABLE, dtype=str)
    return {r.rsplit("/", 1)[-1]: s for r, s in zip(records["record_id"], records["status"], strict=True)}


def _stored(result: IngestResult, name: str) -> tuple[np.ndarray, pd.Series]:
    for store in result.stores:
        ids = store.metadata["record_id"].str.rsplit("/", n=1).str[-1]
        hits = np.flatnonzero(ids.to_numpy() == name)
        if len(hits):
            return np.asarray(store.signals()[hits[0]]), store.metadata.iloc[hits[0]]
    raise AssertionError(f"{name} is not in any store")


def _assert_outcome(case: Case, result: IngestResult) -> None:
    outcomes = _outcomes(result)
    assert outcomes[case.name] == str(case.expected), f"{case.name}: {outcomes[case.name]} != {case.expected}"
    if case.expected == STORED and case.check is not None:
        case.check(*_stored(result, case.name))


@pytest.fixture(scope="module")
def wfdb_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Case], IngestResult]:
    folder = tmp_path_factory.mktemp("wfdb-corpus")
    cases = {c.name: c for c in wfdb_cases(folder / "records")}
    rows = [
        {"record": f"records/{c.name}", "patient_id": f"p-{c.name}", "site": "corpus", "age": 60, "sex": "M",
         "label": 0, **c.row}
        for c in cases.values()
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    result = ingest(ManifestSource(path=folder / "manifest.csv"), IngestConfig(), folder / "data", workers=2,
                    progress=False, echo=_quiet)  # fmt: skip
    return cases, result


def test_the_wfdb_corpus_is_the_one_listed_and_every_record_is_accounted_for(
    wfdb_corpus: tuple[dict[str, Case], IngestResult],
) -> None:
    cases, result = wfdb_corpus

    assert sorted(cases) == sorted(WFDB_CASES)
    outcomes = _outcomes(result)
    assert sorted(outcomes) == sorted(WFDB_CASES)  # every manifest row is in the per-record report once
    report = result.report
    assert report.read["corpus"] == len(cases) == report.stored["corpus"] + sum(report.skipped["corpus"].values())


@pytest.mark.parametrize("name", WFDB_CASES)
def test_wfdb_record_ends_read_right_or_counted(wfdb_corpus: tuple[dict[str, Case], IngestResult], name: str) -> None:
    cases, result = wfdb_corpus

    _assert_outcome(cases[name], result)


@pytest.fixture(scope="module")
def challenge_corpus(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, Case], IngestResult, list[logging.LogRecord]]:
    root = tmp_path_factory.mktemp("challenge-corpus")
    cases = {c.name: c for c in challenge_cases(root)}
    handler = _Collect()
    logging.getLogger("common.data.readers.challenge").addHandler(handler)
    try:
        result = ingest(ChallengeSource(root=root), IngestConfig(), root.parent / f"{root.name}-data", workers=1,
                        progress=False, echo=_quiet)  # fmt: skip
    finally:
        logging.getLogger("common.data.readers.challenge").removeHandler(handler)
    return cases, result, handler.records


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_challenge_corpus_is_the_one_listed_and_hidden_copies_are_not_read(
    challenge_corpus: tuple[dict[str, Case], IngestResult, list[logging.LogRecord]],
) -> None:
    cases, result, logged = challenge_corpus

    assert sorted(cases) == CHALLENGE_CASES
    assert sorted(_outcomes(result)) == CHALLENGE_CASES  # the copy under .ipynb_checkpoints is not a record
    assert any("hidden" in r.getMessage() and "1 header" in r.getMessage() for r in logged)


@pytest.mark.parametrize("name", CHALLENGE_CASES)
def test_challenge_record_ends_read_right_or_counted(
    challenge_corpus: tuple[dict[str, Case], IngestResult, list[logging.LogRecord]], name: str
) -> None:
    cases, result, _ = challenge_corpus

    _assert_outcome(cases[name], result)


# --------------------------------------------------------------------------------------------- manifest files


def _manifest_folder(tmp: Path, rows: list[dict[str, object]], n_records: int = 4) -> Path:
    for i in range(n_records):
        _write(tmp, f"r{i}", ecg(200 + i))
    path = tmp / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _row(i: int, **kw: object) -> dict[str, object]:
    return {"record": f"r{i}", "patient_id": f"p{i}", "site": "hosp_a", "age": 60, "sex": "M", "label": i % 2, **kw}


def _ingest(path: Path, data: Path, **source: object) -> IngestResult:
    return ingest(ManifestSource(path=path, **source), IngestConfig(), data, workers=1, progress=False, echo=_quiet)  # type: ignore[arg-type]


MANIFEST_ERRORS = [
    ("header_only", lambda t: _header_only(t), ValueError, r"lists no records \(it has a header line only\)"),
    ("empty_file", lambda t: _write_text(t, ""), ValueError, r"manifest .* is empty"),
    ("a_folder", lambda t: _folder(t), ValueError, r"is not a file"),
    ("missing", lambda t: t / "nowhere.csv", FileNotFoundError, r"manifest .*nowhere\.csv does not exist"),
    ("latin1", lambda t: _latin1(t), ValueError, r"is not UTF-8 text \(byte 0xf4 on line 2\); save it as UTF-8"),
    ("missing_column", lambda t: _csv(t, [{"record": "r0", "site": "a"}]), ValueError, r"lacks the required column"),
    ("reserved_fold", lambda t: _csv(t, [_row(0, fold=1)]), ValueError, r"reserved column\(s\) \['fold'\]"),
    ("site_dotdot", lambda t: _csv(t, [_row(0, site="../escape")]), ValueError, r"rename \['\.\./escape'\]"),
    ("site_hidden", lambda t: _csv(t, [_row(0, site=".hidden")]), ValueError, r"rename \['\.hidden'\]"),
    ("site_slash", lambda t: _csv(t, [_row(0, site="a/b")]), ValueError, r"rename \['a/b'\]"),
    ("sex_numeric", lambda t: _csv(t, [_row(0, sex=1), _row(1, sex=2)]), ValueError, r"--set data\.sex-codes=iso5218"),
    ("label_yes", lambda t: _csv(t, [_row(0, label="yes")]), ValueError, r"label must be 0, 1 or empty"),
    ("conflicting_duplicate", lambda t: _csv(t, [_row(0), _row(0, label=1)]), ValueError, r"more than once with"),
    ("semicolons", lambda t: _write_text(t, "record;patient_id;site;age;sex;label\nr0;p0;a;60;M;0\n"), ValueError,
     r"lacks the required column"),
]  # fmt: skip


def _csv(tmp: Path, rows: list[dict[str, object]]) -> Path:
    return _manifest_folder(tmp, rows)


def _write_text(tmp: Path, text: str) -> Path:
    (tmp / "m.csv").write_text(text)
    return tmp / "m.csv"


def _header_only(tmp: Path) -> Path:
    return _write_text(tmp, "record,patient_id,site,age,sex,label\n")


def _folder(tmp: Path) -> Path:
    (tmp / "m.csv").mkdir()
    return tmp / "m.csv"


def _latin1(tmp: Path) -> Path:
    (tmp / "m.csv").write_bytes("record,patient_id,site,age,sex,label\nr0,p0,Hôpital_é,60,M,0\n".encode("latin-1"))
    return tmp / "m.csv"


@pytest.mark.parametrize(("name", "make", "error", "message"), MANIFEST_ERRORS, ids=[m[0] for m in MANIFEST_ERRORS])
def test_a_manifest_that_cannot_be_read_right_is_a_clear_error(
    tmp_path: Path, name: str, make: object, error: type[Exception], message: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]

    with pytest.raises(error, match=message):
        _ingest(path, tmp_path / "data")
    assert not any((tmp_path / "data").glob("*/*/signals.npy"))  # nothing half-written, nothing outside


def test_iso_sex_codes_are_read_when_declared(tmp_path: Path) -> None:
    path = _csv(tmp_path, [_row(0, sex=1), _row(1, sex=2), _row(2, sex=0), _row(3, sex=2)])

    (store,) = _ingest(path, tmp_path / "data", sex_codes="iso5218").stores

    assert store.metadata.set_index("patient_id")["sex"].to_dict() == {"p0": "M", "p1": "F", "p2": "", "p3": "F"}


def test_a_manifest_strat_fold_and_units_column_are_metadata_not_folds_or_units(tmp_path: Path) -> None:
    rows = [_row(i, strat_fold=1 + i % 5, units="mV") for i in range(40)]
    for i in range(40):
        rows[i]["record"] = f"r{i % 4}_{i}"
    for i in range(40):
        _write(tmp_path, f"r{i % 4}_{i}", ecg(300 + i))
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)

    (store,) = _ingest(tmp_path / "m.csv", tmp_path / "data").stores

    assert set(store.metadata["split"]) == {"train", "val", "test"}  # patient splits, not folds 1-5 as PTB-XL's
    assert sorted(set(store.metadata["strat_fold"])) == [1, 2, 3, 4, 5] and set(store.metadata["units"]) == {"mV"}


def test_an_unusable_hospital_is_left_out_and_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [_row(i) for i in range(4)] + [_row(i, site="hosp_b", label="", patient_id=f"b{i}", record=f"r{i}")
                                          for i in range(4)]  # fmt: skip
    rows = [{**r, "record_id": f"{r['site']}-{r['record']}"} for r in rows]
    path = _csv(tmp_path, rows)

    result = ingest(ManifestSource(path=path), IngestConfig(), tmp_path / "data", workers=1, progress=False)

    assert [s.site for s in result.stores] == ["hosp_a"]
    assert result.report.unusable == {"hosp_b": "4 missing_label"}
    assert (
        "!! hospital 'hosp_b' was left out: none of its records is usable (4 missing_label)" in capsys.readouterr().out
    )


def test_no_usable_hospital_at_all_is_an_error_with_a_readable_table(tmp_path: Path) -> None:
    path = _csv(tmp_path, [_row(i, label="") for i in range(4)])

    with pytest.raises(StoreError, match=r"no hospital has a usable record") as err:
        _ingest(path, tmp_path / "data")
    assert "Counter(" not in str(err.value) and "missing_label" in str(err.value)


def test_a_hospital_without_positives_is_stored_with_a_warning(tmp_path: Path) -> None:
    path = _csv(tmp_path, [_row(i, label=0) for i in range(4)])

    result = _ingest(path, tmp_path / "data")

    assert any("no AMI positive in its train split" in w for w in result.report.warnings)
    report = pd.read_json(result.path / REPORT_FILE, typ="series")
    assert report["warnings"] == result.report.warnings


def test_byte_identical_records_under_other_names_are_counted_once(tmp_path: Path) -> None:
    import shutil

    _write(tmp_path, "orig", ecg(400))
    shutil.copy(tmp_path / "orig.dat", tmp_path / "renamed.dat")
    (tmp_path / "renamed.hea").write_text((tmp_path / "orig.hea").read_text().replace("orig", "renamed"))
    rows = [_row(0, record="orig", patient_id="pa"), _row(1, record="renamed", patient_id="pb", site="hosp_b")]
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)

    result = _ingest(tmp_path / "m.csv", tmp_path / "data")

    assert _outcomes(result) == {"orig": "stored", "renamed": "duplicate_record"}
    assert "the same signal as orig" in pd.read_csv(result.path / RECORDS_TABLE)["detail"].fillna("").str.cat()


# ------------------------------------------------------------------------------------------------ command line

CLI_CASES = [
    (["--clients", "50", "--n-ecgs", "200"], r"leaves one with 1 ECGs; each needs at least 10"),
    (["--clients", "2", "--n-ecgs", "20"], r"leaves one with 8 ECGs; each needs at least 10"),
    (["--clients", "1"], r"data\.cohort\.n-sites \(--clients\): Input should be greater than or equal to 2"),
    (["--resume", "{tmp}/nothing"], r"holds no federated checkpoint"),
    (["--protocol", "loho", "--resume", "{tmp}"], r"use it with the GAH protocol"),
    (["--out", "/proc/fedami/out"], r"cannot write the output folder /proc/fedami/out"),
    (["--data", "manifest", "--manifest", "{tmp}/missing.csv"], r"manifest .*missing\.csv does not exist"),
    (["--data", "manifest", "--manifest", "{tmp}"], r"is not a file"),
    (["--data", "manifest"], r"data\.path \(--manifest\): Field required"),
    (["--data", "challenge", "--challenge-root", "{tmp}/none"], r"challenge root .* is not a folder"),
    (["--data", "ptbxl"], r"data\.root \(--ptbxl-root\): Field required"),
    (["--ptbxl-root", "/x"], r"--ptbxl-root applies to --data ptbxl, not --data synthetic"),
    (["--arms", ""], r"arms \(--arms\): Tuple should have at least 1 item"),
    (["--arms", "federated,federated"], r"arms repeat"),
    (["--arms", "pooled,central"], r"Input should be 'federated', 'pooled' or 'local'"),
    (["--model", "nope"], r"unknown model 'nope'; known models: bilstm, cnn1d"),
    (["--strategy", "fedsgd"], r"unknown strategy 'fedsgd'; known: fedavg"),
    (["--rounds", "0"], r"federated\.rounds \(--rounds\): Input should be greater than or equal to 1"),
    (["--difficulty", "2"], r"Input should be less than or equal to 1"),
    (["--lr", "-1"], r"train\.lr \(--lr\): Input should be greater than 0"),
    (["--local-batch-size", "1"], r"Input should be greater than or equal to 2"),
    (["--boot", "5"], r"n-boot \(--boot\): Input should be greater than or equal to 10"),
    (["--set", "federated.round=5"], r"did you mean 'federated\.rounds'"),
    (["--seed", "-1"], r"data\.cohort\.seed \(--seed\): Input should be greater than or equal to 0"),
    (["--data", "manifest", "--manifest", "{tmp}/m.csv", "--notch", "-50"], r"notch-hz \(--notch\): Input should be"),
    (["--data", "manifest", "--manifest", "{tmp}/m.csv", "--set", "data.ingest.preprocess.bandpass-hz=40,0.5"],
     r"bandpass_hz must be \(low, high\) with 0 < low < high"),
    (["--set", "train.lr"], r"--set: expected KEY=VALUE"),
    (["--set", "train.loss=hinge"], r"train\.loss \(--loss\): Input should be 'bce' or 'focal' \(got 'hinge'\)"),
    (["--data", "manifest", "--manifest", "{tmp}/m.csv", "--normalise", "sideways"], r"invalid choice: 'sideways'"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), CLI_CASES, ids=[" ".join(a) or "empty" for a, _ in CLI_CASES])
def test_a_bad_command_line_is_a_clear_error_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    from sim.run import main

    data = tmp_path / "data"
    out = [] if "--out" in argv else ["--out", str(tmp_path / "out")]
    args = [a.format(tmp=tmp_path) for a in argv] + ["--data-dir", str(data), *out]

    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own refusals
        code = int(exit_.code or 0)

    err = capsys.readouterr().err
    assert code == 2
    assert re.search(message, err), err
    assert "Traceback" not in err
    assert not data.exists() or not any(data.iterdir())  # nothing generated or ingested


def test_a_training_hospital_without_positives_stops_the_run_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sim.run import main

    rows = [_row(i, site="hosp_a", label=0, patient_id=f"a{i}") for i in range(4)]
    rows += [_row(i, site="hosp_b", label=i % 2, patient_id=f"b{i}", record_id=f"b{i}") for i in range(4)]
    path = _csv(tmp_path, rows)

    code = main(["--data", "manifest", "--manifest", str(path), "--arms", "pooled", "--data-dir", str(tmp_path / "d"),
                 "--out", str(tmp_path / "out")])  # fmt: skip

    err = capsys.readouterr().err
    assert code == 2 and "training hospital 'hosp_a' has 0 AMI positives" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "config.json").exists()
