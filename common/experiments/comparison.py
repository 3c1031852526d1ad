"""Federated vs pooled vs local-only under the study's protocols, as plain functions.

For each fold of the protocol (GAH: one fold, every hospital trains and is tested on its test split;
LOHO: one fold per hospital, which is never trained on and is tested on all its ECGs):

* **federated**: Flower simulation over the fold's training hospitals (``run_federated`` is passed
  in, so this module stays Flower-free); the best round by federated validation AUROC is kept;
* **pooled**: the training hospitals' data centralised (the upper reference), with as many passes
  over the data as the federated run made;
* **local-only**: each training hospital alone.

Every arm's Youden threshold is chosen on its own training hospitals' validation data and carried
to the test sites (the threshold transfer the study reports). Every arm is scored at every test
site the same way: AUROC with a patient-bootstrap CI, AUPRC, sensitivity and specificity.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from common.config import RunConfig, TrainConfig
from common.data.arrays import EcgArrays, concat, load_split
from common.data.splits import Fold, gah_folds, loho_folds
from common.data.store import SiteStore, summarise, write_json
from common.evaluation.bootstrap import bootstrap_ci
from common.evaluation.metrics import auprc, youden_threshold
from common.evaluation.tables import markdown_table
from common.evaluation.thresholds import threshold_metrics
from common.federation import protocol as P
from common.models import create_model
from common.training.engine import EpochLog, fit, load_checkpoint, predict, seed_everything

log = logging.getLogger(__name__)

FederatedRunner = Callable[[Mapping[str, str | int | float | bool], int], dict[str, Any]]
"""``(flat run config, number of nodes) -> {"history", "test", "messages"}`` (see sim/simulation.py)."""


@dataclass(frozen=True)
class SiteScore:
    """One arm's model at one test site."""

    arm: str
    fold: str
    test_site: str
    n: int
    positives: int
    auroc: float | None
    auroc_lo: float | None
    auroc_hi: float | None
    auprc: float | None
    threshold: float | None
    sensitivity: float | None
    specificity: float | None


def score_site(
    arm: str,
    fold: str,
    site: str,
    data: EcgArrays,
    scores: np.ndarray,
    threshold: float | None,
    *,
    n_boot: int,
    seed: int,
) -> SiteScore:
    """AUROC [patient-bootstrap CI], AUPRC and Sens/Spec at the transferred threshold."""
    n_pos = data.n_positive
    if n_pos == 0 or n_pos == len(data):
        return SiteScore(arm, fold, site, len(data), n_pos, None, None, None, None, threshold, None, None)
    ci = bootstrap_ci("auroc", data.y, scores, data.meta["patient_id"].to_numpy(), n_boot=n_boot, seed=seed)
    at = threshold_metrics(data.y, scores, threshold) if threshold is not None else None
    return SiteScore(
        arm, fold, site, len(data), n_pos, ci.estimate, ci.lower, ci.upper,
        auprc(data.y, scores), threshold,
        at.sensitivity if at else None, at.specificity if at else None,
    )  # fmt: skip


ALL_SITES = "all"


def score_tests(
    arm: str,
    fold: str,
    tests: Mapping[str, EcgArrays],
    model: torch.nn.Module,
    tcfg: TrainConfig,
    threshold: float | None,
    cfg: RunConfig,
) -> list[SiteScore]:
    """One model at each test site and, where there are several, at all of them pooled."""
    scores = {site: predict(model, data, tcfg) for site, data in tests.items()}
    out = [
        score_site(arm, fold, s, tests[s], scores[s], threshold, n_boot=cfg.n_boot, seed=cfg.train.seed) for s in tests
    ]
    if len(tests) > 1:
        everything = concat(list(tests.values()))
        pooled = np.concatenate([scores[s] for s in tests])
        out.append(
            score_site(arm, fold, ALL_SITES, everything, pooled, threshold, n_boot=cfg.n_boot, seed=cfg.train.seed)
        )
    return out


def _threshold(val: EcgArrays, scores: np.ndarray) -> float | None:
    if val.n_positive == 0 or val.n_positive == len(val):
        log.warning("validation data has one class only; no Youden threshold")
        return None
    return youden_threshold(val.y, scores)


@dataclass
class FoldData:
    fold: Fold
    train: dict[str, EcgArrays]
    val: dict[str, EcgArrays]
    test: dict[str, EcgArrays]
    load_s: dict[str, float]
    """Seconds spent reading and preprocessing each training site's train and validation splits:
    a centralised arm counts them in its wall time, as a federated client's first round does."""


