"""Beat windows of one 12-lead ECG from its own delineation: P, QRS and ST-T of every complete beat.

:func:`detect_beats` finds the fiducial points of each beat of a band-passed ``(12, T)`` record, in mV or
standardised per lead (every threshold is relative to the record itself, none is in mV):

1. **QRS complexes**: each lead is scaled to unit variance (so a record in mV and the same record
   standardised per lead give the same beats), and the QRS complexes are the peaks of the multi-lead spatial
   velocity ``v(t) = sqrt(sum_l (dx_l/dt)^2)`` of the leads band-passed to 8-25 Hz, at least 250 ms apart
   and above 35 % of its 98th percentile; a much smaller peak within 360 ms of a QRS is its T wave and is
   left out. Each beat's ``r`` is the maximum, within 40 ms, of the velocity of the leads low-passed at
   35 Hz and smoothed over 40 ms, which must stand out of that velocity's median (a record of noise or of
   slow waves has no such peak).
2. **QRS onset and J point** (QRS end): from ``r``, walk back and forward, at most 120 ms, to where that
   velocity falls below its median (the noise floor) plus 10 % (onset) or 30 % (J point) of the beat's
   peak above it. The J point's share is larger because the S wave's slope is mostly larger and fades later
   than the Q wave's; with equal shares the J point lands 15-20 ms late on Gaussian-wave ECGs (the
   synthetic cohort's waves, on which all the shares were set).
3. **T end**: the T peak is the highest hump (or, where an elevated ST segment merges into the T wave, the
   maximum) of the multi-lead power (smoothed over 60 ms) of the signal about the beat's isoelectric line
   (each lead's median over the 40 ms before the QRS onset, drawn straight to the next beat's) between
   J + 60 ms and J + 500 ms or the next QRS onset - 150 ms (before the next P wave). The T end follows by
   the tangent method on the T wave's amplitude (the square root of that power less the noise's, the
   floor of the T-P segment that follows): the tangent at the steepest point of the downslope (searched
   until the amplitude has fallen to a quarter of its height) runs down to zero, and the T end lies 1.25
   times that run after the steepest point, at the latest 40 ms before the next QRS onset. The slope is
   measured high on the wave, so noise moves it little; the plain tangent (a run of 1) meets zero 2 sigmas
   after a Gaussian T wave's centre, about 0.5 sigma before the wave has died out. A T end more than 15 %
   off the record's median QT (a flat T wave in noise, a last beat bent by the band-pass's edge) is
   replaced by the QRS onset plus that median.
4. **P window**: the PR interval, from 200 ms before the QRS onset but not before the previous beat's T
   end.

The windows are QRS = ``[qrs_on, j)``, ST-T = ``[j, t_end]`` (J point to T end) and P = ``[p_on, qrs_on)``.
A beat is kept only when all its fiducial points lie within the record, so every window is complete and
the windows of all beats are disjoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import ndimage
from scipy import signal as sps

from common.data.leads import N_LEADS

WINDOWS: Final[tuple[str, ...]] = ("P", "QRS", "ST-T")
"""The beat windows of :meth:`Beats.windows`, in the order they occur within a beat."""

MIN_FS: Final[float] = 50.0
"""Below this a QRS complex (80-120 ms) spans too few samples to delineate."""
MIN_DURATION_S: Final[float] = 1.0
"""Shorter records cannot hold a complete beat (P, QRS and ST-T take about 0.6 s)."""

# The constants below were set on the synthetic ECGs of the tests and the project's cohort (module docstring).
_VELOCITY_LOWPASS_HZ: Final[float] = 35.0  # keeps the QRS's edges sharp; muscle noise above it is cut
_SMOOTH_S: Final[float] = 0.04
_DETECT_BAND_HZ: Final[tuple[float, float]] = (8.0, 25.0)  # where a QRS has its energy and a T wave little
_DETECT_SMOOTH_S: Final[float] = 0.05
_T_WAVE_RULE_S: Final[float] = 0.36
_PEAK_REFINE_S: Final[float] = 0.04
_MIN_RR_S: Final[float] = 0.25  # a refractory period: two QRS complexes are never closer (HR 240)
_PEAK_SHARE_OF_P98: Final[float] = 0.35
_PEAK_OVER_MEDIAN: Final[float] = 3.0
_QRS_ON_SHARE: Final[float] = 0.1
_QRS_END_SHARE: Final[float] = 0.3
_QRS_SEARCH_S: Final[float] = 0.12
_BASELINE_S: Final[float] = 0.04
_T_START_S: Final[float] = 0.06
_T_STOP_S: Final[float] = 0.5
_T_BEFORE_NEXT_QRS_S: Final[float] = 0.15  # keeps the next P wave out of the T peak search
_T_SLOPE_SEARCH_SHARE: Final[float] = 0.25
_T_HUMP_PROMINENCE: Final[float] = 0.1
_T_TANGENT_STRETCH: Final[float] = 1.25
_T_SMOOTH_S: Final[float] = 0.06
_MIN_P_WINDOW_S: Final[float] = 0.04  # a T end is capped this much before the next QRS, so its P window is not empty
_PR_S: Final[float] = 0.2
_QT_TOLERANCE: Final[float] = 0.15


class BeatError(ValueError):
    """A record whose beats cannot be delineated: wrong shape, non-finite, flat, or without a complete beat."""


@dataclass(frozen=True)
class Beats:
    """The fiducial points of a record's complete beats, as sample indices, one entry per beat in time order.

    Attributes
    ----------
    fs : float
        Sampling rate in Hz.
    n_samples : int
        The record's length in samples.
    r : np.ndarray
        (K,) int, the peak of each QRS complex's spatial velocity.
    qrs_on : np.ndarray
        (K,) int, QRS onset.
    j : np.ndarray
        (K,) int, J point: the first sample after the QRS.
    t_end : np.ndarray
        (K,) int, T end: the last sample of the ST-T window.
    p_on : np.ndarray
        (K,) int, start of the P window: the PR interval, 200 ms before the QRS onset but after the previous
        beat's T end.
    """

    fs: float
    n_samples: int
    r: np.ndarray
    qrs_on: np.ndarray
    j: np.ndarray
    t_end: np.ndarray
    p_on: np.ndarray

    def __len__(self) -> int:
        return len(self.r)

    def windows(self) -> dict[str, np.ndarray]:
        """Boolean (n_samples,) masks of the beats' windows, keyed by :data:`WINDOWS`; disjoint.

        Returns
        -------
        dict[str, np.ndarray]
            ``"P"``: ``[p_on, qrs_on)``, ``"QRS"``: ``[qrs_on, j)``, ``"ST-T"``: ``[j, t_end]`` of every beat.
        """
        bounds = {"P": (self.p_on, self.qrs_on), "QRS": (self.qrs_on, self.j), "ST-T": (self.j, self.t_end + 1)}
        out = {}
        for name, (start, stop) in bounds.items():
            # +1 at each start, -1 at each stop: the running sum is 1 inside a window
            edges = np.zeros(self.n_samples + 1, np.int64)
            np.add.at(edges, start, 1)
            np.add.at(edges, stop, -1)
            out[name] = np.cumsum(edges[:-1]) > 0
        return out


def _validated(x: np.ndarray, fs: float) -> np.ndarray:
    if not np.isfinite(fs) or fs < MIN_FS:
        raise BeatError(f"sampling rate must be at least {MIN_FS:g} Hz to delineate beats, got {fs}")
    a = np.asarray(x)
    if a.ndim != 2 or a.shape[0] != N_LEADS:
        raise BeatError(f"expected one ECG of shape ({N_LEADS}, n_samples), got shape {a.shape}")
    if a.shape[1] < MIN_DURATION_S * fs:
        raise BeatError(
            f"record of {a.shape[1] / fs:.2f} s is too short to delineate beats (at least {MIN_DURATION_S:g} s)"
        )
    if not np.issubdtype(a.dtype, np.number):
        raise BeatError(f"expected a numeric signal, got dtype {a.dtype}")
    a = a.astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        raise BeatError(f"signal has {int(bad.sum())} non-finite samples (NaN or inf) in {int(bad.any(1).sum())} leads")
    return a


def _unit_leads(x: np.ndarray) -> np.ndarray:
    """Each lead centred and scaled to unit variance; flat leads (no variance to float precision) become zero."""
    centred = x - x.mean(1, keepdims=True)
    sd = centred.std(1)
    # float precision of the record's own amplitude: what is left below it is rounding, not signal
    live = sd > 1e-7 * max(float(np.abs(x).max()), 1e-30)
    if not live.any():
        raise BeatError("flat signal: no lead varies, so there is no beat to delineate")
    return np.where(live[:, None], centred / np.where(live, sd, 1.0)[:, None], 0.0)


def _smooth(y: np.ndarray, n: int) -> np.ndarray:
    """Moving average over ``n`` samples, made odd so that it is centred (an even box shifts by half a sample)."""
    n = n // 2 * 2 + 1
    if n <= 1:
        return y
    # edges repeat the end value: zero padding would pull the velocity and RMS down near the record's ends
    out: np.ndarray = ndimage.uniform_filter1d(y, n, mode="nearest")
    return out


def _spatial_velocity(xu: np.ndarray, fs: float, low_hz: float | None, high_hz: float, smooth_s: float) -> np.ndarray:
    """``sqrt(sum_l (dx_l/dt)^2)`` of the leads filtered to ``[low_hz, high_hz]`` (low-passed if no ``low_hz``)."""
    high = min(high_hz, 0.4 * fs)
    band = high if low_hz is None else [low_hz, high]
    sos = sps.butter(2, band, btype="lowpass" if low_hz is None else "bandpass", fs=fs, output="sos")
    d = np.gradient(sps.sosfiltfilt(sos, xu, axis=-1), axis=-1) * fs
    return _smooth(np.sqrt((d**2).sum(0)), max(1, round(smooth_s * fs)))


def _qrs_peaks(xu: np.ndarray, v: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices of the QRS complexes: peaks of ``v`` found on its band-passed twin, T waves left out."""
    # detected on the 8-25 Hz band, where a T wave, even a hyperacute one, has little slope left
    vd = _spatial_velocity(xu, fs, _DETECT_BAND_HZ[0], _DETECT_BAND_HZ[1], _DETECT_SMOOTH_S)
    cand, _ = sps.find_peaks(vd, height=_PEAK_SHARE_OF_P98 * np.percentile(vd, 98), distance=round(_MIN_RR_S * fs))
    kept: list[int] = []
    for p in cand:
        # a much smaller peak soon after a QRS is its T wave (Pan and Tompkins' rule)
        if kept and p - kept[-1] < _T_WAVE_RULE_S * fs and vd[p] < 0.5 * vd[kept[-1]]:
            continue
        kept.append(int(p))
    half = max(1, round(_PEAK_REFINE_S * fs))
    r = np.array([max(0, p - half) + int(np.argmax(v[max(0, p - half) : p + half + 1])) for p in kept], np.int64)
    # a record of noise or of slow waves has no peak that stands out of the velocity's median; a maximum on
    # the record's first or last sample is a QRS cut by the record's edge
    r = r[(v[r] > _PEAK_OVER_MEDIAN * np.median(v)) & (r > 0) & (r < len(v) - 1)]
    return np.unique(r)


