"""The pooled study end to end on a tiny cohort: every model scored, the study's table, the report."""

from __future__ import annotations

import json
from pathlib import Path

from common.config import StudyConfig, TrainConfig
from common.data.ingest import site_table
from common.data.sources import pooled_split
from common.data.store import SiteStore
from common.experiments.study import ModelRun, run_study
from common.models.card import spec_of_stores


def _config(out: Path, n_boot: int) -> StudyConfig:
    train = TrainConfig(batch_size=32, num_threads=1)
    return StudyConfig(data_dir=out / "data", out_dir=out, train=train, epochs=1, n_boot=n_boot)


def test_study_writes_the_main_and_benchmark_tables(tiny_cohort: list[SiteStore], tmp_path: Path) -> None:
    train, val, test = (pooled_split(tiny_cohort, s, 100) for s in ("train", "val", "test"))
    cfg = _config(tmp_path, n_boot=50)
    models = ["conv_bilstm_attn", "cnn1d", "features_logreg"]

    table = run_study(
        cfg, models, train, val, test, title="tiny", data_table=site_table(tiny_cohort), echo=lambda *_: None
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
    assert [r["model"] for r in results["benchmark_table"]] == models
    assert results["benchmark_table"][1]["AUROC [95% CI]"].startswith(
        f"{results['models']['cnn1d']['clinical']['auroc']:.3f}"
    )
    assert results["config"]["epochs"] == 1 and results["config"]["models"] == models


def test_reuse_skips_finished_models(tiny_cohort: list[SiteStore], tmp_path: Path) -> None:
    train, val, test = (pooled_split(tiny_cohort, s, 100) for s in ("train", "val", "test"))
    cfg = _config(tmp_path, n_boot=20)
    models = ["features_logreg", "cnn1d"]
    table = site_table(tiny_cohort)
    run_study(cfg, models, train, val, test, title="tiny", data_table=table, echo=lambda *_: None)
    lines: list[str] = []

    run_study(cfg, models, train, val, test, title="tiny", data_table=table, reuse=True, echo=lines.append)

    assert [line for line in lines if line.startswith(("reusing", "training"))] == [
        f"reusing features_logreg from {tmp_path / 'models'}",
        f"reusing cnn1d from {tmp_path / 'models'}",
    ]


def test_seeds_add_the_spread_and_the_ensemble_of_every_model(tiny_cohort: list[SiteStore], tmp_path: Path) -> None:
    # Prepare: two models, three training seeds each
    import numpy as np

    from common.evaluation.metrics import auroc
    from common.models.card import read_card

    train, val, test = (pooled_split(tiny_cohort, s, 100) for s in ("train", "val", "test"))
    cfg = _config(tmp_path, n_boot=20).model_copy(update={"seeds": 3})
    models = ["cnn1d", "features_logreg"]
    # Execute
    table = run_study(cfg, models, train, val, test, title="tiny", data_table=site_table(tiny_cohort),
                      spec=spec_of_stores(tiny_cohort, 100), echo=lambda *_: None)  # fmt: skip
    # Assert: every seed trained and saved; the figures are those of the saved scores
    results = json.loads((tmp_path / "results.json").read_text())
    cnn = results["seeds"]["cnn1d"]
    assert cnn["seeds"] == ["cnn1d", "cnn1d-seed1", "cnn1d-seed2"]
    runs = [ModelRun.load(tmp_path / "models", name) for name in cnn["seeds"]]
    assert cnn["test_auroc"] == [auroc(test.y, r.test_scores) for r in runs]
    assert len({round(a, 9) for a in cnn["test_auroc"]}) > 1  # the seeds differ
    assert cnn["mean"] == float(np.mean(cnn["test_auroc"])) and cnn["sd"] > 0
    ensemble = np.mean([r.test_scores for r in runs], axis=0)
    assert cnn["ensemble"]["auroc"] == auroc(test.y, ensemble) and cnn["ensemble"]["delong_p_vs_reference"] is None
    assert 0 <= results["seeds"]["features_logreg"]["ensemble"]["delong_p_vs_reference"] <= 1
    assert "AUROC over 3 seeds (mean ± SD)" in table.columns and list(table["model"]) == models
    assert read_card(tmp_path / "checkpoints" / "cnn1d-seed2.pt").train.seed == 2  # each seed's checkpoint, its card
    assert "first training seed" in (tmp_path / "report.md").read_text()
