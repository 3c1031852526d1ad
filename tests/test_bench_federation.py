"""The federation benchmark's summary over seeds (the runs themselves are benchmarks, not tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np

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
    assert again.cohort == cfg.cohort
    assert again.train == cfg.train.model_copy(update={"seed": 1003})
    assert again.arms == ("pooled",)
    assert again.out_dir == tmp_path / "noise-floor"
