"""Beat delineation (common.explain.beats) against synthetic ECGs with known fiducial points.

The synthesiser (:func:`synth`) builds each beat as Gaussian waves of a 3-D cardiac dipole (P, septal Q, R,
S and an asymmetric T, plus an optional injury current from the J point through the T wave) projected on
leads I, II and V1-V6, with III, aVR, aVL and aVF derived from I and II. It renders at 500 Hz, then goes
through the store's preprocessing (resample, 0.5-40 Hz band-pass). The true fiducial points, in seconds:

* QRS onset = R - QRSd / 2 and J point = R + QRSd / 2 (Q and S are centred at R -/+ 0.3 QRSd with a
  sigma of 0.1 QRSd);
* T end = QRS onset + QT, where the T wave's centre lies 2.5 of its downstroke sigmas before it;
* QT = QTc * sqrt(RR), clipped to 360-440 ms; heart rate 50-110 bpm, QRSd 80-120 ms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import signal as sps
from scipy.special import expit

from common.config import CohortConfig
from common.data.leads import N_LEADS
from common.data.preprocess import bandpass, resample, standardise
from common.explain.beats import WINDOWS, BeatError, Beats, detect_beats
from common.synthetic.generator import derive_limb_leads, plan_site, render_chunk

RENDER_FS = 500
DURATION_S = 10.0
WHITE_MV, MUSCLE_MV = 0.02, 0.1  # before the band-pass: about 0.03 mV of noise in 0.5-40 Hz
PR_S = 0.2  # the P window's length before the previous beat's T end cuts it

# P, Q, R, S, T dipoles in mV (x left, y inferior, z anterior)
_WAVES = np.array(
    [[0.08, 0.13, 0.03], [-0.12, 0.05, 0.25], [1.0, 0.85, -0.55], [-0.25, -0.15, -0.35], [0.26, 0.2, 0.13]]
)
_PRECORDIAL_DEG = np.array([115.0, 95.0, 75.0, 55.0, 30.0, 0.0])
_PRECORDIAL_GAIN = np.array([1.0, 1.35, 1.45, 1.35, 1.15, 1.0])


@dataclass(frozen=True)
class Synthetic:
    """A synthetic record at ``fs`` and every beat's true fiducial points in seconds (also partial beats)."""

    x: np.ndarray
    fs: int
    qrs_on: np.ndarray
    j: np.ndarray
    t_end: np.ndarray

    def complete(self) -> np.ndarray:
        """Mask of the beats whose P (200 ms before the QRS) to T end lies within the record."""
        return (self.qrs_on - PR_S >= 0) & (self.t_end <= (self.x.shape[1] - 1) / self.fs)


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _lead_dirs(rng: np.random.Generator) -> np.ndarray:
    """(8, 3): I, II, V1-V6."""
    ang = np.deg2rad(_PRECORDIAL_DEG + rng.normal(0, 5, 6))
    prec = (
        np.stack([np.cos(ang), np.zeros(6), np.sin(ang)], 1) * (_PRECORDIAL_GAIN * rng.lognormal(0, 0.12, 6))[:, None]
    )
    return np.vstack([[1.0, 0.0, 0.0], [0.5, np.sqrt(3) / 2, 0.0], prec])


def _noise(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """(8, T) in mV: white, baseline wander of 0.1 mV (plus 0.05 mV slower), muscle noise (white above 20 Hz)."""
    n = len(t)
    white = rng.normal(0, WHITE_MV, (8, n))
    f = rng.uniform(0.15, 0.35, (8, 1))
    wander = 0.1 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi, (8, 1)))
    wander += 0.05 * np.sin(2 * np.pi * 0.05 * t + rng.uniform(0, 2 * np.pi, (8, 1)))
    sos = sps.butter(2, 20.0, btype="highpass", fs=RENDER_FS, output="sos")
    muscle = sps.sosfilt(sos, rng.normal(0, MUSCLE_MV, (8, n)), axis=-1)
    return white + wander + muscle


