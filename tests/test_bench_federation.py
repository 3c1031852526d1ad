"""The federation benchmark's summary over seeds (the runs themselves are benchmarks, not tests)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from common.config import RunConfig, TrainConfig

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_federation.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_federation", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summarise_ratios_gives_the_t_interval_of_the_mean() -> None:
    # Prepare: mean 2, sd 1, 3 values; t(0.975, 2 df) = 4.3027, so the half-width is 4.3027 / sqrt(3) = 2.484
    values = np.array([1.0, 2.0, 3.0])

    # Execute
    text = _bench().summarise_ratios(values)

    # Assert
    assert text == "mean 2.000 [95% CI -0.484-4.484], sd 1.000 (min 1.000, max 3.000, 3 seeds)"


def test_noise_floor_retrains_only_the_pooled_arm_with_another_training_seed(tmp_path: Path) -> None:
    # Prepare
    cfg = RunConfig(
        train=TrainConfig(seed=3, lr=1e-3), arms=("federated", "pooled"), data_dir=tmp_path, out_dir=tmp_path
    )

    # Execute
    again = _bench().noise_floor_config(cfg)

    # Assert: same cohort (so the same splits and test set), same training settings but the seed
    assert again.data == cfg.data
    assert again.train == cfg.train.model_copy(update={"seed": 1003})
    assert again.arms == ("pooled",)
    assert again.out_dir == tmp_path / "noise-floor"


def _write_seed(
    folder: Path, seed: int, fed: float, pooled: float, *, again: float | None = None, rounds: int = 15
) -> None:
    """A finished benchmark seed as ``run_comparison`` leaves it (only the fields the summary reads)."""
    config = {
        "data": {"kind": "synthetic", "cohort": {"seed": seed}},
        "train": {"seed": seed},
        "federated": {"rounds": rounds},
        "out_dir": str(folder),
    }
    scores = [{"arm": arm, "test_site": "all", "auroc": a} for arm, a in (("federated", fed), ("pooled", pooled))]
    scores.append({"arm": "federated", "test_site": "hospital_a", "auroc": 0.5})
    # Validation curves: federated best = its test AUROC, last 0.05 lower; pooled best = its test AUROC, last 0.2 lower
    arms = [
        {"arm": "federated", "curve": [{"val_auroc": a} for a in (fed - 0.1, fed, fed - 0.05)]},
        {"arm": "pooled", "curve": [{"val_auroc": a} for a in (pooled, pooled - 0.2)]},
    ]
    run = folder / f"seed-{seed}"
    (run / "noise-floor").mkdir(parents=True)
    results = {"config": config, "scores": scores, "federation_overhead": {"ratio": 1.2}, "folds": [{"arms": arms}]}
    (run / "results.json").write_text(json.dumps(results))
    if again is not None:
        pooled_again = {"config": config, "scores": [{"arm": "pooled", "test_site": "all", "auroc": again}]}
        (run / "noise-floor" / "results.json").write_text(json.dumps(pooled_again))


def test_summary_pools_finished_seeds_of_several_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: two invocations' folders, one with an unfinished seed
    _write_seed(tmp_path / "a", 2, 0.9, 0.8, again=0.84)
    _write_seed(tmp_path / "a", 0, 0.8, 0.8)
    (tmp_path / "b" / "seed-7").mkdir(parents=True)
    _write_seed(tmp_path / "b", 1, 0.6, 0.8)
    bench = _bench()

    # Execute
    rows = bench.read_seed_runs([tmp_path / "a", tmp_path / "b"])

    # Assert: seed order, AUROC over all hospitals, the noise floor only where it was run
    assert [r["seed"] for r in rows] == [0.0, 1.0, 2.0]
    assert [r["auroc"] for r in rows] == pytest.approx([1.0, 0.75, 1.125])
    assert rows[2]["noise"] == pytest.approx(1.05) and "noise" not in rows[0]
    assert "skipped" in capsys.readouterr().out
    summary = bench.summary_over_seeds(rows)
    assert "mean test AUROC: federated 0.767, pooled 0.800 (ratio of the means 0.958)" in summary
    assert "test AUROC ratio, federated / pooled     mean 0.958" in summary
    assert "noise floor" not in summary  # one seed has no spread
    assert (
        "best (the round or epoch each arm keeps): federated 0.767, pooled 0.800; federated lower at 1 of 3" in summary
    )
    assert "after the last pass: federated 0.717, pooled 0.600; federated lower at 1 of 3 seeds" in summary


def test_summary_refuses_seeds_run_with_other_settings_or_twice(tmp_path: Path) -> None:
    _write_seed(tmp_path / "a", 0, 0.8, 0.8)
    _write_seed(tmp_path / "b", 1, 0.8, 0.8, rounds=5)
    _write_seed(tmp_path / "c", 0, 0.7, 0.8)
    bench = _bench()

    with pytest.raises(ValueError, match="differ in more than the seed"):
        bench.read_seed_runs([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="seed 0 appears twice"):
        bench.read_seed_runs([tmp_path / "a", tmp_path / "c"])
    with pytest.raises(FileNotFoundError, match="no benchmark output folder"):
        bench.read_seed_runs([tmp_path / "missing"])


def test_a_cohort_the_benchmark_generated_is_deleted_unless_kept(tmp_path: Path) -> None:
    bench = _bench()
    new, old, kept = tmp_path / "new", tmp_path / "old", tmp_path / "kept"
    old.mkdir()

    for folder, keep in ((new, False), (old, False), (kept, True)):
        with bench.generated_cohort(folder, keep=keep):
            (folder / "hospital_a").mkdir(parents=True, exist_ok=True)

    assert not new.exists()
    assert (old / "hospital_a").is_dir() and (kept / "hospital_a").is_dir()
