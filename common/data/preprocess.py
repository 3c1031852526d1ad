"""Signal and demographic preprocessing shared by every data source (torch-free)."""

from __future__ import annotations

from fractions import Fraction
from typing import Final

import numpy as np
import pandas as pd

from common.config import PreprocessConfig

# scipy.signal is imported inside the filters: it takes about 0.7 s, and a federated client process,
# which reads its preprocessed splits from the store's cache, should not pay that on every start.

AGE_CENTER: Final[float] = 60.0
AGE_SCALE: Final[float] = 15.0
DEMOGRAPHIC_FEATURES: Final[tuple[str, ...]] = ("age_z", "age_missing", "sex_male", "sex_female", "sex_missing")


def bandpass(x: np.ndarray, fs: int, low_hz: float = 0.5, high_hz: float = 40.0) -> np.ndarray:
    """Zero-phase Butterworth band-pass (order 2 each side) along the last axis."""
    from scipy import signal as sps

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


def resample(x: np.ndarray, fs_in: float, fs_out: int) -> np.ndarray:
    """Resample from any rate (257 Hz, 360 Hz, 1000 Hz ...) by a rational polyphase factor."""
    frac = Fraction(fs_out) / Fraction(fs_in).limit_denominator(1000)
    if frac == 1:
        return np.asarray(x, dtype=np.float32)
    from scipy import signal as sps

    out: np.ndarray = sps.resample_poly(x, frac.numerator, frac.denominator, axis=-1)
    return out.astype(np.float32)


def notch(x: np.ndarray, fs: int, freq: float, quality: float = 30.0) -> np.ndarray:
    """Zero-phase IIR notch at ``freq`` (skipped when it lies at or above Nyquist)."""
    if freq >= fs / 2:
        return np.asarray(x, dtype=np.float32)
    from scipy import signal as sps

    b, a = sps.iirnotch(freq, quality, fs=fs)
    out: np.ndarray = sps.filtfilt(b, a, x, axis=-1)
    return out.astype(np.float32)


def fixed_length(x: np.ndarray, n: int) -> tuple[np.ndarray, bool]:
    """Centre-crop or zero-pad (centred) the last axis to ``n`` samples; also says whether it padded."""
    t = x.shape[-1]
    if t >= n:
        start = (t - n) // 2
        return x[..., start : start + n], False
    out = np.zeros((*x.shape[:-1], n), dtype=x.dtype)
    start = (n - t) // 2
    out[..., start : start + t] = x
    return out, True


def standardise(x: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> np.ndarray:
    """Per-lead z-score over the last axis, with the record's own or given statistics."""
    m = x.mean(-1, keepdims=True) if mean is None else mean.reshape(-1, 1)
    s = x.std(-1, keepdims=True) if std is None else std.reshape(-1, 1)
    return ((x - m) / np.maximum(s, 1e-6)).astype(np.float32)


def filter_signal(x: np.ndarray, fs: float, cfg: PreprocessConfig) -> np.ndarray:
    """Resample and filter one ``(12, T)`` signal as ``cfg`` says (its amplitude is still as read)."""
    y = resample(x, fs, cfg.target_fs)
    if cfg.bandpass_hz is not None:
        y = bandpass(y, cfg.target_fs, *cfg.bandpass_hz)
    if cfg.notch_hz is not None:
        y = notch(y, cfg.target_fs, cfg.notch_hz)
    return y


def finish_signal(y: np.ndarray, cfg: PreprocessConfig) -> tuple[np.ndarray, bool]:
    """Fix the length and (per record) standardise a filtered signal; also says whether it padded."""
    y, padded = fixed_length(y, round(cfg.length_s * cfg.target_fs))
    if cfg.normalise == "per_record":
        y = standardise(y)
    return np.ascontiguousarray(y, dtype=np.float32), padded


def preprocess_signal(x: np.ndarray, fs: float, cfg: PreprocessConfig) -> tuple[np.ndarray, bool]:
    """Resample, filter, fix the length and (per record) standardise one ``(12, T)`` signal."""
    return finish_signal(filter_signal(x, fs, cfg), cfg)