def load_fold(fold: Fold, stores: Mapping[str, SiteStore], fs: int) -> FoldData:
    train, val, load_s = {}, {}, {}
    for s in fold.train_sites:
        t0 = time.perf_counter()
        train[s], val[s] = load_split(stores[s], "train", fs), load_split(stores[s], "val", fs)
        load_s[s] = time.perf_counter() - t0
    test = {s: concat([load_split(stores[s], sp, fs) for sp in splits]) for s, splits in fold.test_sites.items()}
    return FoldData(fold, train, val, test, load_s)


def _centralised_arm(
    arm: str, fd: FoldData, sites: Sequence[str], cfg: RunConfig, epochs: int, echo: Any
) -> tuple[list[SiteScore], float, list[dict[str, Any]]]:
    train, val = concat([fd.train[s] for s in sites]), concat([fd.val[s] for s in sites])
    tcfg = cfg.train.model_copy(update={"epochs": epochs})
    seed_everything(tcfg.seed)
    model = create_model(tcfg.model)
    history: list[dict[str, Any]] = []

    def on_epoch(e: EpochLog) -> None:
        history.append({"epoch": e.epoch, "train_loss": e.train_loss, "val_auroc": e.val_auroc})
        echo(f"    {arm} epoch {e.epoch}/{epochs}  loss {e.train_loss:.4f}  val AUROC {_fmt(e.val_auroc)}")

    t0 = time.perf_counter()
    fit(model, train, val, tcfg, on_epoch=on_epoch)
    seconds = time.perf_counter() - t0 + sum(fd.load_s[s] for s in sites)
    thr = _threshold(val, predict(model, val, tcfg))
    return score_tests(arm, fd.fold.name, fd.test, model, tcfg, thr, cfg), seconds, history


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def run_fold(
    fd: FoldData,
    site_index: Mapping[str, int],
    cfg: RunConfig,
    run_federated: FederatedRunner | None,
    out: Path,
    echo: Any,
) -> dict[str, Any]:
    """All arms of one fold; returns scores, timings and the federated learning curve."""
    fold = fd.fold
    scores: list[SiteScore] = []
    timing: dict[str, float] = {}
    curves: dict[str, Any] = {}
    passes = cfg.federated.rounds * cfg.federated.local_epochs
    if run_federated is not None and "federated" in cfg.arms:
        f = cfg.federated
        where = list(fold.train_sites)
        echo(
            f"  [{fold.name}] federated {f.strategy}: {f.rounds} rounds x {f.local_epochs} local epoch(s) over {where}"
        )
        fed_out = out / fold.name / "federated"
        rc = federated_run_config(cfg, [site_index[s] for s in fold.train_sites], len(site_index), fed_out)
        t0 = time.perf_counter()
        res = run_federated(rc, len(fold.train_sites))
        timing["federated"] = time.perf_counter() - t0
        curves["federated"] = res["history"]
        for h in res["history"]:
            val_auc = _fmt(h["val"]["pooled"]["auroc"])
            echo(f"    round {h['round']}: train loss {h['train_loss']:.4f}, federated val AUROC {val_auc}")
        tcfg = cfg.train
        model = create_model(tcfg.model)
        model.load_state_dict(
            load_checkpoint(fed_out / "best.pt")
            if (fed_out / "best.pt").is_file()
            else load_checkpoint(fed_out / "last.pt")
        )
        thr = res["test"]["threshold"]  # chosen by the server on the pooled validation histograms
        scores += score_tests("federated", fold.name, fd.test, model, tcfg, thr, cfg)
        curves["federated_server_test"] = res["test"]
    if "pooled" in cfg.arms:
        echo(f"  [{fold.name}] pooled over {list(fold.train_sites)}, {passes} epochs (same passes over the data)")
        pooled, timing["pooled"], curves["pooled"] = _centralised_arm("pooled", fd, fold.train_sites, cfg, passes, echo)
        scores += pooled
    for site in fold.train_sites if "local" in cfg.arms else ():
        echo(f"  [{fold.name}] local-only at {site}")
        local, timing[f"local:{site}"], curves[f"local:{site}"] = _centralised_arm(
            f"local:{site}", fd, [site], cfg, passes, echo
        )
        scores += local
    return {"fold": fold.name, "scores": scores, "timing": timing, "curves": curves}


def federated_run_config(
    cfg: RunConfig, train_sites: Sequence[int], n_sites: int, out: Path
) -> dict[str, str | int | float | bool]:
    """The flat run config the ServerApp and ClientApps of one fold read."""
    rc: dict[str, str | int | float | bool] = {
        **P.run_config_of(cfg.cohort, cfg.train, cfg.federated),
        P.NUM_SITES: n_sites,  # real data: the ingested hospitals, not the synthetic cohort's count
        P.DATA_DIR: str(cfg.data_dir),
        P.TRAIN_SITES: ",".join(str(s) for s in train_sites),
        P.OUT_DIR: str(out),
    }
    if cfg.real_data is not None:
        rc["data"] = cfg.real_data["kind"]
        rc.update({f"data-{k}": v for k, v in cfg.real_data.items() if k != "kind"})
    if cfg.resume is not None:
        rc[P.RESUME] = str(cfg.resume)
    return rc


