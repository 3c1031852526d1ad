"""common/data/npyfile.py: rows read and written on demand behave as the arrays they stand for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from common.data.npyfile import NpyRows, NpyWriter, RowStack

KEYS = [
    0, 7, -1, np.int64(3), slice(None), slice(5, 20, 3), slice(None, None, -2), np.array([4, 2, 2, 9, 0]),
    [1, 1, 3], np.arange(50) % 3 == 0, (slice(2, 6), slice(None), slice(1, 3)), (np.array([1, 0]), 1),
    (Ellipsis,), np.array([], dtype=np.int64),
]  # fmt: skip


@pytest.fixture
def array(tmp_path: Path) -> tuple[np.ndarray, Path]:
    a = np.random.default_rng(0).normal(size=(50, 3, 7)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    return a, tmp_path / "a.npy"


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_rows_index_as_numpy_does(array: tuple[np.ndarray, Path], key: object) -> None:
    a, path = array
    assert np.array_equal(NpyRows(path)[key], a[key])  # type: ignore[index]


def test_rows_take_torch_indices_read_everything_and_are_copies(array: tuple[np.ndarray, Path]) -> None:
    a, path = array
    rows = NpyRows(path)
    assert np.array_equal(rows[torch.tensor([3, 1, 2])], a[[3, 1, 2]])
    assert np.array_equal(np.asarray(rows), a) and np.asarray(rows, np.float64).dtype == np.float64
    got = rows[:2]
    got[:] = 0.0
    assert np.array_equal(rows[:2], a[:2]) and (rows.shape, rows.ndim, len(rows)) == (a.shape, 3, 50)


def test_rows_refuse_what_they_cannot_read(array: tuple[np.ndarray, Path], tmp_path: Path) -> None:
    _, path = array
    with pytest.raises(IndexError, match="out of bounds"):
        NpyRows(path)[50]
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((4, 3))))
    with pytest.raises(ValueError, match="Fortran"):
        NpyRows(tmp_path / "f.npy")
    (tmp_path / "t.npy").write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated"):
        NpyRows(tmp_path / "t.npy")


def test_a_stack_indexes_its_parts_as_one_array(array: tuple[np.ndarray, Path]) -> None:
    a, path = array
    stack = RowStack([NpyRows(path), a[:10], RowStack([a[:0], NpyRows(path)])])
    whole = np.concatenate([a, a[:10], a])
    assert stack.shape == whole.shape
    for key in (0, 55, -1, slice(None), slice(45, 65), np.array([100, 3, 55, 55, 0]), (slice(None), 0, 2)):
        assert np.array_equal(stack[key], whole[key])
    with pytest.raises(ValueError, match="different shapes"):
        RowStack([a, a[:, :2]])


def test_the_writer_takes_chunks_in_any_order_and_numpy_reads_the_file(tmp_path: Path) -> None:
    a = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    with NpyWriter(tmp_path / "w.npy", a.shape) as w:
        w.write(3, a[3:])
        w.write(0, a[:3])
        with pytest.raises(ValueError, match="do not fit"):
            w.write(4, a[:2])
    assert np.array_equal(np.load(tmp_path / "w.npy"), a) and np.array_equal(NpyRows(tmp_path / "w.npy")[1:4], a[1:4])