def _qrs_edge(v: np.ndarray, idx: np.ndarray, thr: float, off_record: bool) -> int | None:
    """The first of the samples ``idx`` (walking out from the peak) where ``v`` is below ``thr``.

    When ``v`` stays above it: None if the walk was cut short by the record's edge (``off_record``), else
    the flattest sample of the range (a noisy or very wide complex).
    """
    below = np.flatnonzero(v[idx] < thr)
    if below.size:
        return int(idx[below[0]])
    return None if off_record else int(idx[np.argmin(v[idx])])


def _t_end(power: np.ndarray, lo: int, hi: int, cap: int, smooth: int, floor: float | None) -> tuple[int | None, float]:
    """T end from the beat's power about its isoelectric line: T peak in ``[lo, hi)``, end at or before ``cap``.

    ``floor`` is the noise's power; None to take it from the T-P segment after the T peak (the quietest
    stretch before ``cap``). Returns the T end, None when the T wave runs off the record (its peak at the
    record's end, or no fall before it), and the floor used.
    """
    n = len(power)
    if hi <= lo:
        return None, math.nan
    seg = _smooth(power[lo:hi], smooth)
    # the T wave's hump, not an ST segment that starts higher and falls into it; an ST elevation that merges
    # with the T wave leaves no hump, and then the maximum is the T peak
    humps, _ = sps.find_peaks(seg, prominence=_T_HUMP_PROMINENCE * float(np.ptp(seg)))
    peak = lo + (int(humps[np.argmax(seg[humps])]) if humps.size else int(np.argmax(seg)))
    tail = power[peak : min(cap, n - 1) + 1]
    if floor is None:
        floor = float(_smooth(tail, smooth).min())
    if len(tail) < 3:
        return None, floor
    # the noise's power comes off before the square root: an RMS that levels off at the noise would make the
    # downslope look shorter than it is, the more so the smaller the T wave
    amp = _smooth(np.sqrt(np.maximum(tail - floor, 0.0)), smooth)
    # the downslope ends where the T wave first falls to a quarter of its height: a P wave after it is not searched
    low = np.flatnonzero(amp < _T_SLOPE_SEARCH_SHARE * amp[0])
    if not low.size and cap >= n:
        return None, floor
    slope = np.gradient(amp[: (low[0] if low.size else len(amp) - 1) + 2])
    steep = int(np.argmin(slope))
    if slope[steep] >= 0:
        return (None if cap >= n else peak + int(np.argmin(amp))), floor
    end = peak + steep + _T_TANGENT_STRETCH * amp[steep] / -slope[steep]
    return (None if end > n - 1 else min(round(end), cap)), floor


