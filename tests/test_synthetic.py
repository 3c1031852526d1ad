from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from common.config import CohortConfig
from common.data.leads import LEAD_INDEX
from common.data.store import SIGNALS_FILE, SiteStore
from common.models.features import FEATURE_NAMES, feature_matrix
from common.synthetic.cohort import ensure_synthetic_cohort
from common.synthetic.generator import CHUNK, plan_site, render_chunk

from .conftest import TINY


def test_same_seed_same_bytes_other_seed_other_bytes(tiny_cohort: list[SiteStore], tmp_path: Path) -> None:
    again = ensure_synthetic_cohort(TINY, tmp_path / "again", progress=False)
    other = ensure_synthetic_cohort(TINY.model_copy(update={"seed": 8}), tmp_path / "other", progress=False)

    for a, b, c in zip(tiny_cohort, again, other, strict=True):
        assert (a.path / SIGNALS_FILE).read_bytes() == (b.path / SIGNALS_FILE).read_bytes()
        assert a.metadata.equals(b.metadata)
        assert (a.path / SIGNALS_FILE).read_bytes() != (c.path / SIGNALS_FILE).read_bytes()


def test_chunks_do_not_depend_on_render_order() -> None:
    plan = plan_site(CohortConfig(n_ecgs=3000), 2)

    second_first = render_chunk(plan, CHUNK, 2 * CHUNK, seed=0)
    render_chunk(plan, 0, CHUNK, seed=0)

    assert np.array_equal(second_first, render_chunk(plan, CHUNK, 2 * CHUNK, seed=0))


def test_render_refuses_records_outside_the_plan() -> None:
    plan = plan_site(CohortConfig(n_ecgs=100), 2)

    with pytest.raises(ValueError, match="outside"):
        render_chunk(plan, 0, len(plan.metadata) + 1, seed=0)


def test_limb_leads_obey_einthoven_and_goldberger(tiny_cohort: list[SiteStore]) -> None:
    for store in tiny_cohort:
        x = np.asarray(store.signals(), dtype=np.float64)
        i, ii = x[:, 0], x[:, 1]

        np.testing.assert_allclose(x[:, 2], ii - i, atol=1e-6)
        np.testing.assert_allclose(x[:, 3], -(i + ii) / 2, atol=1e-6)
        np.testing.assert_allclose(x[:, 4], i - ii / 2, atol=1e-6)
        np.testing.assert_allclose(x[:, 5], ii - i / 2, atol=1e-6)


def test_signals_have_site_rate_length_and_mv_scale(tiny_cohort: list[SiteStore]) -> None:
    for store in tiny_cohort:
        x = store.signals()
        fs = store.manifest.fs

        assert x.shape[1:] == (12, 10 * fs)
        assert x.dtype == np.float32
        assert np.isfinite(x).all()
        r_amp = np.percentile(x[:, LEAD_INDEX["II"]], 99.9, axis=1)
        assert 0.3 < np.median(r_amp) < 3.0  # an R wave of about 1 mV in lead II
        assert (store.metadata["fs"] == fs).all()


def test_precordial_r_wave_progression() -> None:
    plan = plan_site(CohortConfig(n_ecgs=1000, difficulty=0.0), 2)
    x = render_chunk(plan, 0, 200, seed=0)

    r_amp = np.median(np.percentile(x[:, 6:], 99.5, axis=2), axis=0)  # V1..V6
    s_depth = np.median(-np.percentile(x[:, 6:], 0.5, axis=2), axis=0)

    assert r_amp[0] < r_amp[3] and r_amp[0] < r_amp[5]  # small r in V1, tall R in V4-V6
    assert s_depth[0] > r_amp[0] and s_depth[5] < r_amp[5]  # rS in V1, qR in V6


