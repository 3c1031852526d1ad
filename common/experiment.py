"""The centralised arms of a run (pooled; local-only later), as plain functions."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from common.cohort import ensure_synthetic_cohort
from common.config import RunConfig
from common.data import concat, load_split
from common.engine import EpochLog, fit, predict, seed_everything
from common.metrics import MetricError, auprc, auroc
from common.models import count_parameters, create_model
from common.report import markdown_table, plot_history, plot_roc
from common.store import summarise, write_json

log = logging.getLogger(__name__)
POOLED = "pooled"


@dataclass(frozen=True)
class TestResult:
    """Discrimination on one test set (a site's test split, or all sites pooled)."""

    test_set: str
    n: int
    positives: int
    auroc: float | None
    auprc: float | None


def evaluate_scores(name: str, y: np.ndarray, scores: np.ndarray) -> TestResult:
    try:
        auc, ap = auroc(y, scores), auprc(y, scores)
    except MetricError as err:
        log.warning("%s: %s", name, err)
        auc, ap = None, None
    return TestResult(name, len(y), int(y.sum()), auc, ap)


def run_pooled(cfg: RunConfig, *, echo: Any = print) -> dict[str, Any]:
    """Generate or reuse the cohort, train the pooled baseline, evaluate per site; write results.

    Returns the results dictionary that is also written to ``results.json``.
    """
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.json")
    t_start = time.perf_counter()

    echo(f"cohort: {cfg.cohort.n_sites} synthetic hospitals, {cfg.cohort.n_ecgs} ECGs, key {cfg.cohort.key()}")
    stores = ensure_synthetic_cohort(cfg.cohort, cfg.data_dir)
    cohort_table = summarise(stores)
    echo(cohort_table.to_string(index=False))

    fs = cfg.train.target_fs
    splits = {s.site: {sp: load_split(s, sp, fs) for sp in ("train", "val", "test")} for s in stores}
    train = concat([v["train"] for v in splits.values()])
    val = concat([v["val"] for v in splits.values()])
    echo(f"pooled training: {len(train)} ECGs ({train.n_positive} AMI), validation {len(val)} ({val.n_positive} AMI)")

    seed_everything(cfg.train.seed)
    model = create_model(cfg.train.model)
    echo(f"model {cfg.train.model}: {count_parameters(model):,} parameters")

    def on_epoch(e: EpochLog) -> None:
        auc = "n/a" if e.val_auroc is None else f"{e.val_auroc:.3f}"
        echo(f"  epoch {e.epoch}/{cfg.train.epochs}  loss {e.train_loss:.4f}  val AUROC {auc}")

    fit_result = fit(model, train, val, cfg.train, on_epoch=on_epoch)
    torch.save(model.state_dict(), out / "model_pooled.pt")

    scores = {site: predict(model, v["test"]) for site, v in splits.items()}
    tests = evaluate_sites({site: (v["test"].y, scores[site]) for site, v in splits.items()})
    table = pd.DataFrame([dataclasses.asdict(r) for r in tests.values()])
    results = {
        "config": cfg.model_dump(mode="json"),
        "cohort": cohort_table.to_dict(orient="records"),
        "arms": {
            POOLED: {
                "fit": dataclasses.asdict(fit_result),
                "test": {k: dataclasses.asdict(v) for k, v in tests.items()},
            }
        },
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    write_json(out / "results.json", results)
    plot_roc(
        {site: (v["test"].y, scores[site]) for site, v in splits.items()},
        out / "roc_pooled.png",
        "Pooled model, test splits",
    )
    plot_history([dataclasses.asdict(h) for h in fit_result.history], out / "history_pooled.png", "Pooled training")
    md = [
        "# fedami run",
        "",
        f"Synthetic cohort `{cfg.cohort.key()}` (seed {cfg.cohort.seed}, difficulty {cfg.cohort.difficulty}).",
        "",
        "## Cohort",
        "",
        markdown_table(cohort_table),
        "",
        f"## Pooled {cfg.train.model}: test AUROC (best epoch {fit_result.best_epoch} by validation AUROC)",
        "",
        markdown_table(table),
        "",
    ]
    (out / "results.md").write_text("\n".join(md))
    echo("")
    echo(f"Pooled {cfg.train.model}, test AUROC by hospital:")
    echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    echo(f"results: {out / 'results.json'}  report: {out / 'results.md'}")
    return results


def evaluate_sites(per_site: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, TestResult]:
    """Each site's ``(y, scores)`` evaluated alone, and all of them pooled."""
    res = {site: evaluate_scores(site, y, s) for site, (y, s) in per_site.items()}
    ys, ss = zip(*per_site.values(), strict=True)
    res[POOLED] = evaluate_scores(POOLED, np.concatenate(ys), np.concatenate(ss))
    return res


def default_out_dir(root: Path) -> Path:
    return root / "runs" / time.strftime("%Y%m%d-%H%M%S")