def synth(seed: int, fs: int = 100, *, noise: bool = False) -> Synthetic:
    """One synthetic 10 s record (module docstring), band-passed at ``fs`` Hz, in mV."""
    rng = np.random.default_rng(seed)
    hr, qrsd, qtc, pr = rng.uniform(50, 110), rng.uniform(0.08, 0.12), rng.uniform(0.39, 0.45), rng.uniform(0.13, 0.2)
    rr_mean = 60.0 / hr
    n_k = int(DURATION_S / rr_mean) + 4
    rr = rr_mean * (1 + rng.normal(0, 0.03, n_k))
    r = -rng.uniform(0, rr_mean) + np.cumsum(rr) - rr[0]
    qt = np.clip(qtc * np.sqrt(rr), 0.36, 0.44)
    sig_t = 0.11 * qt
    qrs_on = r - qrsd / 2
    t_end = qrs_on + qt
    qrs_gain = rng.lognormal(0, 0.2)
    vectors = _WAVES * np.array([rng.lognormal(0, 0.15), qrs_gain, qrs_gain, qrs_gain, rng.lognormal(0, 0.25)])[:, None]
    vectors = vectors @ _rotation(rng, 30.0).T
    st = rng.normal(size=3) * rng.uniform(0.0, 0.25) if rng.random() < 0.5 else np.zeros(3)

    t = np.arange(round(DURATION_S * RENDER_FS)) / RENDER_FS
    tau = t[None, :] - r[:, None]  # (K, T)
    one = np.ones_like(r)
    # P, Q, R, S, T centres relative to R and their sigmas; the P wave starts the PR interval before the QRS
    centres = np.array([-qrsd / 2 - pr + 0.05, -0.3 * qrsd, 0.0, 0.3 * qrsd, 0.0])[None, :] * one[:, None]
    centres[:, 4] = t_end - r - 2.5 * 0.85 * sig_t
    sigmas = np.stack([0.02 * one, 0.1 * qrsd * one, 0.11 * qrsd * one, 0.1 * qrsd * one, sig_t], 1)
    d = tau[:, None, :] - centres[:, :, None]  # (K, 5, T)
    s = np.broadcast_to(sigmas[:, :, None], d.shape).copy()
    s[:, 4] *= np.where(d[:, 4] < 0, 1.35, 0.85)  # asymmetric T: slow upstroke, fast downstroke
    g = np.exp(-0.5 * (d / s) ** 2)
    dipole = np.einsum("kwt,wc->tc", g, vectors)
    rise = expit((tau - qrsd / 2) / (0.1 * qrsd))
    fade = np.exp(-0.5 * (np.clip(d[:, 4], 0, None) / (0.85 * sig_t[:, None])) ** 2)
    dipole += (rise * fade).sum(0)[:, None] * st[None, :]

    leads8 = _lead_dirs(rng) @ dipole.T
    if noise:
        leads8 += _noise(rng, t)
    x = np.empty((N_LEADS, len(t)))
    x[:2], x[2:6], x[6:] = leads8[:2], derive_limb_leads(leads8[0], leads8[1]), leads8[2:]
    y = bandpass(resample(x, RENDER_FS, fs), fs)
    return Synthetic(y, fs, qrs_on, qrs_on + qrsd, t_end)


