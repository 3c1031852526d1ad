from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.data.store import (
    MANIFEST_FILE,
    SIGNALS_FILE,
    SiteStore,
    StoreError,
    summarise,
    write_json,
    write_site_store,
)
from common.synthetic.cohort import ensure_synthetic_site

from .conftest import TINY


def _meta(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "record_id": [f"r{i}" for i in range(n)],
            "patient_id": [f"p{i // 2}" for i in range(n)],
            "site": "s1",
            "age": [50.0, np.nan, 70.0, 81.0, 33.0][:n],
            "sex": ["M", "F", "", "M", "F"][:n],
            "label": [0, 1, 0, 0, 1][:n],
            "fs": 100,
            "split": ["train", "train", "val", "test", "test"][:n],
        }
    )


def test_round_trip_keeps_signals_and_metadata(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(5, 12, 50)).astype(np.float32)
    meta = _meta(5)

    store = write_site_store(
        tmp_path / "s1",
        metadata=meta,
        fs=100,
        n_samples=50,
        chunks=[(0, x[:3]), (3, x[3:])],
        key="k",
        source={"kind": "test"},
    )
    reopened = SiteStore.open(tmp_path / "s1")

    assert np.array_equal(np.asarray(reopened.signals()), x)
    assert reopened.manifest == store.manifest
    assert reopened.metadata["record_id"].tolist() == meta["record_id"].tolist()
    assert np.isnan(reopened.metadata["age"].iloc[1])
    assert reopened.metadata["sex"].tolist() == ["M", "F", "", "M", "F"]
    rows = reopened.signals()[:2]
    rows[:] = 0.0  # reads are copies: the store cannot be changed through them
    assert np.array_equal(reopened.signals()[:2], x[:2])


def test_a_store_with_a_missing_record_is_never_left_behind(tmp_path: Path) -> None:
    x = np.zeros((2, 12, 50), np.float32)

    with pytest.raises(StoreError, match="never written"):
        write_site_store(tmp_path / "s1", metadata=_meta(3), fs=100, n_samples=50, chunks=[(0, x)], key="k", source={})

    assert list(tmp_path.iterdir()) == []


def test_wrong_chunk_shape_and_missing_columns_are_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="shape"):
        write_site_store(
            tmp_path / "a",
            metadata=_meta(2),
            fs=100,
            n_samples=50,
            chunks=[(0, np.zeros((2, 8, 50), np.float32))],
            key="k",
            source={},
        )
    with pytest.raises(StoreError, match="lacks columns"):
        write_site_store(
            tmp_path / "b", metadata=_meta(2).drop(columns="sex"), fs=100, n_samples=50, chunks=[], key="k", source={}
        )


def test_open_names_the_missing_file(tmp_path: Path) -> None:
    x = np.zeros((2, 12, 50), np.float32)
    write_site_store(tmp_path / "s", metadata=_meta(2), fs=100, n_samples=50, chunks=[(0, x)], key="k", source={})
    (tmp_path / "s" / MANIFEST_FILE).unlink()

    with pytest.raises(StoreError, match=r"manifest\.json is missing"):
        SiteStore.open(tmp_path / "s")


def test_truncated_signals_are_detected(tmp_path: Path) -> None:
    x = np.zeros((2, 12, 50), np.float32)
    write_site_store(tmp_path / "s", metadata=_meta(2), fs=100, n_samples=50, chunks=[(0, x)], key="k", source={})
    np.save(tmp_path / "s" / SIGNALS_FILE, x[:1])

    with pytest.raises(StoreError, match="inconsistent"):
        SiteStore.open(tmp_path / "s")


def test_second_ensure_reuses_the_store(tiny_cohort: list[SiteStore], tiny_data_dir: Path) -> None:
    before = (tiny_cohort[0].path / SIGNALS_FILE).stat().st_mtime_ns

    again = ensure_synthetic_site(TINY, 0, tiny_data_dir, progress=False)

    assert again.path == tiny_cohort[0].path
    assert (again.path / SIGNALS_FILE).stat().st_mtime_ns == before


def test_summary_counts_patients_and_positives(tiny_cohort: list[SiteStore]) -> None:
    table = summarise(tiny_cohort)

    assert table["ecgs"].sum() == TINY.n_ecgs
    for row, store in zip(table.itertuples(), tiny_cohort, strict=True):
        assert row.patients == store.metadata["patient_id"].nunique()
        assert row.positives == int(store.metadata["label"].sum())


def test_results_are_written_as_strict_json(tmp_path: Path) -> None:
    # Prepare: a one-class site's undefined figures as numpy and pandas leave them
    payload = {"auroc": float("nan"), "rows": [{"lo": np.float64("inf"), "n": 3}], "ok": np.float32(0.5), "p": None}

    # Execute
    write_json(tmp_path / "r.json", payload)

    # Assert: null where JSON has no number; a strict reader takes it
    def strict(constant: str) -> None:
        raise AssertionError(constant)

    got = json.loads((tmp_path / "r.json").read_text(), parse_constant=strict)
    assert got == {"auroc": None, "rows": [{"lo": None, "n": 3}], "ok": 0.5, "p": None}
