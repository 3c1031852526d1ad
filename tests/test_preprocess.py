from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.data.preprocess import (
    PreprocessConfig,
    demographics,
    fixed_length,
    notch,
    preprocess_signal,
    resample,
    standardise,
)


def test_resample_handles_non_integer_rates() -> None:
    t = np.arange(0, 10, 1 / 257)
    x = np.sin(2 * np.pi * 1.0 * t)[None, :]

    y = resample(x, 257.0, 100)

    assert y.shape == (1, 1000)
    np.testing.assert_allclose(y[0, 100:900], np.sin(2 * np.pi * np.arange(100, 900) / 100), atol=0.02)


def test_fixed_length_crops_centre_and_pads_with_zeros() -> None:
    x = np.arange(10.0)[None, :]

    cropped, padded_a = fixed_length(x, 6)
    padded, padded_b = fixed_length(x, 14)

    assert cropped.tolist() == [[2, 3, 4, 5, 6, 7]] and not padded_a
    assert padded.tolist() == [[0, 0, *range(10), 0, 0]] and padded_b


def test_notch_removes_mains_and_keeps_the_rest() -> None:
    t = np.arange(0, 10, 1 / 500)
    x = (np.sin(2 * np.pi * 50 * t) + np.sin(2 * np.pi * 5 * t))[None, :]

    y = notch(x, 500, 50.0)

    np.testing.assert_allclose(y[0, 500:-500], np.sin(2 * np.pi * 5 * t)[500:-500], atol=0.05)


def test_per_record_standardisation_and_length() -> None:
    x = np.random.default_rng(0).normal(2.0, 3.0, (12, 5000)).astype(np.float32)

    y, padded = preprocess_signal(x, 500.0, PreprocessConfig(normalise="per_record", bandpass_hz=None))

    assert y.shape == (12, 1000) and not padded
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(-1), 1, atol=1e-4)
    np.testing.assert_allclose(standardise(x, np.full(12, 2.0), np.full(12, 3.0)), (x - 2) / 3, atol=1e-5)


def test_demographics_encoding() -> None:
    meta = pd.DataFrame({"age": [60.0, np.nan, 75.0], "sex": ["M", "F", ""]})

    d = demographics(meta)

    assert d.tolist() == [[0, 0, 1, 0, 0], [0, 1, 0, 1, 0], [pytest.approx(1.0), 0, 0, 0, 1]]
