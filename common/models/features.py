"""Hand-made ECG features: R peaks, ST level at J+60 ms, T amplitude and heart rate.

Torch-free. Used by the non-deep baseline and to check that the synthetic cohort's difficulty is
in a sensible band.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from scipy import signal as sps

from common.data.leads import N_LEADS

ST_OFFSET_S: Final[float] = 0.11
"""R peak to J+60 ms: about half a QRS (50 ms) plus 60 ms."""
FEATURE_NAMES: Final[tuple[str, ...]] = (
    *(f"st_{i}" for i in range(N_LEADS)),
    *(f"t_{i}" for i in range(N_LEADS)),
    "hr_bpm",
    "qrs_ms",
)


def _slope_energy(x: np.ndarray, fs: float) -> np.ndarray:
    sos = sps.butter(2, [5.0, min(30.0, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    energy = np.abs(np.diff(sps.sosfiltfilt(sos, x, axis=-1), axis=-1)).sum(0)
    return np.convolve(energy, np.ones(max(1, int(0.05 * fs))) / max(1, int(0.05 * fs)), mode="same")


def r_peaks(x: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices of one ECG ``(12, T)`` from the summed slope energy of all leads."""
    energy = _slope_energy(x, fs)
    peaks, _ = sps.find_peaks(energy, distance=max(1, int(0.33 * fs)), height=0.35 * np.percentile(energy, 99))
    return np.asarray(peaks, dtype=np.int64)


def qrs_duration_ms(x: np.ndarray, fs: float, peaks: np.ndarray) -> float:
    """Median width (ms) of the slope-energy bump around each R peak, above 30 % of its height.

    The energy is smoothed over 50 ms, so this overestimates the true QRS by a roughly constant
    amount; it is a relative feature for the baseline model, not a clinical measurement.
    """
    energy = _slope_energy(x, fs)
    widths = sps.peak_widths(energy, peaks, rel_height=0.7)[0] if len(peaks) else np.array([])
    return float(np.median(widths) * 1000.0 / fs) if len(widths) else float("nan")


def ecg_features(x: np.ndarray, fs: float) -> np.ndarray:
    """Feature vector of one ECG: ST level (J+60 ms minus PR baseline) and T amplitude per lead, HR, QRS.

    Levels are medians over beats, in mV; an ECG without two detectable beats gives NaNs.
    """
    peaks = r_peaks(x, fs)
    qrs = qrs_duration_ms(x, fs, peaks)
    n_t = x.shape[-1]
    base_off = (int(-0.09 * fs), int(-0.05 * fs))
    st_i, t_lo, t_hi = int(ST_OFFSET_S * fs), int(0.18 * fs), int(0.40 * fs)
    ok = peaks[(peaks + base_off[0] >= 0) & (peaks + t_hi < n_t)]
    out = np.full(len(FEATURE_NAMES), np.nan)
    if len(ok) < 2:
        return out
    base = np.stack([x[:, p + base_off[0] : p + base_off[1] + 1].mean(-1) for p in ok], 0)
    st = np.stack([x[:, p + st_i] for p in ok], 0) - base
    t_win = np.stack([x[:, p + t_lo : p + t_hi] for p in ok], 0) - base[..., None]
    t_amp = np.take_along_axis(t_win, np.abs(t_win).argmax(-1)[..., None], -1)[..., 0]
    out[:N_LEADS] = np.median(st, 0)
    out[N_LEADS : 2 * N_LEADS] = np.median(t_amp, 0)
    out[-2] = 60.0 * fs / np.median(np.diff(peaks))
    out[-1] = qrs
    return out


def feature_matrix(signals: np.ndarray, fs: float) -> np.ndarray:
    """Features for every ECG of ``(n, 12, T)``."""
    return np.stack([ecg_features(np.asarray(s, dtype=np.float64), fs) for s in signals], 0)
