"""Rows of ``.npy`` files read and written on demand, without memory maps.

A memory map counts every page it has touched as the process's resident memory until the kernel
reclaims it, so a process that reads a hospital's whole store once (ingest's preprocessing, an
epoch over the training split) looks as large as the store. Reading rows with ``pread`` into
private buffers keeps a process at the size of the batches it holds, while the kernel's page
cache still shares one file between the processes of a simulation (and gives the memory back
under pressure). :class:`NpyRows` reads, :class:`RowStack` pools several without copying them (both
are :class:`Rows`: numpy's indexing over one ``read``), :class:`NpyWriter` writes row chunks in any
order.

Indexing follows numpy's (an int, a slice, an integer or boolean array, then any trailing indices)
and always returns a new ``np.ndarray``; ``np.asarray`` reads everything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from numpy.lib import format as npy_format


def _row_index(key: Any, n: int) -> tuple[np.ndarray | int, tuple[Any, ...]]:
    """Split ``key`` into the rows it selects (an int for one row, else an int64 array) and the rest."""
    rest: tuple[Any, ...] = ()
    if isinstance(key, tuple):
        key, rest = (key[0] if key else slice(None)), key[1:]
    if hasattr(key, "numpy") and not isinstance(key, np.ndarray):  # a torch tensor of indices
        key = key.numpy()
    if isinstance(key, int | np.integer):
        if not -n <= key < n:
            raise IndexError(f"index {key} is out of bounds for {n} rows")
        return int(key) % n, rest
    rows = np.arange(n, dtype=np.int64)[key]  # numpy's own checks and semantics for slices, arrays and masks
    return np.atleast_1d(rows), rest


class Rows:
    """Rows read on demand: numpy's indexing over :meth:`read`, which subclasses provide."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (in bounds, any order, repeats allowed) as a new array."""
        raise NotImplementedError

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, rest = _row_index(key, len(self))
        if isinstance(rows, int):
            out = self.read(np.array([rows]))[0]
        else:
            out = self.read(rows)
            rest = (slice(None), *rest)
        return out[rest] if rest else out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = self.read(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype, copy=False)


class NpyRows(Rows):
    """A read-only C-ordered ``.npy`` array whose rows are read from the file when indexed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with self.path.open("rb") as f:
            version = npy_format.read_magic(f)
            header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, fortran, dtype = header(f)
            self._offset = f.tell()
        if fortran:
            raise ValueError(f"{self.path}: Fortran-ordered arrays cannot be read by rows")
        if len(shape) < 1:
            raise ValueError(f"{self.path}: a 0-d array has no rows")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype: np.dtype[Any] = np.dtype(dtype)
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        size = self.path.stat().st_size
        if size < self._offset + self.shape[0] * self._row_bytes:
            raise ValueError(f"{self.path} is truncated: {size} bytes for shape {self.shape}")

    def __repr__(self) -> str:
        return f"NpyRows({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Consecutive rows are read in one call."""
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        if len(rows) == 0:
            return out
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        uniq = np.unique(srt)
        buf = np.empty((len(uniq), *self.shape[1:]), self.dtype) if len(uniq) < len(rows) else None
        target = out if buf is None else buf
        dest = target.reshape(len(uniq), -1).view(np.uint8)
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(uniq)], strict=True):
                view = dest[a:b].reshape(-1).data
                offset, done = self._offset + int(uniq[a]) * self._row_bytes, 0
                while done < len(view):  # pread may return less than asked
                    got = os.preadv(fd, [view[done:]], offset + done)
                    if got == 0:
                        raise OSError(f"{self.path}: unexpected end of file")
                    done += got
        finally:
            os.close(fd)
        if buf is None:  # unique rows: the sorted reads went straight into out, now put them in the asked order
            if not np.array_equal(order, np.arange(len(rows))):
                out[order] = out.copy()
            return out
        out[order] = buf[np.searchsorted(uniq, srt)]
        return out


class RowStack(Rows):
    """Several row sources (arrays or :class:`NpyRows` of equal trailing shape) indexed as one, without a copy."""

    def __init__(self, parts: Sequence[Signals]) -> None:
        if not parts:
            raise ValueError("nothing to stack")
        tails = {tuple(p.shape[1:]) for p in parts}
        if len(tails) != 1:
            raise ValueError(f"cannot stack rows of different shapes {sorted(tails)}")
        self.parts = [p for p in parts if len(p)] or [parts[0]]
        self.dtype: np.dtype[Any] = np.result_type(*(p.dtype for p in parts))
        self._starts = np.cumsum([0, *(len(p) for p in self.parts)])
        self.shape: tuple[int, ...] = (int(self._starts[-1]), *tails.pop())

    def read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        part = np.searchsorted(self._starts, rows, side="right") - 1
        for k in np.unique(part):
            sel = np.flatnonzero(part == k)
            local = rows[sel] - self._starts[k]
            src = self.parts[k]
            out[sel] = src.read(local) if isinstance(src, Rows) else src[local]
        return out


Signals: TypeAlias = "np.ndarray | Rows"
"""What a split's signals are: in memory, a file read by rows, or several of them pooled."""


class NpyWriter:
    """Write a C-ordered ``.npy`` of known shape by row chunks, in any order, without holding it in memory."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: Any = np.float32) -> None:
        self.path, self.shape, self.dtype = Path(path), tuple(shape), np.dtype(dtype)
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        header = {"descr": npy_format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        with self.path.open("wb") as f:
            npy_format.write_array_header_2_0(f, header)
            self._offset = f.tell()
            f.truncate(self._offset + self.shape[0] * self._row_bytes)  # sparse until written
        self._fd = os.open(self.path, os.O_WRONLY)

    def write(self, start: int, rows: np.ndarray) -> None:
        """Rows ``start : start + len(rows)``."""
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or not 0 <= start <= start + len(rows) <= self.shape[0]:
            raise ValueError(f"rows {start}:{start + len(rows)} of shape {rows.shape} do not fit {self.shape}")
        view, offset, done = rows.reshape(-1).view(np.uint8).data, self._offset + start * self._row_bytes, 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], offset + done)

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
