"""The built-in synthetic multi-hospital 12-lead ECG cohort.

Real hospital ECGs cannot ship with fedami, so this module generates a cohort that behaves like the
clinical problem: AMI positives with territory-consistent ST-T changes, negatives with ST-T mimics,
age and sex that carry real risk signal, several ECGs per patient, and hospitals that differ in
size, prevalence, demographics and device.

How a signal is made
--------------------
Each heartbeat is a sum of Gaussian waves (P, septal Q, R, S, T with an asymmetric T) of a 3-D
cardiac dipole in body axes ``x`` = left, ``y`` = inferior (feet), ``z`` = anterior. Ischaemic
injury adds an "injury current" vector that is present from the J point through the T wave: its
projection on a lead is the ST deviation, so a territory's ST elevation and the reciprocal ST
depression opposite it follow from geometry alone. The dipole is projected on leads I, II and
V1-V6 (with patient-specific axis rotation and precordial gains). Noise is added per *electrode*
(RA, LA, LL, V1-V6: baseline wander, muscle noise, mains hum) and turned into lead noise the way an
electrocardiograph does, then the device filters and quantises. III, aVR, aVL and aVF are finally
derived with the Einthoven/Goldberger identities, so those hold exactly.

Everything is vectorised over a chunk of ECGs; each chunk's noise is seeded from
``(seed, site, chunk)`` so the output is the same bytes whatever the caller does between chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from common.config import CohortConfig, SiteSpec
from common.data.leads import N_LEADS
from common.data.splits import patient_split, patient_table

CHUNK: Final[int] = 256
"""ECGs rendered together; fixed so that the random streams do not depend on memory or speed."""

TERRITORIES: Final[tuple[str, ...]] = ("anterior", "inferior", "lateral")
MIMICS: Final[tuple[str, ...]] = ("none", "early_repol", "lvh_strain", "old_mi", "nonspecific")
PATTERNS: Final[tuple[str, ...]] = ("none", "stemi", "subtle", "silent")
"""ECG pattern of a patient: no AMI, ST elevation, subtle ST depression/T inversion, or an AMI whose
ECG shows no ischaemic change at all (common in practice, and what caps any ECG model's AUROC)."""


def _unit(v: tuple[float, float, float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


# Injury-current directions of each territory (x left, y inferior, z anterior). Inferior includes a
# posterior component, so V1-V3 show the reciprocal depression typical of inferoposterior AMI.
_TERRITORY_DIR: Final[dict[str, np.ndarray]] = {
    "anterior": _unit((0.15, -0.25, 1.0)),
    "inferior": _unit((-0.15, 1.0, -0.3)),
    "lateral": _unit((1.0, -0.35, -0.1)),
}

# Mean wave vectors in mV for a normal heart: P, septal Q, R, S, T.
_WAVES: Final[tuple[str, ...]] = ("P", "Q", "R", "S", "T")
_BASE_VECTORS: Final[np.ndarray] = np.array(
    [
        [0.08, 0.13, 0.03],  # P: atria, left-inferior
        [-0.12, 0.05, 0.25],  # septal depolarisation: rightward, anterior (r in V1, q in V6)
        [1.00, 0.85, -0.55],  # LV free wall: left, inferior, posterior
        [-0.25, -0.15, -0.35],  # basal depolarisation: S waves
        [0.26, 0.20, 0.13],  # repolarisation, concordant with R in the frontal plane
    ]
)

# Lead directions. Precordial angles in the transverse plane (degrees from +x towards +z) and a
# proximity gain that makes V2-V4 the largest, as on a real chest.
_LEAD_I: Final[np.ndarray] = np.array([1.0, 0.0, 0.0])
_LEAD_II: Final[np.ndarray] = np.array([0.5, np.sqrt(3) / 2, 0.0])
_PRECORDIAL_DEG: Final[np.ndarray] = np.array([115.0, 95.0, 75.0, 55.0, 30.0, 0.0])
_PRECORDIAL_GAIN: Final[np.ndarray] = np.array([1.0, 1.35, 1.45, 1.35, 1.15, 1.0])


@dataclass(frozen=True)
class SitePlan:
    """What will be generated for one site: the metadata table and per-ECG generator parameters.

    ``params`` holds one array per parameter with the ECG as the first axis.
    """

    site: SiteSpec
    site_index: int
    n_samples: int
    metadata: pd.DataFrame
    params: dict[str, np.ndarray]


def _rng(cfg: CohortConfig, site_index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, site_index, stream])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


def _ami_logit(age: np.ndarray, male: np.ndarray) -> np.ndarray:
    """Risk score without the site intercept: AMI risk rises with age and is higher in men."""
    out: np.ndarray = 0.045 * (age - 65.0) + 0.55 * male
    return out


def _calibrate_intercept(score: np.ndarray, weights: np.ndarray, target: float) -> float:
    """Intercept ``b`` such that the ECG-weighted mean of ``sigmoid(b + score)`` is ``target``."""
    lo, hi = -20.0, 10.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if np.average(_sigmoid(mid + score), weights=weights) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _random_rotation(rng: np.random.Generator, n: int, sd_deg: tuple[float, float, float]) -> np.ndarray:
    """Small random rotations (heart axis variation): about z (frontal), y and x."""
    a, b, c = (np.deg2rad(rng.normal(0.0, s, n)) for s in sd_deg)
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    one, zero = np.ones(n), np.zeros(n)
    rz = np.stack([np.stack([ca, -sa, zero], -1), np.stack([sa, ca, zero], -1), np.stack([zero, zero, one], -1)], 1)
    ry = np.stack([np.stack([cb, zero, sb], -1), np.stack([zero, one, zero], -1), np.stack([-sb, zero, cb], -1)], 1)
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cc, -sc], -1), np.stack([zero, sc, cc], -1)], 1)
    out: np.ndarray = rz @ ry @ rx
    return out