def match(beats: Beats, truth: Synthetic) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the true beat matched to each detected one (nearest QRS onset), and its distance in s."""
    on = beats.qrs_on / beats.fs
    nearest = np.abs(on[:, None] - truth.qrs_on[None, :]).argmin(1)
    return nearest, np.abs(on - truth.qrs_on[nearest])


def errors_ms(records: list[Synthetic]) -> dict[str, np.ndarray]:
    """Detected - true of every matched beat, in ms, per fiducial point, and the count differences."""
    out: dict[str, list[float]] = {"qrs_on": [], "j": [], "t_end": [], "count": []}
    for rec in records:
        beats = detect_beats(rec.x, rec.fs)
        idx, dist = match(beats, rec)
        assert dist.max() < 0.06, "a detection matches no true beat"
        assert len(np.unique(idx)) == len(idx), "one true beat detected twice"
        for name in ("qrs_on", "j", "t_end"):
            out[name] += list(1000 * (getattr(beats, name) / rec.fs - getattr(rec, name)[idx]))
        out["count"].append(len(beats) - int(rec.complete().sum()))
    return {k: np.asarray(v) for k, v in out.items()}


def _summary(err: np.ndarray) -> tuple[float, float]:
    return float(np.median(np.abs(err))), float(np.percentile(np.abs(err), 95))


@pytest.mark.parametrize("fs", [100, 250, 500])
def test_clean_records_find_every_beat_and_its_fiducial_points(fs: int) -> None:
    # Prepare
    records = [synth(seed, fs) for seed in range(20)]

    # Execute
    err = errors_ms(records)

    # Assert
    assert np.all(np.abs(err["count"]) <= 1), err["count"]
    for name, limit in (("qrs_on", 20.0), ("j", 20.0), ("t_end", 40.0)):
        median, p95 = _summary(err[name])
        assert median < limit and p95 < 2 * limit, (name, median, p95)


@pytest.mark.parametrize("fs", [100, 500])
def test_noisy_records_keep_their_fiducial_points(fs: int) -> None:
    # Prepare: white noise, 0.1 mV baseline wander and muscle noise before the band-pass
    records = [synth(seed, fs, noise=True) for seed in range(100, 120)]

    # Execute
    err = errors_ms(records)

    # Assert
    assert np.all(np.abs(err["count"]) <= 1), err["count"]
    for name, limit in (("qrs_on", 25.0), ("j", 25.0), ("t_end", 50.0)):
        median, p95 = _summary(err[name])
        assert median < limit and p95 < 2 * limit, (name, median, p95)


def test_beats_do_not_depend_on_the_signal_scale_or_per_lead_standardisation() -> None:
    # Prepare
    rec = synth(3, noise=True)

    # Execute
    in_mv = detect_beats(rec.x, rec.fs)
    in_uv = detect_beats(rec.x * 1000.0, rec.fs)
    standardised = detect_beats(standardise(rec.x), rec.fs)

    # Assert
    for other in (in_uv, standardised):
        for name in ("r", "qrs_on", "j", "t_end", "p_on"):
            np.testing.assert_array_equal(getattr(other, name), getattr(in_mv, name))


@pytest.mark.parametrize("seed", range(6))
def test_windows_are_complete_ordered_and_disjoint(seed: int) -> None:
    # Prepare
    rec = synth(seed, 100, noise=seed % 2 == 1)

    # Execute
    beats = detect_beats(rec.x, rec.fs)
    masks = beats.windows()

    # Assert
    n = rec.x.shape[1]
    assert list(masks) == list(WINDOWS) and all(m.dtype == bool and m.shape == (n,) for m in masks.values())
    assert beats.p_on[0] >= 0 and beats.t_end[-1] <= n - 1
    assert np.all(
        (beats.p_on < beats.qrs_on) & (beats.qrs_on <= beats.r) & (beats.r < beats.j) & (beats.j < beats.t_end)
    )
    assert np.all(beats.t_end[:-1] < beats.p_on[1:])
    assert np.all(beats.p_on >= beats.qrs_on - round(PR_S * rec.fs))
    stacked = np.stack(list(masks.values()))
    assert stacked.sum(0).max() == 1
    assert masks["P"].sum() == (beats.qrs_on - beats.p_on).sum()
    assert masks["QRS"].sum() == (beats.j - beats.qrs_on).sum()
    assert masks["ST-T"].sum() == (beats.t_end - beats.j + 1).sum()


def test_windows_mark_the_documented_intervals() -> None:
    # Prepare
    idx = lambda *v: np.array(v, np.int64)  # noqa: E731
    beats = Beats(
        fs=100.0, n_samples=30, r=idx(6, 20), qrs_on=idx(5, 19), j=idx(8, 22), t_end=idx(12, 27), p_on=idx(2, 13)
    )

    # Execute
    masks = beats.windows()

    # Assert
    assert np.flatnonzero(masks["P"]).tolist() == [2, 3, 4, 13, 14, 15, 16, 17, 18]
    assert np.flatnonzero(masks["QRS"]).tolist() == [5, 6, 7, 19, 20, 21]
    assert np.flatnonzero(masks["ST-T"]).tolist() == [8, 9, 10, 11, 12, 22, 23, 24, 25, 26, 27]
    assert len(beats) == 2


def _with_nan() -> np.ndarray:
    x = synth(1).x.copy()
    x[4, 300] = np.nan
    return x


def _noise_only() -> np.ndarray:
    return bandpass(np.random.default_rng(0).normal(0.0, 0.1, (N_LEADS, 1000)), 100)


def _slow_waves() -> np.ndarray:
    t = np.arange(1000) / 100
    return np.linspace(0.5, 1.5, N_LEADS)[:, None] * np.sin(2 * np.pi * 1.1 * t)[None, :]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: np.zeros((N_LEADS, 1000), np.float32), "flat signal"),
        (lambda: np.full((N_LEADS, 1000), 0.3, np.float32), "flat signal"),
        (_with_nan, "non-finite"),
        (lambda: synth(1).x.T, r"shape \(12, n_samples\)"),
        (lambda: synth(1).x[:8], r"shape \(12, n_samples\)"),
        (lambda: synth(1).x[0], r"shape \(12, n_samples\)"),
        (lambda: synth(1).x[:, :50], "too short"),
        (_noise_only, "no QRS complex found"),
        (_slow_waves, "no QRS complex found"),
    ],
    ids=["zeros", "constant", "nan", "transposed", "8_leads", "one_lead", "too_short", "noise", "slow_waves"],
)
def test_undelineable_records_raise_a_clear_beat_error(make: Callable[[], np.ndarray], match: str) -> None:
    # Prepare
    x = make()

    # Execute / Assert
    with pytest.raises(BeatError, match=match):
        detect_beats(x, 100)


def test_too_low_a_sampling_rate_is_refused() -> None:
    with pytest.raises(BeatError, match="at least 50 Hz"):
        detect_beats(synth(1).x, 20)


def test_beat_error_is_a_value_error() -> None:
    assert issubclass(BeatError, ValueError)


@pytest.fixture(scope="module")
def cohort_records() -> list[tuple[np.ndarray, int, float, float]]:
    """(band-passed signal, fs, heart rate in bpm, QRS duration in s) of 8 ECGs per hospital, also at 100 Hz."""
    cfg = CohortConfig(n_ecgs=60)
    out: list[tuple[np.ndarray, int, float, float]] = []
    for site in range(cfg.n_sites):
        plan = plan_site(cfg, site)
        fs = plan.site.fs
        x = render_chunk(plan, 0, 8, seed=cfg.seed)
        for i in range(len(x)):
            hr, qrsd = float(plan.metadata["hr_bpm"].iloc[i]), float(plan.params["qrsd"][i])
            y = bandpass(x[i], fs)
            out.append((y, fs, hr, qrsd))
            if fs != 100:
                out.append((bandpass(resample(x[i], fs, 100), 100), 100, hr, qrsd))
    return out


def test_cohort_records_give_their_heart_rate_and_qrs_width(
    cohort_records: list[tuple[np.ndarray, int, float, float]],
) -> None:
    # Prepare
    assert {fs for _, fs, _, _ in cohort_records} == {100, 250, 500}

    for x, fs, hr, qrsd in cohort_records:
        # Execute
        beats = detect_beats(x, fs)

        # Assert
        assert abs(len(beats) - hr * DURATION_S / 60.0) <= 2, (fs, hr, len(beats))
        width = float(np.median(beats.j - beats.qrs_on)) / fs
        assert abs(width - qrsd) < 0.03, (fs, width, qrsd)
