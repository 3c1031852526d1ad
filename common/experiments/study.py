"""The clinical study without federation: every model trained pooled, evaluated like the study.

This is the "pooled" arm of every later comparison. For each model: train on all hospitals'
training splits (early stopping on validation AUROC), score validation and test, then the study's
table (AUROC with a patient-bootstrap CI, AUPRC, the Youden threshold chosen on validation and
applied to test, sensitivity, specificity, NPV, weighted F1, subgroup AUROCs, calibration) and a
DeLong comparison of every model with ``conv_bilstm_attn``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import torch

from common.config import StudyConfig, TrainConfig
from common.data.arrays import EcgArrays
from common.data.store import write_json
from common.evaluation.bootstrap import bootstrap_ci
from common.evaluation.plots import plot_pr, plot_reliability, plot_roc
from common.evaluation.tables import format_ci_pair, markdown_table
from common.models import count_parameters, create_model
from common.models.card import HospitalData, InputSpec, make_card, write_card
from common.models.feature_baseline import FEATURE_BASELINE, FeatureBaseline
from common.training.engine import EpochLog, build_model, fit, predict, seed_everything

REFERENCE_MODEL: Final[str] = "conv_bilstm_attn"


@dataclass(frozen=True)
class ModelRun:
    """One trained model's scores and cost."""

    name: str
    n_parameters: int
    train_seconds: float
    samples_seen: int
    best_epoch: int | None
    history: list[dict[str, Any]]
    val_scores: np.ndarray
    test_scores: np.ndarray

    @property
    def train_ecgs_per_s(self) -> float:
        return self.samples_seen / self.train_seconds if self.train_seconds > 0 else float("nan")

    def save(self, folder: Path) -> None:
        """Scores as ``.npz`` and the rest as ``.json``, so a finished model is never lost."""
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / f"{self.name}.npz", val=self.val_scores, test=self.test_scores)
        info = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.endswith("_scores")}
        write_json(folder / f"{self.name}.json", info)

    @classmethod
    def load(cls, folder: Path, name: str) -> ModelRun:
        info = json.loads((folder / f"{name}.json").read_text())
        scores = np.load(folder / f"{name}.npz")
        return cls(**info, val_scores=scores["val"], test_scores=scores["test"])


def train_model(
    name: str,
    train: EcgArrays,
    val: EcgArrays,
    test: EcgArrays,
    cfg: TrainConfig,
    out_dir: Path,
    *,
    epochs: int,
    patience: int | None,
    run_name: str | None = None,
    echo: Any = print,
) -> ModelRun:
    """Train one model (a registered network or the feature baseline) and score validation and test.

    ``run_name`` (default: the model's name) names its checkpoint and saved scores.
    """
    run_name = run_name or name
    if name == FEATURE_BASELINE:
        t0 = time.perf_counter()
        baseline = FeatureBaseline(cfg.target_fs, seed=cfg.seed).fit(train)
        dt = time.perf_counter() - t0
        echo(f"  {run_name}: fitted in {dt:.1f} s")
        return ModelRun(
            run_name, baseline.n_parameters, dt, len(train), None, [], baseline.predict(val), baseline.predict(test)
        )

    seed_everything(cfg.seed)
    run_cfg = cfg.model_copy(update={"model": name})
    model = build_model(run_cfg)

    def on_epoch(e: EpochLog) -> None:
        auc = "n/a" if e.val_auroc is None else f"{e.val_auroc:.3f}"
        echo(f"  {run_name} epoch {e.epoch}/{epochs}  loss {e.train_loss:.4f}  val AUROC {auc}")

    checkpoint = out_dir / "checkpoints" / f"{run_name}.pt"
    result = fit(model, train, val, run_cfg, epochs=epochs, patience=patience, on_epoch=on_epoch, checkpoint=checkpoint)
    return ModelRun(
        run_name,
        count_parameters(model),
        result.seconds,
        result.samples_seen,
        result.best_epoch,
        [dataclasses.asdict(h) for h in result.history],
        predict(model, val, run_cfg),
        predict(model, test, run_cfg),
    )