def run_comparison(
    cfg: RunConfig, stores: Sequence[SiteStore], run_federated: FederatedRunner | None, *, echo: Any = print
) -> dict[str, Any]:
    """Every fold of the protocol, every arm; writes results.json, results.md and plots."""
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.json")
    by_name = {s.site: s for s in stores}
    site_index = {s.site: i for i, s in enumerate(stores)}
    sites = [s.site for s in stores]
    folds = gah_folds(sites) if cfg.protocol == "gah" else loho_folds(sites)
    t0 = time.perf_counter()
    fold_results = []
    for fold in folds:
        echo(f"fold {fold.name}: train {list(fold.train_sites)}, test {list(fold.test_sites)}")
        fold_results.append(
            run_fold(load_fold(fold, by_name, cfg.train.target_fs), site_index, cfg, run_federated, out, echo)
        )
    table = pd.DataFrame([vars(s) for r in fold_results for s in r["scores"]])
    overhead = _overhead(fold_results)
    results = {
        "config": cfg.model_dump(mode="json"),
        "cohort": summarise(stores).to_dict(orient="records"),
        "scores": table.to_dict(orient="records"),
        "timing": {r["fold"]: r["timing"] for r in fold_results},
        "federation_overhead": overhead,
        "curves": {r["fold"]: r["curves"] for r in fold_results},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(out / "results.json", results)
    readable = comparison_table(table)
    _plot_curves(fold_results, out / "learning_curves.png")
    md = [
        "# fedami comparison",
        "",
        f"Protocol {cfg.protocol.upper()}, strategy {cfg.federated.strategy}, model {cfg.train.model}.",
        "",
        "## Hospitals",
        "",
        markdown_table(summarise(stores)),
        "",
        "## Test results",
        "",
        markdown_table(readable),
        "",
    ]
    if overhead:
        md += [
            "## Federation overhead",
            "",
            f"Federated wall time / pooled wall time at the same passes over the data: {overhead['ratio']:.2f} "
            f"({overhead['federated_s']:.1f} s / {overhead['pooled_s']:.1f} s).",
            "",
        ]
    (out / "results.md").write_text("\n".join(md))
    echo("")
    echo(readable.to_string(index=False))
    if overhead:
        echo(f"federation overhead (wall time federated / pooled, same passes): {overhead['ratio']:.2f}")
    echo(f"results: {out / 'results.json'}  report: {out / 'results.md'}")
    return results


def _overhead(fold_results: Sequence[dict[str, Any]]) -> dict[str, float]:
    fed = sum(r["timing"].get("federated", 0.0) for r in fold_results)
    pooled = sum(r["timing"].get("pooled", 0.0) for r in fold_results)
    return {"federated_s": fed, "pooled_s": pooled, "ratio": fed / pooled} if fed and pooled else {}


def comparison_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per arm and test site: AUROC [CI], AUPRC, threshold, Sens, Spec."""

    def auc(r: pd.Series) -> str:
        if pd.isna(r["auroc"]):
            return "n/a (one class)"
        return f"{r['auroc']:.3f} [{r['auroc_lo']:.3f}-{r['auroc_hi']:.3f}]"

    def num(v: Any) -> str:
        return "n/a" if v is None or pd.isna(v) else f"{v:.3f}"

    return pd.DataFrame(
        {
            "fold": table["fold"],
            "arm": table["arm"],
            "test site": table["test_site"],
            "n (AMI)": [f"{n} ({p})" for n, p in zip(table["n"], table["positives"], strict=True)],
            "AUROC [95% CI]": table.apply(auc, axis=1),
            "AUPRC": table["auprc"].map(num),
            "threshold": table["threshold"].map(num),
            "Sens": table["sensitivity"].map(num),
            "Spec": table["specificity"].map(num),
        }
    )


def _plot_curves(fold_results: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in fold_results:
        fed = r["curves"].get("federated")
        if fed:
            ax.plot(
                [h["round"] for h in fed],
                [np.nan if h["val"]["pooled"]["auroc"] is None else h["val"]["pooled"]["auroc"] for h in fed],
                "o-",
                label=f"{r['fold']} federated (per round)",
            )
        pooled = r["curves"].get("pooled", [])
        ax.plot(
            [h["epoch"] for h in pooled],
            [np.nan if h["val_auroc"] is None else h["val_auroc"] for h in pooled],
            "s--",
            label=f"{r['fold']} pooled (per epoch)",
        )
    ax.set(xlabel="round / epoch (one pass over the data each)", ylabel="validation AUROC", title="Learning curves")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