@pytest.mark.parametrize("site", [0, 1, 2])
def test_site_demographics_prevalence_and_patients(site: int) -> None:
    cfg = CohortConfig(n_ecgs=30000)
    spec = cfg.site_specs()[site]

    meta = plan_site(cfg, site).metadata

    assert len(meta) == cfg.site_sizes()[site]
    assert abs(meta["label"].mean() - spec.prevalence) < 0.015
    patients = meta.drop_duplicates("patient_id")
    assert abs(patients["age"].mean() - spec.age_mean) < 1.0
    assert abs((patients["sex"] == "M").mean() - spec.male_fraction) < 0.03
    assert abs(len(meta) / len(patients) - cfg.ecgs_per_patient) < 0.05
    assert meta.groupby("patient_id")["label"].nunique().max() == 1  # an episode labels all its ECGs


def test_age_and_sex_carry_risk() -> None:
    meta = plan_site(CohortConfig(n_ecgs=30000), 0).metadata
    pos, neg = meta[meta["label"] == 1], meta[meta["label"] == 0]

    assert pos["age"].mean() > neg["age"].mean() + 3
    assert (pos["sex"] == "M").mean() > (neg["sex"] == "M").mean() + 0.05


def test_hospitals_are_not_iid() -> None:
    cfg = CohortConfig(n_ecgs=30000)
    metas = [plan_site(cfg, i).metadata for i in range(3)]

    prevalences = [m["label"].mean() for m in metas]
    assert prevalences == sorted(prevalences) and prevalences[-1] - prevalences[0] > 0.025
    assert len({m["fs"].iloc[0] for m in metas}) == 3


def _st(store_x: np.ndarray, fs: int, lead: str) -> np.ndarray:
    return feature_matrix(store_x, fs)[:, FEATURE_NAMES.index(f"st_{LEAD_INDEX[lead]}")]


@pytest.mark.parametrize(
    ("territory", "elevated", "depressed"),
    [("anterior", ["V2", "V3"], ["III"]), ("inferior", ["III", "aVF"], ["aVL"]), ("lateral", ["I", "aVL"], ["III"])],
)
def test_stemi_changes_follow_the_territory(territory: str, elevated: list[str], depressed: list[str]) -> None:
    plan = plan_site(CohortConfig(n_ecgs=40000, difficulty=0.0), 2)
    meta = plan.metadata
    cases = meta.index[(meta["pattern"] == "stemi") & (meta["territory"] == territory) & (meta["mimic"] == "none")][:40]
    controls = meta.index[(meta["label"] == 0) & (meta["mimic"] == "none")][:40]
    x_case = np.concatenate([render_chunk(plan, i, i + 1, seed=0) for i in cases])
    x_ctrl = np.concatenate([render_chunk(plan, i, i + 1, seed=0) for i in controls])

    for lead in elevated:
        assert np.median(_st(x_case, 100, lead)) > np.median(_st(x_ctrl, 100, lead)) + 0.05, lead
    for lead in depressed:
        assert np.median(_st(x_case, 100, lead)) < np.median(_st(x_ctrl, 100, lead)) - 0.03, lead


def _st_feature_auroc(difficulty: float) -> float:
    plan = plan_site(CohortConfig(n_ecgs=12000, difficulty=difficulty, seed=3), 2)  # 100 Hz site
    x = render_chunk(plan, 0, len(plan.metadata), seed=3)
    feats = np.nan_to_num(feature_matrix(x, 100)[:, :12])
    y = plan.metadata["label"].to_numpy()
    scores = cross_val_predict(LogisticRegression(max_iter=2000), feats, y, cv=3, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


def test_difficulty_band_and_knob() -> None:
    default, easy, hard = _st_feature_auroc(0.5), _st_feature_auroc(0.0), _st_feature_auroc(1.0)

    assert 0.60 < default < 0.92  # well above chance, well below perfect
    assert easy > hard + 0.04


def _band_power(x: np.ndarray, fs: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x - x.mean(-1, keepdims=True), axis=-1)) ** 2
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / fs)
    return float(spec[..., (freqs >= lo) & (freqs <= hi)].sum() / spec.sum())