def write_study_card(
    cfg: StudyConfig, name: str, seed: int, run: ModelRun, train: EcgArrays, val: EcgArrays, spec: InputSpec
) -> None:
    """The model card beside a study model's checkpoint (``checkpoints/<run name>.pt``)."""
    from common.evaluation.metrics import MetricError, youden_threshold

    try:
        threshold: float | None = youden_threshold(val.y, run.val_scores)
    except MetricError:
        threshold = None
    sites = train.meta["site"].astype(str)
    data = {
        site: HospitalData(ecgs=int((sites == site).sum()), positives=int(train.y[(sites == site).to_numpy()].sum()))
        for site in sorted(sites.unique())
    }
    card = make_card(
        create_model(name),
        train=cfg.train.model_copy(update={"model": name, "seed": seed}),
        spec=spec,
        arm="pooled (study)",
        training_data=data,
        kept=f"epoch {run.best_epoch} (best validation AUROC)",
        validation_auroc=max((h["val_auroc"] for h in run.history if h["val_auroc"] is not None), default=None),
        threshold=threshold,
        threshold_source="Youden on the pooled validation split",
        config=cfg,
    )
    write_card(cfg.out_dir / "checkpoints" / f"{run.name}.pt", card)


def evaluate_runs(
    runs: Sequence[ModelRun], val: EcgArrays, test: EcgArrays, *, n_boot: int, seed: int
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The study's table for every model, and the benchmark table with DeLong p vs the reference."""
    from common.evaluation.comparisons import delong_test
    from common.evaluation.summary import clinical_summary

    summaries = {
        r.name: clinical_summary(val.y, r.val_scores, test.y, r.test_scores, test.meta, n_boot=n_boot, seed=seed)
        for r in runs
    }
    ref = next((r for r in runs if r.name == REFERENCE_MODEL), runs[0])
    rows = []
    for r in runs:
        s = summaries[r.name].to_dict()
        p = None if r.name == ref.name else delong_test(test.y, ref.test_scores, r.test_scores).p_value
        rows.append(
            {
                "model": r.name,
                "parameters": r.n_parameters,
                "AUROC [95% CI]": format_ci_pair(s["auroc"], s.get("auroc_ci")),
                "AUPRC": s["auprc"],
                f"DeLong p vs {ref.name}": p if p is not None else "ref",
                "best epoch": r.best_epoch if r.best_epoch is not None else "-",
                "train s": round(r.train_seconds, 1),
            }
        )
    table = pd.DataFrame(rows)
    return {k: v.to_dict() for k, v in summaries.items()}, table


def write_study_report(
    out: Path,
    *,
    title: str,
    data_table: pd.DataFrame,
    runs: Sequence[ModelRun],
    summaries: dict[str, Any],
    table: pd.DataFrame,
    test: EcgArrays,
    config: dict[str, Any],
    seeds: dict[str, dict[str, Any]] | None = None,
) -> None:
    """``results.json``, ``report.md`` and ROC / PR / calibration plots."""
    from common.evaluation.summary import summary_markdown_rows

    ref = next((r for r in runs if r.name == REFERENCE_MODEL), runs[0])
    curves = {r.name: (test.y, r.test_scores) for r in runs}
    plot_roc(curves, out / "roc.png", f"{title}: test ROC")
    plot_pr(curves, out / "pr.png", f"{title}: test precision-recall")
    plot_reliability(test.y, ref.test_scores, out / "calibration.png", f"{ref.name}: calibration on test")
    results = {
        "config": config,
        "data": data_table.to_dict(orient="records"),
        "models": {
            r.name: {
                "parameters": r.n_parameters,
                "train_seconds": round(r.train_seconds, 2),
                "train_ecgs_per_s": round(r.train_ecgs_per_s, 1),
                "best_epoch": r.best_epoch,
                "history": r.history,
                "clinical": summaries[r.name],
            }
            for r in runs
        },
        "benchmark_table": table.to_dict(orient="records"),
        "seeds": seeds,
    }
    write_json(out / "results.json", results)
    main_rows = pd.DataFrame(summary_markdown_rows(summaries[ref.name]), columns=["metric", ref.name])
    md = [
        f"# {title}",
        "",
        "## Data",
        "",
        markdown_table(data_table),
        "",
        f"## Main table: {ref.name} on the pooled test set (rows as in the study's abstract)",
        "",
        markdown_table(main_rows),
        "",
        "## Benchmark: every model on the same test set",
        "",
        markdown_table(table),
        "",
        *(
            [
                f"AUROC [95% CI], DeLong p and the main table are those of the first training seed "
                f"({config['train']['seed']}); the seed columns give every seed's test AUROC as mean ± SD and the "
                "ensemble of the seeds' scores (its DeLong p against the reference model's ensemble).",
                "",
            ]
            if seeds
            else []
        ),
        "Plots: `roc.png`, `pr.png`, `calibration.png`. Every figure is in `results.json`.",
        "",
    ]
    (out / "report.md").write_text("\n".join(md))


def run_study(
    cfg: StudyConfig,
    models: Sequence[str],
    train: EcgArrays,
    val: EcgArrays,
    test: EcgArrays,
    *,
    title: str,
    data_table: pd.DataFrame,
    spec: InputSpec | None = None,
    reuse: bool = False,
    echo: Any = print,
) -> pd.DataFrame:
    """Train and evaluate every model; write the report; return the benchmark table.

    Each finished model is saved under ``out/models``; with ``reuse`` a model saved there by an
    earlier (interrupted) run of the same settings is loaded instead of trained again.
    """
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.train.num_threads)
    saved = out / "models"
    by_model: dict[str, list[ModelRun]] = {}
    for name in models:
        for seed in study_seeds(cfg):
            run_name = seed_run_name(name, seed, cfg)
            if reuse and (saved / f"{run_name}.npz").is_file():
                echo(f"reusing {run_name} from {saved}")
                by_model.setdefault(name, []).append(ModelRun.load(saved, run_name))
                continue
            echo(f"training {run_name}")
            tcfg = cfg.train.model_copy(update={"seed": seed})
            run = train_model(name, train, val, test, tcfg, out, epochs=cfg.epochs, patience=cfg.patience,
                              run_name=run_name, echo=echo)  # fmt: skip
            run.save(saved)
            if spec is not None and name != FEATURE_BASELINE:
                write_study_card(cfg, name, seed, run, train, val, spec)
            by_model.setdefault(name, []).append(run)
    runs = [seeded[0] for seeded in by_model.values()]
    summaries, table = evaluate_runs(runs, val, test, n_boot=cfg.n_boot, seed=cfg.train.seed)
    seeds = seed_summary(by_model, test, n_boot=cfg.n_boot, seed=cfg.train.seed) if cfg.seeds > 1 else None
    if seeds is not None:
        table = table.merge(seed_columns(seeds), on="model")
    config = {**cfg.model_dump(mode="json"), "models": list(models)}
    write_study_report(
        out, title=title, data_table=data_table, runs=runs, summaries=summaries, table=table, test=test, config=config,
        seeds=seeds,
    )  # fmt: skip
    return table


