"""Update compression: what a hospital sends back after training, smaller than its float32 weights.

A hospital sends its *update*, the trained weights minus the global weights it was sent, and the
server adds it back to the weights it sent (it keeps them for the round). The update is small and
centred near zero, so it loses less to a coarse encoding than the weights themselves would:

* ``float16``: every floating-point update in half precision (half the bytes);
* ``int8``: every floating-point update as one byte per value, ``round((d - lo) / scale)`` with the
  tensor's own ``lo = min(d)`` and ``scale = (max(d) - lo) / 255``, sent beside it as
  ``name + RANGE_SUFFIX`` (float32 ``[lo, scale]``): a quarter of the bytes, error at most
  ``scale / 2`` per value.

What was sent as integers (e.g. a batch norm's step count before the first aggregation) travels as it
is. Only the hospital's upload is encoded: the global weights go down in full, so every hospital starts a
round from the same model. An update whose values are not all finite decodes to NaN, which the server's
reply check rejects.
Flower-free: numpy in, numpy out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, get_args

import numpy as np

from common.config.sections import UpdateCompression

METHODS: Final[tuple[str, ...]] = get_args(UpdateCompression)
RANGE_SUFFIX: Final[str] = "|int8-range"
"""Key suffix of an int8 tensor's float32 ``[lo, scale]``."""
_LEVELS: Final[int] = 255


class CompressionError(ValueError):
    """An encoded update that cannot be decoded against the weights the server sent."""


def _known(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown update compression {method!r}; known: {', '.join(METHODS)}")


def _is_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


def encode(trained: Mapping[str, np.ndarray], sent: Mapping[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
    """The arrays a hospital sends for ``trained`` weights, given the ``sent`` global weights."""
    _known(method)
    if method == "none":
        return {k: np.asarray(v) for k, v in trained.items()}
    out: dict[str, np.ndarray] = {}
    for k, value in trained.items():
        w, base = np.asarray(value), np.asarray(sent[k])
        if not _is_float(base):  # by the sent dtype, which the server has too (aggregation makes buffers float)
            out[k] = w
            continue
        d = np.asarray(w.astype(np.float64) - base.astype(np.float64))  # 0-d arithmetic gives a scalar
        if method == "float16":
            with np.errstate(over="ignore"):  # beyond float16's range: inf, which the server rejects
                out[k] = d.astype(np.float16)
            continue
        if not np.isfinite(d).all():
            out[k] = np.zeros(d.shape, np.uint8)
            out[k + RANGE_SUFFIX] = np.array([np.nan, np.nan], np.float32)
            continue
        lo, hi = (float(d.min()), float(d.max())) if d.size else (0.0, 0.0)
        # the range as the server reads it (float32), so its decoding is the one encoded here
        rng = np.array([lo, (hi - lo) / _LEVELS or 1.0], np.float32)  # constant update: codes 0, decoded as lo
        codes = np.rint((d - float(rng[0])) / float(rng[1]))
        out[k] = np.asarray(np.clip(codes, 0, _LEVELS)).astype(np.uint8)
        out[k + RANGE_SUFFIX] = rng
    return out


def decode(received: Mapping[str, np.ndarray], sent: Mapping[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
    """The trained weights back from what a hospital sent, in the sent weights' dtypes and shapes.

    Raises
    ------
    CompressionError
        When ``received`` is not an encoding of an update to ``sent``: other names, shapes or dtypes,
        a missing or malformed int8 range.
    """
    _known(method)
    if method == "none":
        return {k: np.asarray(v) for k, v in received.items()}
    expected = set(sent) | {k + RANGE_SUFFIX for k, v in sent.items() if method == "int8" and _is_float(np.asarray(v))}
    if set(received) != expected:
        odd = sorted(set(received) ^ expected)
        raise CompressionError(f"a {method} update for other parameters: {odd[:5]}")
    code_dtype = np.dtype(np.float16 if method == "float16" else np.uint8)
    out: dict[str, np.ndarray] = {}
    for k, value in sent.items():
        base, got = np.asarray(value), np.asarray(received[k])
        if got.shape != base.shape:
            raise CompressionError(f"a {method} update of shape {got.shape} for {k!r} of shape {base.shape}")
        if not _is_float(base):
            out[k] = got
            continue
        if got.dtype != code_dtype:
            raise CompressionError(f"a {method} update of {k!r} in {got.dtype}, not {code_dtype}")
        delta = got.astype(np.float64)
        if method == "int8":
            rng = np.asarray(received[k + RANGE_SUFFIX])
            if rng.shape != (2,) or rng.dtype != np.float32:
                raise CompressionError(f"the int8 range of {k!r} is {rng.dtype} {rng.shape}, not float32 (2,)")
            delta = float(rng[0]) + delta * float(rng[1])
        out[k] = np.asarray(base.astype(np.float64) + delta).astype(base.dtype)
    return out
