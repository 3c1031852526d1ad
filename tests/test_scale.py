"""Paper scale: the preset, the cohort planner on a small fraction of it, storing at the training rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.config import RunConfig
from common.config.sections import STUDY_ECGS, STUDY_PATIENTS
from common.data.arrays import load_split
from common.synthetic.cohort import cohort_plan, ensure_synthetic_cohort
from sim.cli import paths, settings
from sim.run import OPTIONS, build_parser

from .conftest import TINY


def _run_config(argv: list[str]) -> RunConfig:
    args = build_parser().parse_args([*argv, "--out", "/tmp/unused"])
    return settings(args, RunConfig, OPTIONS, **paths(args, "run"))


def test_the_paper_preset_is_the_studys_cohort_and_options_override_it() -> None:
    cohort = _run_config(["--preset", "paper"]).data.cohort  # type: ignore[union-attr]
    assert cohort.n_ecgs == STUDY_ECGS and cohort.n_sites == 3 and cohort.store_fs == 100
    assert round(STUDY_ECGS / cohort.ecgs_per_patient) == pytest.approx(STUDY_PATIENTS, abs=5)
    smaller = _run_config(["--preset", "paper", "--n-ecgs", "1457", "--store-fs", "250"]).data.cohort  # type: ignore[union-attr]
    assert smaller.n_ecgs == 1457 and smaller.store_fs == 250 and smaller.ecgs_per_patient == cohort.ecgs_per_patient


def test_the_planner_on_a_hundredth_of_the_paper_cohort(tmp_path: Path) -> None:
    # Prepare: the preset at 1 % of its size
    paper = _run_config(["--preset", "paper"]).data.cohort  # type: ignore[union-attr]
    cfg = paper.model_copy(update={"n_ecgs": round(paper.n_ecgs / 100)})
    # Execute
    plan = cohort_plan(cfg)
    stores = ensure_synthetic_cohort(cfg, tmp_path, progress=False)
    # Assert: sizes 47/30/22 %, about 1.5 ECGs per patient, prevalence rising 6 -> 10 %, 100 Hz on disk
    assert plan["ecgs"].sum() == cfg.n_ecgs
    assert tuple(plan["ecgs"]) == cfg.site_sizes() and (plan["ecgs"] / cfg.n_ecgs).round(2).tolist() == [
        0.47,
        0.3,
        0.22,
    ]
    assert plan["patients"].sum() == pytest.approx(cfg.n_ecgs / cfg.ecgs_per_patient, rel=0.05)
    assert plan["prevalence"].between(0.03, 0.14).all() and plan["prevalence"].is_monotonic_increasing
    assert (plan[["train_ecgs", "val_ecgs", "test_ecgs"]].sum(axis=1) == plan["ecgs"]).all()
    assert plan["device_fs"].tolist() == [500, 250, 100] and (plan["stored_fs"] == 100).all()
    for row, store in zip(plan.itertuples(), stores, strict=True):  # the plan is what generation stores
        meta = store.metadata
        assert (len(meta), meta["patient_id"].nunique(), int(meta["label"].sum())) == (
            row.ecgs,
            row.patients,
            row.positives,
        )
        assert store.manifest.fs == 100 and (meta["device_fs"] == row.device_fs).all() and (meta["fs"] == 100).all()
        assert (store.path / "signals.npy").stat().st_size == pytest.approx(row.store_bytes, abs=4096)


def test_a_cohort_stored_at_the_training_rate_trains_on_the_same_input(tmp_path: Path) -> None:
    # Prepare: the tiny cohort at its devices' rates (500/250/100 Hz) and at 100 Hz
    stored_at_100 = TINY.model_copy(update={"store_fs": 100})
    # Execute
    native = ensure_synthetic_cohort(TINY, tmp_path / "native", progress=False)
    small = ensure_synthetic_cohort(stored_at_100, tmp_path / "small", progress=False)
    # Assert: the same model input from both, a fifth of the disk at 500 Hz
    for a, b in zip(native, small, strict=True):
        x, y = load_split(a, "train", 100), load_split(b, "train", 100)
        np.testing.assert_allclose(np.asarray(x.x), np.asarray(y.x), atol=1e-6)
        assert x.meta["record_id"].tolist() == y.meta["record_id"].tolist()
    sizes = [(s.path / "signals.npy").stat().st_size for s in (native[0], small[0])]
    assert sizes[1] < sizes[0] / 4.9


def test_the_round_profile_says_who_waited_and_what_was_beyond_the_hospitals() -> None:
    # Prepare: a history.json round in which hospital_a is the slowest and hospital_c reported no timings
    from benchmarks.bench_scale import round_profile

    entry = {
        "round": 2,
        "train_s": 40.0,
        "trained": {
            "hospital_a": {"examples": 9, "loss": 0.5, "read_s": 0.0, "validate_s": 2.0, "train_s": 30.0,
                           "handler_s": 33.0},
            "hospital_b": {"examples": 5, "loss": 0.4, "read_s": 0.0, "validate_s": 1.0, "train_s": 20.0,
                           "handler_s": 21.5},
            "hospital_c": {"examples": 3, "loss": 0.6},
        },
    }  # fmt: skip

    # Execute
    profile = round_profile(entry)

    # Assert
    assert profile["outside_s"] == 7.0 and profile["round_s"] == 40.0
    assert profile["hospitals"]["hospital_a"]["waited_s"] == 0.0
    assert profile["hospitals"]["hospital_b"] == {
        "read_s": 0.0, "validate_s": 1.0, "train_s": 20.0, "handler_s": 21.5, "waited_s": 11.5,
    }  # fmt: skip
    assert profile["hospitals"]["hospital_c"] == {}
