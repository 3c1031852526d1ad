"""Ingest end to end: the bad-input corpus, a synthetic cohort through the PTB-XL reader, caching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.config import IngestConfig, PreprocessConfig
from common.data.arrays import load_split, site_train_stats
from common.data.ingest import REPORT_FILE, REPORT_TABLE, SETTINGS_FILE, check_positives, ingest
from common.data.preprocess import bandpass, preprocess_signal
from common.data.readers.manifest import ManifestSource
from common.data.readers.ptbxl import PtbxlSource
from common.data.store import SiteStore, StoreError
from common.data.wfdb_export import export_wfdb

from .bad_inputs import FS, _write, build_corpus, ecg


def _quiet(*_: object) -> None:
    pass


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, build_corpus(folder)


@pytest.mark.parametrize("workers", [1, 2])
def test_every_faulty_record_is_counted_under_its_reason(
    corpus: tuple[Path, pd.DataFrame], tmp_path: Path, workers: int
) -> None:
    folder, manifest = corpus
    faults = manifest.loc[manifest["expected"] != "stored", "expected"]
    assert faults.nunique() >= 13 and len(faults) >= 20  # distinct faults in the corpus

    result = ingest(
        ManifestSource(path=folder / "manifest.csv"),
        IngestConfig(),
        tmp_path,
        workers=workers,
        progress=False,
        echo=_quiet,
    )

    report = result.report
    assert report.skipped_total() == faults.value_counts().sort_index().to_dict()
    (store,) = result.stores
    expected_stored = manifest.loc[manifest["expected"] == "stored", "record"].tolist()
    assert sorted(store.metadata["record_id"].str.rsplit("/", n=1).str[-1]) == sorted(expected_stored)
    assert report.read["corpus"] == len(manifest) == report.stored["corpus"] + sum(report.skipped["corpus"].values())
    assert report.padded["corpus"] == 1  # the 8 s record
    assert store.metadata.set_index("record_id")["padded"].sum() == 1
    assert store.signals().shape == (len(expected_stored), 12, 1000)
    assert np.isfinite(store.signals()).all()
    for name in (REPORT_FILE, REPORT_TABLE, SETTINGS_FILE):
        assert (result.path / name).is_file()
    examples = json.loads((result.path / REPORT_FILE).read_text())["examples"]
    assert any("V3" in e for e in examples["flat_lead"])  # the reason names the lead


@pytest.mark.parametrize(
    ("record", "seed"), [("good_microvolts", 2), ("good_upper_names", 1), ("good_15_leads_reordered", 3)]
)
def test_units_order_and_spellings_are_normalised_on_the_way_in(
    corpus: tuple[Path, pd.DataFrame], tmp_path: Path, record: str, seed: int
) -> None:
    folder, _ = corpus
    source = ManifestSource(path=folder / "manifest.csv")
    (store,) = ingest(source, IngestConfig(), tmp_path, workers=1, progress=False, echo=_quiet).stores
    row = int(np.flatnonzero(store.metadata["record_id"].str.endswith(record))[0])

    expected, _ = preprocess_signal(ecg(seed).T, FS, PreprocessConfig())

    np.testing.assert_allclose(store.signals()[row], expected, atol=2e-3)  # 1 µV ADC steps, filtered


def test_second_ingest_is_reused_and_a_change_rebuilds(corpus: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    folder, _ = corpus
    source = ManifestSource(path=folder / "manifest.csv")

    first = ingest(source, IngestConfig(), tmp_path, workers=1, progress=False, echo=_quiet)
    second = ingest(source, IngestConfig(), tmp_path, workers=1, progress=False, echo=_quiet)
    other = ingest(
        source, IngestConfig(preprocess=PreprocessConfig(notch_hz=50)), tmp_path, workers=1, progress=False, echo=_quiet
    )

    assert not first.cached and second.cached and second.path == first.path
    assert second.report.to_dict() == first.report.to_dict()
    assert other.path != first.path and not other.cached


def test_a_site_with_nothing_usable_is_an_error_naming_it(tmp_path: Path) -> None:
    flat = ecg(1)
    flat[:, 5] = 0
    _write(tmp_path, "only", flat)
    pd.DataFrame(
        [{"record": "only", "patient_id": "p", "site": "lonely_hospital", "age": 50, "sex": "F", "label": 1}]
    ).to_csv(tmp_path / "m.csv", index=False)

    with pytest.raises(StoreError, match="lonely_hospital"):
        ingest(
            ManifestSource(path=tmp_path / "m.csv"),
            IngestConfig(),
            tmp_path / "data",
            workers=1,
            progress=False,
            echo=_quiet,
        )
    assert not any((tmp_path / "data").glob("*/lonely_hospital"))


def test_synthetic_cohort_round_trips_through_the_ptbxl_reader(tiny_cohort: list[SiteStore], tmp_path: Path) -> None:
    site = tiny_cohort[2]  # the 100 Hz hospital
    export_wfdb(site, tmp_path / "ptbxl")

    source = PtbxlSource(root=tmp_path / "ptbxl", rate=100, label="acute")
    result = ingest(source, IngestConfig(), tmp_path / "data", workers=1, progress=False, echo=_quiet)

    (store,) = result.stores
    assert result.report.skipped_total() == {}
    # acute = the synthetic AMI label; "mi" also counts old infarcts (a mimic), as PTB-XL's MI class does
    assert store.metadata["label"].tolist() == site.metadata["label"].tolist()
    any_mi = PtbxlSource(root=tmp_path / "ptbxl", rate=100, label="mi").index()["label"].to_numpy()
    assert (any_mi >= site.metadata["label"].to_numpy()).all()
    assert (any_mi > site.metadata["label"].to_numpy()).sum() == (site.metadata["mimic"] == "old_mi").sum() - (
        (site.metadata["mimic"] == "old_mi") & (site.metadata["label"] == 1)
    ).sum()
    assert (store.metadata["split"] == site.metadata["split"]).all()  # strat_fold 9/10 carry val/test
    expected = bandpass(np.asarray(site.signals()), 100)
    np.testing.assert_allclose(store.signals(), expected, atol=2e-3)


def test_site_train_standardisation_uses_the_training_split_only(tiny_cohort: list[SiteStore], tmp_path: Path) -> None:
    export_wfdb(tiny_cohort[2], tmp_path / "ptbxl")
    cfg = IngestConfig(preprocess=PreprocessConfig(normalise="site_train"))
    (store,) = ingest(
        PtbxlSource(root=tmp_path / "ptbxl"), cfg, tmp_path / "data", workers=1, progress=False, echo=_quiet
    ).stores

    mean, std = site_train_stats(store)
    train = load_split(store, "train", 100)
    test = load_split(store, "test", 100)

    raw_train = np.asarray(store.signals())[store.metadata["split"].to_numpy() == "train"]
    np.testing.assert_allclose(mean, raw_train.mean(axis=(0, 2)), atol=1e-5)
    np.testing.assert_allclose(std, raw_train.std(axis=(0, 2)), rtol=1e-3)
    np.testing.assert_allclose(np.asarray(train.x).mean(axis=(0, 2)), 0, atol=1e-4)
    assert not np.allclose(np.asarray(test.x).mean(axis=(0, 2)), 0, atol=1e-4)  # test statistics never used


def test_check_positives_names_site_and_split(tiny_cohort: list[SiteStore]) -> None:
    check_positives(tiny_cohort, ["train"])
    no_pos = SiteStore(tiny_cohort[0].path, tiny_cohort[0].manifest, tiny_cohort[0].metadata.assign(label=0))

    with pytest.raises(StoreError, match=r"'hospital_a' has no AMI positives in its test split"):
        check_positives([no_pos], ["test"])


def test_cache_key_follows_the_files(tmp_path: Path) -> None:
    from common.data.ingest import _fingerprint

    _write(tmp_path, "a", ecg(1))
    _write(tmp_path, "a1", ecg(2))  # a neighbour whose name starts the same must not count for "a"
    index = pd.DataFrame({"path": [str(tmp_path / "a")]})
    before = _fingerprint(index)

    (tmp_path / "a1.dat").write_bytes(b"changed")
    same = _fingerprint(index)
    (tmp_path / "a.dat").write_bytes((tmp_path / "a.dat").read_bytes()[:-2])
    after = _fingerprint(index)

    assert before == same != after


def test_cache_key_follows_the_index_columns(corpus: tuple[Path, pd.DataFrame]) -> None:
    # Prepare: the same records, indexed once more with a column a reader has gained (a new auxiliary target)
    from common.data.ingest import ingest_key

    folder, _ = corpus
    source = ManifestSource(path=folder / "manifest.csv")
    index = source.index()

    # Execute
    before, again = ingest_key(source, IngestConfig(), index), ingest_key(source, IngestConfig(), index.copy())
    gained = ingest_key(source, IngestConfig(), index.assign(subclass_LVH=0))

    # Assert: a store ingested before the reader knew the column is never reused without it
    assert before == again != gained
