"""The pooled study end to end on a tiny cohort: every model scored, the study's table, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from common.config import TrainConfig
from common.data.ingest import site_table
from common.data.sources import pooled_split
from common.data.store import SiteStore
from common.experiments.study import ModelRun, run_study


def test_study_writes_the_main_and_benchmark_tables(tiny_cohort: list[SiteStore], tmp_path: Path) -> None:
    train, val, test = (pooled_split(tiny_cohort, s, 100) for s in ("train", "val", "test"))
    cfg = TrainConfig(epochs=1, batch_size=32, num_threads=1)
    models = ["conv_bilstm_attn", "cnn1d", "features_logreg"]

    table = run_study(
        models,
        train,
        val,
        test,
        cfg,
        tmp_path,
        title="tiny",
        data_table=site_table(tiny_cohort),
        config={},
        n_boot=50,
        echo=lambda *_: None,
    )

    assert table["model"].tolist() == models
    assert table.iloc[0]["DeLong p vs conv_bilstm_attn"] == "ref"
    assert all(0 <= float(p) <= 1 for p in table["DeLong p vs conv_bilstm_attn"].iloc[1:])
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["models"]) == set(models)
    ref = results["models"]["conv_bilstm_attn"]["clinical"]
    assert {"auroc", "auroc_ci", "auprc", "threshold", "sensitivity", "specificity", "npv", "weighted_f1"} <= set(ref)
    report = (tmp_path / "report.md").read_text()
    for row in ("AUROC [95% CI]", "Threshold (Youden, validation)", "Weighted F1", "Subgroup AUROC range"):
        assert row in report
    for png in ("roc.png", "pr.png", "calibration.png"):
        assert (tmp_path / png).stat().st_size > 0
    saved = ModelRun.load(tmp_path / "models", "cnn1d")
    assert len(saved.test_scores) == len(test) and saved.n_parameters > 0
    assert isinstance(pd.DataFrame(results["benchmark_table"]), pd.DataFrame)


def test_reuse_skips_finished_models(tiny_cohort: list[SiteStore], tmp_path: Path) -> None:
    train, val, test = (pooled_split(tiny_cohort, s, 100) for s in ("train", "val", "test"))
    cfg = TrainConfig(epochs=1, batch_size=32, num_threads=1)
    kwargs = {"title": "tiny", "data_table": site_table(tiny_cohort), "config": {}, "n_boot": 20}
    run_study(["features_logreg", "cnn1d"], train, val, test, cfg, tmp_path, echo=lambda *_: None, **kwargs)  # type: ignore[arg-type]
    lines: list[str] = []

    run_study(["features_logreg", "cnn1d"], train, val, test, cfg, tmp_path, reuse=True, echo=lines.append, **kwargs)  # type: ignore[arg-type]

    assert [line for line in lines if line.startswith(("reusing", "training"))] == [
        f"reusing features_logreg from {tmp_path / 'models'}",
        f"reusing cnn1d from {tmp_path / 'models'}",
    ]