def detect_beats(x: np.ndarray, fs: float) -> Beats:
    """Delineate the complete beats of one band-passed 12-lead ECG (method: module docstring).

    Parameters
    ----------
    x : np.ndarray
        ``(12, n_samples)`` in :data:`common.data.leads.LEADS` order, band-passed (about 0.5-40 Hz), in mV or
        standardised per lead.
    fs : float
        Sampling rate in Hz (at least :data:`MIN_FS`).

    Returns
    -------
    Beats
        The beats whose fiducial points all lie within the record, in time order.

    Raises
    ------
    BeatError
        Wrong shape, non-finite samples, a flat signal, no QRS complex, or no complete beat.
    """
    a = _validated(x, fs)
    n = a.shape[1]
    xu = _unit_leads(a)
    v = _spatial_velocity(xu, fs, None, _VELOCITY_LOWPASS_HZ, _SMOOTH_S)
    peaks = _qrs_peaks(xu, v, fs)
    if peaks.size == 0:
        raise BeatError("no QRS complex found: the spatial velocity has no peak standing out of its noise")

    def s(seconds: float) -> int:
        return max(1, round(seconds * fs))

    floor_v = float(np.median(v))
    k = len(peaks)
    on = np.full(k, -1, np.int64)
    end = np.full(k, -1, np.int64)
    search = s(_QRS_SEARCH_S)
    for i, p in enumerate(peaks):
        lo = max(p - search, peaks[i - 1] + 1 if i else 0, 0)
        hi = min(p + search, peaks[i + 1] - 1 if i + 1 < k else n - 1, n - 1)
        thr_on, thr_end = (floor_v + share * (v[p] - floor_v) for share in (_QRS_ON_SHARE, _QRS_END_SHARE))
        before = _qrs_edge(v, np.arange(p, lo - 1, -1), thr_on, off_record=p - search < 0 and lo == 0)
        after = _qrs_edge(v, np.arange(p, hi + 1), thr_end, off_record=p + search > n - 1 and hi == n - 1)
        if before is not None:
            on[i] = before + 1
        if after is not None:
            end[i] = after

    # T end of every beat with a QRS, so that the next beat's P window can start after it
    t_end = np.full(k, -1, np.int64)
    base_n, smooth = s(_BASELINE_S), s(_T_SMOOTH_S)
    has_base = on >= base_n
    bases = np.stack(
        [
            np.median(xu[:, o - base_n : o], axis=1) if ok else np.zeros(N_LEADS)
            for o, ok in zip(on, has_base, strict=True)
        ]
    )
    rr = round(float(np.median(np.diff(peaks)))) if k > 1 else 2 * n
    floors: list[float] = []
    caps = np.full(k, -1, np.int64)
    for i in range(k):
        if not has_base[i] or end[i] < 0:
            continue
        # past the last beat: where the next QRS would start if the rhythm holds, maybe past the record's end
        next_on = (on[i + 1] if on[i + 1] >= 0 else peaks[i + 1] - s(0.05)) if i + 1 < k else on[i] + rr
        lo = end[i] + s(_T_START_S)
        hi = min(end[i] + s(_T_STOP_S), next_on - s(_T_BEFORE_NEXT_QRS_S), n)
        cap = caps[i] = min(next_on - s(_MIN_P_WINDOW_S), n)
        stop = min(max(hi, cap) + 1, n)
        t = np.arange(end[i], stop)
        base = bases[i][:, None]
        if i + 1 < k and has_base[i + 1]:
            # the isoelectric line runs straight from this PR segment to the next: what the band-pass left of
            # the baseline wander does not lift the T-P segment off it
            base = base + (bases[i + 1] - bases[i])[:, None] * ((t - on[i]) / (on[i + 1] - on[i]))[None, :]
        power = np.zeros(n)
        power[end[i] : stop] = ((xu[:, end[i] : stop] - base) ** 2).mean(0)
        if cap < n:
            te, floor = _t_end(power, int(lo), int(hi), int(cap), smooth, None)
            if math.isfinite(floor):
                floors.append(floor)
        elif floors:  # the last beat, whose T-P segment the record's end may cut: it takes the others' floor
            te, _ = _t_end(power, int(lo), int(hi), int(cap), smooth, float(np.median(floors)))
        else:
            te = None
        if te is not None:
            t_end[i] = te

    # In sinus rhythm the QT interval varies by a few per cent from beat to beat: a T end far off the record's
    # typical QT is a failed delineation (a flat T wave in noise, or a last beat whose isoelectric line the
    # band-pass's edge has bent), and the typical QT after that beat's QRS onset is the better guess
    qt = np.where((on >= 0) & (t_end >= 0), t_end - on, -1)
    if (qt >= 0).sum() >= 3:
        typical = round(float(np.median(qt[qt >= 0])))
        off = (qt >= 0) & (np.abs(qt - typical) > _QT_TOLERANCE * typical)
        guess = on + typical
        t_end[off] = np.where((guess <= caps) & (guess < n), guess, -1)[off]

    # A first beat's predecessor lies (partly) before the record: its T end is extrapolated from the others
    ok_qt = (on >= 0) & (t_end >= 0)
    prev_end = np.concatenate([[-1], t_end[:-1]])
    if k > 1 and ok_qt.any():
        prev_end[0] = on[0] - rr + round(float(np.median((t_end - on)[ok_qt])))
    p_on = np.maximum(on - s(_PR_S), prev_end + 1)

    keep = (on >= 0) & (end > on) & (t_end > end) & (p_on >= 0) & (p_on < on) & (t_end < n)
    if not keep.any():
        raise BeatError(
            f"no complete beat: {k} QRS complexes found, none with its P, QRS and ST-T windows all within the record"
        )
    return Beats(
        fs=float(fs),
        n_samples=n,
        r=peaks[keep],
        qrs_on=on[keep],
        j=end[keep],
        t_end=t_end[keep],
        p_on=p_on[keep],
    )