def plan_site(cfg: CohortConfig, site_index: int) -> SitePlan:
    """Draw patients, demographics, labels, patterns and generator parameters for one site."""
    site = cfg.site_specs()[site_index]
    n_ecg = cfg.site_sizes()[site_index]
    d = cfg.difficulty
    rng = _rng(cfg, site_index, 0)

    # Patients and their number of ECGs (1 + Poisson), trimmed to exactly n_ecg.
    counts: list[int] = []
    while sum(counts) < n_ecg:
        counts.extend((1 + rng.poisson(cfg.ecgs_per_patient - 1.0, size=max(16, n_ecg // 2))).tolist())
    csum = np.cumsum(counts)
    n_pat = int(np.searchsorted(csum, n_ecg) + 1)
    pat_counts = np.array(counts[:n_pat])
    pat_counts[-1] -= int(csum[n_pat - 1] - n_ecg)
    ecg_patient = np.repeat(np.arange(n_pat), pat_counts)

    # Patient traits.
    age = np.clip(np.round(rng.normal(site.age_mean, site.age_sd, n_pat)), 18, 99)
    male = (rng.random(n_pat) < site.male_fraction).astype(np.float64)
    score = _ami_logit(age, male)
    intercept = _calibrate_intercept(score, pat_counts.astype(np.float64), site.prevalence)
    ami = rng.random(n_pat) < _sigmoid(intercept + score)

    territory = rng.choice(len(TERRITORIES), size=n_pat, p=[0.45, 0.40, 0.15])
    u = rng.random(n_pat)
    silent_p, subtle_p = 0.10 + 0.30 * d, 0.15 + 0.30 * d
    pattern = np.where(ami, np.where(u < silent_p, 3, np.where(u < silent_p + subtle_p, 2, 1)), 0)

    mimic_weights = np.stack(
        [
            np.where((age < 50) & (male > 0), 1.2, 0.25),  # early repolarisation: young men
            np.where(age >= 60, 1.0, 0.35),  # LVH with strain: older patients
            np.where(age >= 60, 0.8, 0.25),  # old infarct Q waves
            np.full(n_pat, 1.0),  # non-specific ST-T changes
        ],
        axis=1,
    )
    mimic_weights /= mimic_weights.sum(1, keepdims=True)
    mimic_kind = 1 + (rng.random((n_pat, 1)) > np.cumsum(mimic_weights, 1)).sum(1)
    has_mimic = rng.random(n_pat) < (0.12 + 0.36 * d)
    mimic = np.where(has_mimic, mimic_kind, 0)
    old_territory = rng.choice(len(TERRITORIES), size=n_pat)

    rotation = _random_rotation(rng, n_pat, (18.0, 10.0, 8.0))
    qrs_amp = rng.lognormal(0.0, 0.2, n_pat) * np.where(male > 0, 1.08, 0.92) * (1.15 - 0.004 * (age - 50))
    t_amp = rng.lognormal(0.0, 0.2, n_pat)
    prec_gain = rng.lognormal(0.0, 0.12, (n_pat, 6))
    prec_angle = _PRECORDIAL_DEG[None, :] + rng.normal(0.0, 5.0, (n_pat, 6))
    hr_base = np.clip(rng.normal(72.0, 11.0, n_pat), 48.0, 115.0)
    pr = np.clip(rng.normal(0.160, 0.020, n_pat), 0.11, 0.24)
    qrsd = np.clip(rng.normal(0.092, 0.010, n_pat), 0.07, 0.13)
    qtc = np.clip(rng.normal(0.410, 0.022, n_pat) + 0.012 * (1 - male), 0.35, 0.50)

    # Per-ECG draws (an AMI evolves between a patient's serial ECGs).
    p = ecg_patient
    pat_of = lambda a: a[p]  # noqa: E731
    label = pat_of(ami).astype(np.int8)
    pat = pat_of(pattern)
    terr_dir = np.stack([_TERRITORY_DIR[t] for t in TERRITORIES])
    terr = terr_dir[pat_of(territory)]
    old_terr = terr_dir[pat_of(old_territory)]
    mim = pat_of(mimic)

    base = _BASE_VECTORS[None].repeat(n_ecg, 0)
    vec = base.copy()
    vec[:, 0] *= rng.lognormal(0.0, 0.15, n_ecg)[:, None]
    vec[:, 1:4] *= pat_of(qrs_amp)[:, None, None]
    vec[:, 4] *= pat_of(t_amp)[:, None]
    st = np.zeros((n_ecg, 3))

    # AMI, ST-elevation pattern: injury current towards the territory, hyperacute T, sometimes Q.
    is_stemi = pat == 1
    st_amp = rng.lognormal(np.log(0.30 - 0.18 * d), 0.55, n_ecg)
    st[is_stemi] += terr[is_stemi] * st_amp[is_stemi, None]
    vec[is_stemi, 4] += terr[is_stemi] * (0.6 * st_amp[is_stemi, None] * rng.uniform(0.5, 1.5, (is_stemi.sum(), 1)))
    q_wave = is_stemi & (rng.random(n_ecg) < 0.35)
    q_amp = rng.uniform(0.1, 0.35, n_ecg)[:, None]
    vec[q_wave, 1] -= terr[q_wave] * q_amp[q_wave]
    vec[q_wave, 2] -= terr[q_wave] * 0.5 * q_amp[q_wave]
    # AMI without ST elevation: diffuse subendocardial ST depression and territorial T inversion.
    is_subtle = pat == 2
    dep = rng.lognormal(np.log(0.09 - 0.03 * d), 0.5, n_ecg)
    st[is_subtle] -= _unit(tuple(_BASE_VECTORS[2]))[None] * dep[is_subtle, None]
    vec[is_subtle, 4] -= terr[is_subtle] * rng.uniform(0.05, 0.25, (is_subtle.sum(), 1))

    # Mimics among any patient (positives may have them too).
    er = mim == 1
    t_dir = vec[:, 4] / np.linalg.norm(vec[:, 4], axis=1, keepdims=True)
    st[er] += t_dir[er] * rng.lognormal(np.log(0.10 + 0.06 * d), 0.4, (er.sum(), 1))
    vec[er, 4] *= 1.25
    lvh = mim == 2
    lvh_k = rng.uniform(1.5, 2.2, (lvh.sum(), 1))
    vec[lvh, 2] *= lvh_k
    vec[lvh, 3] *= lvh_k
    st[lvh] -= _TERRITORY_DIR["lateral"][None] * rng.uniform(0.05, 0.2, (lvh.sum(), 1))
    vec[lvh, 4] = 0.3 * vec[lvh, 4] - _TERRITORY_DIR["lateral"][None] * rng.uniform(0.1, 0.3, (lvh.sum(), 1))
    old = mim == 3
    oq = rng.uniform(0.15, 0.45, (old.sum(), 1))
    vec[old, 1] -= old_terr[old] * oq
    vec[old, 2] -= old_terr[old] * 0.5 * oq
    vec[old, 4] -= old_terr[old] * rng.uniform(0.0, 0.15, (old.sum(), 1))
    st[old] += old_terr[old] * rng.uniform(0.0, 0.06, (old.sum(), 1))
    ns = mim == 4
    rnd = rng.normal(size=(ns.sum(), 3))
    st[ns] += rnd / np.linalg.norm(rnd, axis=1, keepdims=True) * rng.uniform(0.03, 0.12, (ns.sum(), 1))
    vec[ns, 4] *= rng.uniform(0.3, 0.7, (ns.sum(), 1))

    # Rotate every vector into the patient's own heart orientation.
    rot = pat_of(rotation)
    vec = np.einsum("nij,nwj->nwi", rot, vec)
    st = np.einsum("nij,nj->ni", rot, st)

    noise_mult = (0.6 + 0.8 * d) * rng.lognormal(0.0, 0.5, n_ecg)
    hr = np.clip(pat_of(hr_base) + rng.normal(0.0, 5.0, n_ecg) + 6.0 * label, 42.0, 140.0)
    params: dict[str, np.ndarray] = {
        "vectors": vec,
        "st": st,
        "hr": hr,
        "pr": pat_of(pr),
        "qrsd": pat_of(qrsd),
        "qtc": pat_of(qtc),
        "prec_angle": pat_of(prec_angle),
        "prec_gain": pat_of(prec_gain),
        "muscle_sd": site.muscle_noise_mv * noise_mult,
        "wander": site.wander_mv * rng.lognormal(0.0, 0.5, n_ecg),
        "hum": site.hum_mv * rng.lognormal(0.0, 0.5, n_ecg),
    }

    split = patient_split(patient_table(ecg_patient, label), cfg.split_fractions, _rng(cfg, site_index, 1))
    stemi_amp = np.where(is_stemi, st_amp, np.where(is_subtle, -dep, 0.0))
    meta = pd.DataFrame(
        {
            "record_id": [f"{site.name}-{i:06d}" for i in range(n_ecg)],
            "patient_id": [f"{site.name}-p{j:06d}" for j in ecg_patient],
            "site": site.name,
            "age": pat_of(age),
            "sex": np.where(pat_of(male) > 0, "M", "F"),
            "label": label,
            "fs": site.fs,
            "split": split[ecg_patient],
            "pattern": np.asarray(PATTERNS)[pat],
            "territory": np.where(pat > 0, np.asarray(TERRITORIES)[pat_of(territory)], ""),
            "mimic": np.asarray(MIMICS)[mim],
            "st_amp_mv": np.round(stemi_amp, 4),
            "hr_bpm": np.round(hr, 1),
        }
    )
    return SitePlan(site, site_index, round(cfg.duration_s * site.fs), meta, params)


def _beats(rng: np.random.Generator, hr: np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """R-peak times (B, K) with sinus arrhythmia and jitter, and each beat's preceding RR."""
    b = hr.shape[0]
    rr_mean = 60.0 / hr
    k = int(np.ceil((duration + 2.0) / (60.0 / 140.0 * 0.8))) + 2
    f_resp = rng.uniform(0.15, 0.35, (b, 1))
    phase = rng.uniform(0, 2 * np.pi, (b, 1))
    approx_t = np.arange(k)[None, :] * rr_mean[:, None]
    rr = rr_mean[:, None] * (
        1.0 + 0.035 * np.sin(2 * np.pi * f_resp * approx_t + phase) + rng.normal(0.0, 0.015, (b, k))
    )
    start = -rng.uniform(0.0, 1.0, (b, 1)) * rr_mean[:, None]
    r_times = start + np.cumsum(rr, axis=1) - rr[:, :1]
    return r_times, rr


def render_chunk(plan: SitePlan, start: int, stop: int, seed: int) -> np.ndarray:
    """Render ECGs ``start:stop`` of a site plan as float32 (B, 12, T) in mV."""
    site, fs, n_t = plan.site, plan.site.fs, plan.n_samples
    if not 0 <= start < stop <= len(plan.metadata):
        raise ValueError(f"records {start}:{stop} outside the site's {len(plan.metadata)} records")
    rng = np.random.default_rng([seed, plan.site_index, 2, start])
    sl = slice(start, stop)
    pr = {k: v[sl] for k, v in plan.params.items()}
    b = stop - start
    t = (np.arange(n_t) / fs).astype(np.float64)

    r_times, rr = _beats(rng, pr["hr"], n_t / fs)
    n_k = r_times.shape[1]
    # Per-beat timing variation (PR, QRS, QT follow the preceding RR by Bazett's rule).
    qrsd = pr["qrsd"][:, None] * (1.0 + rng.normal(0.0, 0.03, (b, n_k)))
    prk = pr["pr"][:, None] * (1.0 + rng.normal(0.0, 0.03, (b, n_k)))
    qt = pr["qtc"][:, None] * np.sqrt(np.clip(rr, 0.3, 2.0)) * (1.0 + rng.normal(0.0, 0.02, (b, n_k)))
    sig_t = 0.11 * qt
    c_t = -qrsd / 2 + qt - 2.5 * 0.85 * sig_t
    centers = np.stack([-qrsd / 2 - prk + 0.05, -0.3 * qrsd, 0 * qrsd, 0.3 * qrsd, c_t], axis=-1)
    sigmas = np.stack([np.full_like(qrsd, 0.02), 0.1 * qrsd, 0.11 * qrsd, 0.1 * qrsd, sig_t], axis=-1)
    beat_amp = 1.0 + 0.04 * np.sin(2 * np.pi * 0.25 * r_times + rng.uniform(0, 2 * np.pi, (b, 1)))

    # Index of the last R peak at or before each sample, by one sorted search over all rows.
    offset = (np.arange(b) * 1000.0)[:, None]
    flat = (r_times + offset).ravel()
    last = np.searchsorted(flat, (t[None, :] + offset).ravel(), side="right").reshape(b, n_t) - 1
    last -= (np.arange(b) * n_k)[:, None]

    rows = np.arange(b)[:, None]
    f32 = np.float32
    dipole = np.zeros((b, n_t, 3), dtype=f32)
    vectors, st = pr["vectors"].astype(f32), pr["st"].astype(f32)
    centers, sigmas, qrsd = centers.astype(f32), sigmas.astype(f32), qrsd.astype(f32)
    r32, amp32, t32 = r_times.astype(f32), beat_amp.astype(f32), t.astype(f32)
    # Only the waves that can reach a sample are evaluated: the previous beat's T wave and injury
    # current, the current beat's everything, the next beat's P-QRS.
    for j, waves, with_st in ((-1, [4], True), (0, [0, 1, 2, 3, 4], True), (1, [0, 1, 2, 3], False)):
        kk = last + j
        valid = (kk >= 0) & (kk < n_k)
        kk = np.clip(kk, 0, n_k - 1)
        tau = t32[None, :] - r32[rows, kk]
        c = centers[:, :, waves][rows, kk]
        s = sigmas[:, :, waves][rows, kk]
        if 4 in waves:  # asymmetric T: slow upstroke, fast downstroke
            s[..., -1] *= np.where(tau < c[..., -1], f32(1.35), f32(0.85))
        g = np.exp(f32(-0.5) * ((tau[..., None] - c) / s) ** 2)
        g *= np.where(valid, amp32[rows, kk], f32(0.0))[..., None]
        dipole += np.matmul(g, vectors[:, waves])
        if with_st:  # injury current: on from the J point, fading with the T wave
            q = qrsd[rows, kk]
            rise = _sigmoid((tau - q / 2) / (f32(0.1) * q))
            after_t = np.clip(tau - centers[rows, kk, 4], 0.0, None) / (f32(0.85) * sigmas[rows, kk, 4])
            env = np.where(valid, rise * np.exp(f32(-0.5) * after_t**2), f32(0.0))
            dipole += env[..., None] * st[:, None, :]

    # Project on the eight independent leads: I, II, V1-V6.
    ang = np.deg2rad(pr["prec_angle"])
    prec = (
        np.stack([np.cos(ang), np.zeros_like(ang), np.sin(ang)], -1) * (_PRECORDIAL_GAIN * pr["prec_gain"])[..., None]
    )
    dirs = np.concatenate([np.broadcast_to(np.stack([_LEAD_I, _LEAD_II]), (b, 2, 3)), prec], axis=1)
    leads8 = np.einsum("btc,blc->blt", dipole, dirs)

    # Electrode noise (RA, LA, LL, V1-V6) turned into lead noise like the machine does.
    # Sinusoids with per-electrode phase via sin(wt + p) = sin(wt) cos(p) + cos(wt) sin(p).
    def sinusoid(freq: np.ndarray, phase: np.ndarray) -> np.ndarray:
        w = (2 * np.pi * freq * t).astype(f32)
        return np.sin(w) * np.cos(phase).astype(f32) + np.cos(w) * np.sin(phase).astype(f32)

    f1 = rng.uniform(0.15, 0.35, (b, 1, 1))
    f2 = rng.uniform(0.03, 0.10, (b, 1, 1))
    ph = rng.uniform(0, 2 * np.pi, (b, 9, 2))
    amp = (pr["wander"][:, None, None] * rng.uniform(0.3, 1.0, (b, 9, 1))).astype(f32)
    elec = amp * (sinusoid(f1, ph[..., :1]) + f32(0.5) * sinusoid(f2, ph[..., 1:]))
    elec += pr["muscle_sd"][:, None, None].astype(f32) * rng.standard_normal((b, 9, n_t), dtype=f32)
    if site.hum_mv > 0:
        hum_w = (rng.uniform(0.5, 1.5, (b, 9, 1)) * pr["hum"][:, None, None]).astype(f32)
        elec += hum_w * sinusoid(np.full((b, 1, 1), 50.0), rng.uniform(0, 2 * np.pi, (b, 1, 1)))
    ra, la, ll = elec[:, 0], elec[:, 1], elec[:, 2]
    wct = (ra + la + ll) / 3.0
    leads8[:, 0] += la - ra
    leads8[:, 1] += ll - ra
    leads8[:, 2:] += elec[:, 3:] - wct[:, None]

    leads8 = _device_filter(leads8, site)
    res = site.resolution_uv / 1000.0
    leads8 = (np.round(leads8 * site.gain / res) * res).astype(np.float32)

    out = np.empty((b, N_LEADS, n_t), dtype=np.float32)
    lead_i, lead_ii = leads8[:, 0], leads8[:, 1]
    out[:, 0], out[:, 1] = lead_i, lead_ii
    out[:, 2:6] = derive_limb_leads(lead_i, lead_ii)
    out[:, 6:] = leads8[:, 2:]
    return out


def derive_limb_leads(lead_i: np.ndarray, lead_ii: np.ndarray) -> np.ndarray:
    """III, aVR, aVL, aVF from I and II (Einthoven and Goldberger), stacked on axis -2."""
    return np.stack([lead_ii - lead_i, -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2, lead_ii - lead_i / 2], axis=-2)


def _device_filter(x: np.ndarray, site: SiteSpec) -> np.ndarray:
    from scipy import signal as sps  # about 0.7 s to import; a node opening a stored cohort never needs it

    sos = sps.butter(4, site.lowpass_hz, btype="lowpass", fs=site.fs, output="sos")
    if site.highpass_hz > 0:
        sos = np.vstack([sps.butter(1, site.highpass_hz, btype="highpass", fs=site.fs, output="sos"), sos])
    out: np.ndarray = sps.sosfiltfilt(sos, x, axis=-1)
    return out


def iter_site_chunks(plan: SitePlan, seed: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, signals)`` chunks covering the whole site plan."""
    n = len(plan.metadata)
    for start in range(0, n, CHUNK):
        yield start, render_chunk(plan, start, min(n, start + CHUNK), seed)