def study_seeds(cfg: StudyConfig) -> list[int]:
    """The training seeds of every model: ``train.seed``, ``train.seed + 1``, ..."""
    return [cfg.train.seed + k for k in range(cfg.seeds)]


def seed_run_name(name: str, seed: int, cfg: StudyConfig) -> str:
    """The first seed keeps the model's name (its checkpoint is ``checkpoints/<model>.pt``); the others add the seed."""
    return name if seed == cfg.train.seed else f"{name}-seed{seed}"


def seed_summary(
    by_model: Mapping[str, Sequence[ModelRun]], test: EcgArrays, *, n_boot: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Per model: the test AUROC of every training seed, their mean and SD, and the seed ensemble (mean score)
    with its patient-bootstrap CI and a DeLong test against the reference model's ensemble."""
    from common.evaluation.comparisons import delong_test
    from common.evaluation.metrics import auroc

    patients = test.meta["patient_id"].to_numpy()
    ensembles = {name: np.mean([r.test_scores for r in runs], axis=0) for name, runs in by_model.items()}
    ref = REFERENCE_MODEL if REFERENCE_MODEL in ensembles else next(iter(ensembles))
    out = {}
    for name, runs in by_model.items():
        aurocs = [auroc(test.y, r.test_scores) for r in runs]
        ci = bootstrap_ci("auroc", test.y, ensembles[name], patients, n_boot=n_boot, seed=seed)
        p = None if name == ref else delong_test(test.y, ensembles[ref], ensembles[name]).p_value
        out[name] = {
            "seeds": [r.name for r in runs],
            "test_auroc": aurocs,
            "mean": float(np.mean(aurocs)),
            "sd": float(np.std(aurocs, ddof=1)),
            "ensemble": {"auroc": ci.estimate, "auroc_ci": [ci.lower, ci.upper], "delong_p_vs_reference": p},
            "reference": ref,
        }
    return out


def seed_columns(seeds: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The seed figures as benchmark-table columns."""
    rows = []
    for name, s in seeds.items():
        e = s["ensemble"]
        rows.append(
            {
                "model": name,
                f"AUROC over {len(s['seeds'])} seeds (mean ± SD)": f"{s['mean']:.3f} ± {s['sd']:.3f}",
                "seed ensemble AUROC [95% CI]": format_ci_pair(e["auroc"], e["auroc_ci"]),
                f"ensemble DeLong p vs {s['reference']}": e["delong_p_vs_reference"]
                if e["delong_p_vs_reference"] is not None
                else "ref",
            }
        )
    return pd.DataFrame(rows)
