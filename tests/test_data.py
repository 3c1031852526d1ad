from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from common.data import arrays as D
from common.data.npyfile import NpyRows
from common.data.store import SiteStore
from common.synthetic.cohort import ensure_synthetic_site

from .conftest import TINY


@pytest.fixture
def store(tmp_path: Path) -> SiteStore:
    return ensure_synthetic_site(TINY, 2, tmp_path, progress=False)  # hospital_c records at 250 Hz


def test_a_split_is_preprocessed_once_then_mapped_from_the_store(
    store: SiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = D.load_split(store, "train", 100)
    cached = list((store.path / D.CACHE_DIR).iterdir())

    def refuse(*_: object) -> np.ndarray:
        raise AssertionError("preprocessed again instead of read from the cache")

    monkeypatch.setattr(D, "_preprocessed", refuse)
    monkeypatch.setattr(D, "_preprocessed_chunks", refuse)
    again = D.load_split(store, "train", 100)

    assert [p.name.split("-")[:2] for p in cached] == [["train", "100hz"]]
    assert isinstance(again.x, NpyRows) and again.x.shape == (len(again), 12, 1000)
    np.testing.assert_array_equal(np.asarray(again.x), first.x)
    np.testing.assert_array_equal(again.y, first.y)


def test_cache_files_differ_by_split_rate_and_records(store: SiteStore) -> None:
    idx = np.arange(5)

    paths = {
        D.split_cache_path(store, "train", idx, 100),
        D.split_cache_path(store, "train", idx, 250),
        D.split_cache_path(store, "train", idx[:4], 100),
        D.split_cache_path(store, "val", idx, 100),
    }

    assert len(paths) == 4


def test_an_unwritable_store_loads_uncached_with_a_warning(store: SiteStore, caplog: pytest.LogCaptureFixture) -> None:
    (store.path / D.CACHE_DIR).write_text("not a folder")  # so the cache folder cannot be made

    with caplog.at_level(logging.WARNING, logger="common.data.arrays"):
        val = D.load_split(store, "val", 100)

    assert "using them uncached" in caplog.text
    assert isinstance(val.x, np.ndarray) and len(val) > 0