def test_devices_differ_in_mains_hum_and_noise() -> None:
    cfg = CohortConfig(n_ecgs=3000)
    plans = [plan_site(cfg, i) for i in range(3)]  # 500 Hz/0.05 Hz HP, 250 Hz/0.5 Hz HP, 100 Hz/0.05 Hz HP
    v1 = [render_chunk(p, 0, 64, seed=0)[:, 6] for p in plans]

    def line_ratio(k: int) -> float:  # 50 Hz line over the 47-48 Hz floor, per Hz
        fs = plans[k].site.fs
        return _band_power(v1[k], fs, 49.9, 50.1) / 0.2 / (_band_power(v1[k], fs, 47.0, 48.0) / 1.0)

    assert line_ratio(0) > 10  # mains hum at the 500 Hz device
    assert line_ratio(2) < 3  # the 100 Hz device's anti-alias filter removes it
    wander = [_band_power(x, p.site.fs, 0.0, 0.4) for x, p in zip(v1, plans, strict=True)]
    assert wander[1] < wander[0] / 3 and wander[1] < wander[2] / 3  # site b's 0.5 Hz high-pass


GOLDEN_COHORT = CohortConfig(seed=11, n_ecgs=60)
GOLDEN: dict[int, dict[str, object]] = {
    1: {
        "metadata_sha256": "fec5c535361975d26918c71ec27efb7c51763f86e72aba533d214a08740a799b",
        "signals": [[70160.353, 23335.057, 101.753], [15330.099, 14428.745, -96.677], [10454.254, 9114.51, 41.635]],
    },
}
"""Fingerprint of :data:`GOLDEN_COHORT` per generator version (see :func:`cohort_fingerprint`)."""


def cohort_fingerprint(stores: list[SiteStore]) -> dict[str, object]:
    """A fingerprint of a cohort's output that last-bit floating-point differences between machines leave alone.

    The metadata is hashed with its floats rounded to 6 decimals. The signals are summarised per hospital
    by their energy (sum of squares), roughness (sum of absolute sample-to-sample steps) and a projection
    on a fixed random +-1 vector, in float64: BLAS or SIMD rounding (which can move a sample by one ADC
    step) changes these by far less than the tolerances of the test, any change to a waveform, the noise
    or a filter by far more.
    """
    import hashlib

    meta = [s.metadata.round(6).to_csv(index=False) for s in stores]
    summary = []
    for i, store in enumerate(stores):
        x = np.asarray(store.signals(), dtype=np.float64)
        signs = np.random.default_rng([2026, i]).choice([-1.0, 1.0], size=x.size)
        summary.append(
            [
                round(float((x**2).sum()), 3),
                round(float(np.abs(np.diff(x)).sum()), 3),
                round(float(signs @ x.ravel()), 3),
            ]
        )
    return {"metadata_sha256": hashlib.sha256("".join(meta).encode()).hexdigest(), "signals": summary}


def test_a_changed_generator_output_needs_a_new_generator_version(tmp_path: Path) -> None:
    # Prepare: a small cohort generated by the current code
    from common.synthetic.key import GENERATOR_VERSION

    stores = ensure_synthetic_cohort(GOLDEN_COHORT, tmp_path, progress=False)

    # Execute
    got = cohort_fingerprint(stores)

    # Assert: the output recorded for this version (a stored cohort is reused under the version's key)
    bump = (
        f"the synthetic generator's output changed: bump GENERATOR_VERSION in common/synthetic/key.py "
        f"(now {GENERATOR_VERSION}) and record GOLDEN[{GENERATOR_VERSION + 1}] = {got!r}"
    )
    assert GENERATOR_VERSION in GOLDEN, f"no fingerprint recorded for version {GENERATOR_VERSION}: {got!r}"
    want = GOLDEN[GENERATOR_VERSION]
    assert got["metadata_sha256"] == want["metadata_sha256"], bump
    for site, (energy, roughness, projection) in zip(got["signals"], want["signals"], strict=True):  # type: ignore[call-overload]
        assert site[0] == pytest.approx(energy, rel=1e-5), bump
        assert site[1] == pytest.approx(roughness, rel=1e-5), bump
        assert site[2] == pytest.approx(projection, abs=0.05), bump  # 0.05 mV: many ADC steps of rounding noise
