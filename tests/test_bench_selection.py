"""The model-selection benchmark's folds and variants (its figures are a benchmark, not a test)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_selection", REPO / "benchmarks" / "bench_selection.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_folds_keep_each_patient_in_one_fold_and_cover_every_record_once() -> None:
    # Prepare: 300 ECGs of 120 patients (1 to 4 each), 15 % positive
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(120), rng.integers(1, 5, 120))
    y = (rng.random(len(patients)) < 0.15).astype(np.float32)
    # Execute
    folds = _bench().grouped_folds(y, patients.astype(str), 5, seed=0)
    # Assert
    assert len(folds) == 5 and np.array_equal(np.sort(np.concatenate(folds)), np.arange(len(y)))
    owners = [set(patients[f]) for f in folds]
    assert all(not (a & b) for i, a in enumerate(owners) for b in owners[i + 1 :])
    assert all(y[f].sum() > 0 for f in folds)


def test_variants_by_name_and_an_unknown_one_lists_the_known() -> None:
    bench = _bench()
    assert bench.variant("cnn1d").model == "cnn1d" and bench.variant("default") == bench.Variant()
    assert bench.variant("wide-regularised").kwargs["width"] == 32
    aux = bench.variant("superclass-auxiliary").train["auxiliary_targets"]
    assert aux == ("superclass_NORM", "superclass_STTC", "superclass_CD", "superclass_HYP")  # the engine trains them
    subclasses = bench.variant("subclass-auxiliary").train["auxiliary_targets"]
    assert len(subclasses) == 19 and "subclass_LVH" in subclasses and "subclass_IMI" not in subclasses
    localised = bench.variant("localised-auxiliary").train["auxiliary_targets"]
    assert localised[:19] == subclasses
    assert set(localised[19:]) == {"subclass_AMI", "subclass_IMI", "subclass_LMI", "subclass_PMI"}
    with pytest.raises(SystemExit, match=r"unknown variant 'tiny'; known: default, wide-regularised.*cnn1d"):
        bench.variant("tiny")
    with pytest.raises(SystemExit, match="--models and --reuse are fedami study's"):
        bench.main(["--data", "synthetic", "--models", "cnn1d", "--data-dir", "/nonexistent"])


@pytest.mark.slow
def test_the_benchmark_compares_variants_on_a_small_cohort(tmp_path: Path) -> None:
    import json
    import subprocess

    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_selection.py"), "--data", "synthetic",
                           "--n-ecgs", "600", "--epochs", "1", "--seeds", "2", "--folds", "2",
                           "--variants", "default,cnn1d", "--data-dir", str(tmp_path / "data"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "out" / "selection.json").read_text())["results"]
    assert set(results) == {"default", "cnn1d"}
    assert all(len(r["aurocs"]) == 4 and len(r["ensemble_aurocs"]) == 2 for r in results.values())
    assert "test never loaded" in proc.stdout
