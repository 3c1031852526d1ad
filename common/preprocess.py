"""Signal and demographic preprocessing shared by every data source (torch-free)."""

from __future__ import annotations

from math import gcd
from typing import Final

import numpy as np
import pandas as pd
from scipy import signal as sps

AGE_CENTER: Final[float] = 60.0
AGE_SCALE: Final[float] = 15.0
DEMOGRAPHIC_FEATURES: Final[tuple[str, ...]] = ("age_z", "age_missing", "sex_male", "sex_female", "sex_missing")


def resample(x: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    """Polyphase resampling along the last axis (anti-aliased when going down)."""
    if fs_in == fs_out:
        return np.asarray(x, dtype=np.float32)
    g = gcd(fs_in, fs_out)
    out: np.ndarray = sps.resample_poly(x, fs_out // g, fs_in // g, axis=-1)
    return out.astype(np.float32)


def bandpass(x: np.ndarray, fs: int, low_hz: float = 0.5, high_hz: float = 40.0) -> np.ndarray:
    """Zero-phase Butterworth band-pass (order 2 each side) along the last axis."""
    high = min(high_hz, 0.45 * fs)
    sos = sps.butter(2, [low_hz, high], btype="bandpass", fs=fs, output="sos")
    out: np.ndarray = sps.sosfiltfilt(sos, x, axis=-1)
    return out.astype(np.float32)


def demographics(meta: pd.DataFrame) -> np.ndarray:
    """``(n, 5)`` float32: standardised age with a missing flag, sex one-hot with a missing flag."""
    age = pd.to_numeric(meta["age"], errors="coerce").to_numpy(dtype=np.float64)
    age_missing = np.isnan(age)
    sex = meta["sex"].astype(str).str.upper().to_numpy()
    male, female = sex == "M", sex == "F"
    return np.stack(
        [
            np.where(age_missing, 0.0, (age - AGE_CENTER) / AGE_SCALE),
            age_missing,
            male,
            female,
            ~(male | female),
        ],
        axis=1,
    ).astype(np.float32)
