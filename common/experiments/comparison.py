"""Federated vs pooled vs local-only under the study's protocols, as plain functions.

For each fold of the protocol (GAH: one fold, every hospital trains and is tested on its test split;
LOHO: one fold per hospital, which is never trained on and is tested on all its ECGs):

* **federated**: Flower simulation over the fold's training hospitals (``run_federated`` is passed
  in, so this module stays Flower-free); the best round by validation AUROC over all training
  hospitals is kept;
* **pooled**: the training hospitals' data centralised (the upper reference), with as many passes
  over the data as the federated run made;
* **local-only**: each training hospital alone, as many passes.

Every arm's Youden threshold is chosen on its own training hospitals' validation data and carried
to the test sites (the threshold transfer the study reports). Every arm is scored at every test
site with the same figures: AUROC with a patient-bootstrap CI, AUPRC, sensitivity and specificity, and
at all test hospitals together (``all``). The federated arm under GAH takes them from its final test
round, as a deployment does: each hospital sends score histograms, counts and its own bootstrap
replicates, never a score (``all``: a bootstrap stratified by hospital); the centralised arms, and
the held-out hospital under LOHO, are scored where the data is. Each arm records the settings it
actually trained with.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from common.config import (
    AppConfig,
    CohortConfig,
    EvaluationConfig,
    Frozen,
    OutputConfig,
    RunConfig,
    StoresConfig,
    SyntheticData,
    TrainConfig,
)
from common.config import flat as F
from common.data.arrays import EcgArrays, concat, load_split
from common.data.sources import Prepared
from common.data.splits import Fold, gah_folds, loho_folds
from common.data.store import SiteStore, summarise, write_json
from common.evaluation.bootstrap import bootstrap_ci
from common.evaluation.comparisons import delong_test, paired_bootstrap_test
from common.evaluation.metrics import MetricError, auprc, youden_threshold
from common.evaluation.plots import plot_learning_curves
from common.evaluation.tables import format_ci, format_value, markdown_table
from common.evaluation.thresholds import threshold_metrics
from common.federation.hospital import local_train_config
from common.federation.outputs import ALL_SITES, TIMING, FederatedOutputs
from common.federation.results import score_rows
from common.models.card import HospitalData, InputSpec, make_card, spec_of_stores, write_card
from common.training.engine import (
    EpochLog,
    build_model,
    fit,
    load_checkpoint,
    predict,
    save_checkpoint,
    seed_everything,
)

log = logging.getLogger(__name__)


FederatedRunner = Callable[[Mapping[str, str | int | float | bool], int], FederatedOutputs]
"""``(flat run config, number of nodes) -> the run's outputs`` (``sim/simulation.py``)."""


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


class CurvePoint(Frozen):
    """One pass over the training data: the mean training loss and the validation AUROC after it."""

    passes: int
    train_loss: float
    val_auroc: float | None


class ArmTraining(Frozen):
    """What one arm trained with, as it ran (written into results.json beside its scores)."""

    hospitals: tuple[str, ...]
    train_ecgs: dict[str, int]
    """Training ECGs per hospital."""
    train: TrainConfig
    """The optimiser settings; for the federated arm a hospital's (its batch size and threads), seed = the run's."""
    passes: int
    """Passes over each hospital's training data (epochs; federated: rounds x local epochs)."""
    lr_schedule: str
    seeds: str
    kept: str
    """Which weights were kept and scored."""
    strategy: str | None = None
    rounds: int | None = None
    local_epochs: int | None = None
    per_hospital: dict[str, dict[str, Any]] | None = None
    """Federated: what each hospital reported training with (batch size, threads, seed and learning rates per round)."""


@dataclass(frozen=True)
class ArmResult:
    """One arm of one fold: what it trained with, its learning curve, its threshold and its scores."""

    arm: str
    training: ArmTraining
    seconds: float
    curve: tuple[CurvePoint, ...]
    threshold: float | None
    scores: tuple[SiteScore, ...]
    test_scores: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    """The model's score of every test ECG per test site, where the data is (for the paired comparisons;
    never written: a federated deployment sends none)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "trained_with": self.training.model_dump(mode="json"),
            "seconds": round(self.seconds, 3),
            "curve": [p.model_dump() for p in self.curve],
            "threshold": self.threshold,
            "scores": [asdict(s) for s in self.scores],
        }


@dataclass(frozen=True)
class PairedComparison:
    """The federated model against another arm's on the same test ECGs: paired patient bootstrap and DeLong.

    Both models are scored where the data is, so the federated AUROC here is that of its exact scores (the
    main table's comes from the hospitals' score histograms and can differ in the third decimal).
    """

    fold: str
    test_site: str
    other: str
    n: int
    positives: int
    federated: float
    other_auroc: float
    difference: float
    """``federated - other_auroc``."""
    lower: float | None
    upper: float | None
    ratio: float | None
    """``federated / other_auroc``."""
    ratio_lower: float | None
    ratio_upper: float | None
    p_bootstrap: float
    p_delong: float | None
    """None where DeLong's variance is undefined (fewer than 2 ECGs of a class)."""
    n_boot: int


@dataclass(frozen=True)
class FoldResult:
    fold: str
    train_sites: tuple[str, ...]
    test_sites: dict[str, tuple[str, ...]]
    arms: tuple[ArmResult, ...]
    federated_server_test: dict[str, Any] | None
    """The server's own test figures from the hospitals' histograms (federated arm only)."""
    comparisons: tuple[PairedComparison, ...] = ()

    def arm(self, name: str) -> ArmResult | None:
        return next((a for a in self.arms if a.arm == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fold": self.fold,
            "train_sites": list(self.train_sites),
            "test_sites": {k: list(v) for k, v in self.test_sites.items()},
            "arms": [a.to_dict() for a in self.arms],
            "federated_server_test": self.federated_server_test,
            "comparisons": [asdict(c) for c in self.comparisons],
        }


@dataclass(frozen=True)
class Overhead:
    federated_s: float
    pooled_s: float

    @property
    def ratio(self) -> float:
        return self.federated_s / self.pooled_s


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
        arm, fold, site, len(data), n_pos, ci.estimate, ci.lower, ci.upper, auprc(data.y, scores), threshold,
        at.sensitivity if at else None, at.specificity if at else None,
    )  # fmt: skip


def scores_from_histograms(arm: str, fold: str, test: Mapping[str, Any]) -> tuple[SiteScore, ...]:
    """The federated final test round's figures (``test.json``: histograms, counts, bootstrap replicates)."""
    return tuple(SiteScore(arm=arm, fold=fold, **row) for row in score_rows(dict(test)))


def score_tests(
    arm: str,
    fold: str,
    tests: Mapping[str, EcgArrays],
    scores: Mapping[str, np.ndarray],
    threshold: float | None,
    cfg: RunConfig,
) -> tuple[SiteScore, ...]:
    """One model's ``scores`` at each test site and, where there are several, at all of them together."""
    seed = cfg.train.seed
    out = [score_site(arm, fold, s, tests[s], scores[s], threshold, n_boot=cfg.n_boot, seed=seed) for s in tests]
    if len(tests) > 1:
        everything = concat(list(tests.values()))
        joined = np.concatenate([scores[s] for s in tests])
        out.append(score_site(arm, fold, ALL_SITES, everything, joined, threshold, n_boot=cfg.n_boot, seed=seed))
    return tuple(out)


def predict_tests(model: torch.nn.Module, tests: Mapping[str, EcgArrays], tcfg: TrainConfig) -> dict[str, np.ndarray]:
    return {site: predict(model, data, tcfg) for site, data in tests.items()}


def compare_with_federated(
    fold: str, tests: Mapping[str, EcgArrays], arms: Sequence[ArmResult], cfg: RunConfig
) -> tuple[PairedComparison, ...]:
    """The federated model against every other arm at each test site and at all together, on the same ECGs.

    A test site of one class has no AUROC and so no comparison (the main table says ``n/a`` for it).
    """
    fed = next((a for a in arms if a.arm == "federated"), None)
    if fed is None or not fed.test_scores:
        return ()
    groups = {site: [site] for site in tests}
    if len(tests) > 1:
        groups[ALL_SITES] = list(tests)
    out = []
    for name, members in groups.items():
        data = concat([tests[s] for s in members])
        if data.n_positive in (0, len(data)):
            continue
        a = np.concatenate([fed.test_scores[s] for s in members])
        for other in (o for o in arms if o is not fed and o.test_scores):
            b = np.concatenate([other.test_scores[s] for s in members])
            boot = paired_bootstrap_test(
                data.y, a, b, data.meta["patient_id"].to_numpy(), n_boot=cfg.n_boot, seed=cfg.train.seed
            )
            row = PairedComparison(
                fold=fold, test_site=name, other=other.arm, n=len(data), positives=data.n_positive,
                federated=boot.estimate_a, other_auroc=boot.estimate_b, difference=boot.difference,
                lower=boot.lower, upper=boot.upper, ratio=boot.ratio, ratio_lower=boot.ratio_lower,
                ratio_upper=boot.ratio_upper, p_bootstrap=boot.p_value, p_delong=_delong_p(data.y, a, b),
                n_boot=boot.n_valid,
            )  # fmt: skip
            out.append(row)
    return tuple(out)


def _delong_p(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float | None:
    try:
        return delong_test(y, a, b).p_value
    except MetricError:
        return None


def _threshold(val: EcgArrays, scores: np.ndarray) -> float | None:
    try:
        return youden_threshold(val.y, scores)
    except MetricError as err:
        log.warning("no Youden threshold on the validation data (%s)", err)
        return None


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


def arm_folder(arm: str) -> str:
    """An arm's folder name: ``pooled``, ``local-<hospital>``."""
    return arm.replace(":", "-")


def _centralised_arm(
    arm: str, fd: FoldData, sites: Sequence[str], cfg: RunConfig, spec: InputSpec, out: Path, echo: Any
) -> ArmResult:
    """Pooled (or local-only) training over ``sites`` for as many passes as the federated arm makes.

    The kept weights are saved as ``<out>/<fold>/<arm>/model.pt`` with their model card.
    """
    passes = cfg.federated.passes
    train, val = concat([fd.train[s] for s in sites]), concat([fd.val[s] for s in sites])
    tcfg = cfg.train
    seed_everything(tcfg.seed)
    model = build_model(tcfg)
    curve: list[CurvePoint] = []

    def on_epoch(e: EpochLog) -> None:
        curve.append(CurvePoint(passes=e.epoch, train_loss=e.train_loss, val_auroc=e.val_auroc))
        echo(f"    {arm} epoch {e.epoch}/{passes}  loss {e.train_loss:.4f}  val AUROC {format_value(e.val_auroc)}")

    t0 = time.perf_counter()
    result = fit(model, train, val, tcfg, epochs=passes, on_epoch=on_epoch)
    t_thr = time.perf_counter()
    thr = _threshold(val, predict(model, val, tcfg))
    load_s = sum(fd.load_s[s] for s in sites)
    seconds = time.perf_counter() - t0 + load_s
    timing = {
        "load_s": round(load_s, 3),
        "epochs": [
            {"epoch": e.epoch, "train_s": round(e.train_s, 3), "val_s": round(e.val_s, 3)} for e in result.history
        ],
        "threshold_s": round(time.perf_counter() - t_thr, 3),
        "arm_s": round(seconds, 3),
    }
    training = ArmTraining(
        hospitals=tuple(sites),
        train_ecgs={s: len(fd.train[s]) for s in sites},
        train=tcfg,
        passes=passes,
        lr_schedule=f"cosine from {tcfg.lr:g} to 0 over {passes} epochs",
        seeds=f"initialisation and batch order from train.seed={tcfg.seed} (epoch e: {tcfg.seed} * 1000 + e)",
        kept=f"epoch {result.best_epoch} of {len(result.history)} (best validation AUROC)",
    )
    checkpoint = out / fd.fold.name / arm_folder(arm) / "model.pt"
    save_checkpoint(checkpoint, model.state_dict(), {"epoch": result.best_epoch, "val_auroc": result.best_val_auroc})
    write_json(checkpoint.with_name(TIMING), timing)
    card = make_card(
        model,
        train=tcfg,
        spec=spec.model_copy(update={"site_stats": {s: v for s, v in spec.site_stats.items() if s in sites}}),
        arm=arm,
        training_data={s: HospitalData(ecgs=len(fd.train[s]), positives=fd.train[s].n_positive) for s in sites},
        kept=training.kept,
        validation_auroc=result.best_val_auroc,
        threshold=thr,
        threshold_source=f"Youden on the validation split of {', '.join(sites)}",
        config=cfg,
    )
    write_card(checkpoint, card)
    scores = predict_tests(model, fd.test, tcfg)
    return ArmResult(
        arm, training, seconds, tuple(curve), thr, score_tests(arm, fd.fold.name, fd.test, scores, thr, cfg), scores
    )


def fold_app_config(cfg: RunConfig, prepared: Prepared, fold: Fold, out: Path) -> AppConfig:
    """The settings the ServerApp and ClientApps of one fold's federated run read."""
    cohort = cfg.data.cohort if isinstance(cfg.data, SyntheticData) else CohortConfig()
    return AppConfig(
        cohort=cohort,
        data=StoresConfig(dir=cfg.data_dir, stores=prepared.path, hospitals=fold.train_sites),
        train=cfg.train,
        federated=cfg.federated,
        evaluation=EvaluationConfig(n_boot=cfg.n_boot),
        output=OutputConfig(dir=out, resume=cfg.resume),
    )


def _federated_training(app: AppConfig, outputs: FederatedOutputs, fd: FoldData) -> ArmTraining:
    reported = outputs.trained_with
    per_hospital = {
        name: {
            "batch_size": rounds[0]["train"]["batch_size"],
            "num_threads": rounds[0]["train"]["num_threads"],
            "proximal_mu": rounds[0]["proximal_mu"],
            "rounds": [r["server_round"] for r in rounds],
            "seeds": [r["train"]["seed"] for r in rounds],
            "lr_first": [r["lr_first"] for r in rounds],
            "lr_last": [r["lr_last"] for r in rounds],
        }
        for name, rounds in reported.items()
    }
    f = app.federated
    best = outputs.best_round
    return ArmTraining(
        hospitals=app.data.hospitals,
        train_ecgs={s: len(fd.train[s]) for s in app.data.hospitals},
        train=local_train_config(app, app.train.seed),
        passes=f.passes,
        lr_schedule=f"cosine from {app.train.lr:g} to 0 over {f.passes} passes; every hospital trains round r's "
        f"{f.local_epochs} epoch(s) at their place in it",
        seeds="hospital h in round r: SeedSequence([train.seed, h, r]) (per_hospital.seeds)",
        kept=f"round {best} of {f.rounds} (best validation AUROC over all training hospitals)",
        strategy=f.strategy,
        rounds=f.rounds,
        local_epochs=f.local_epochs,
        per_hospital=per_hospital,
    )


def _federated_arm(
    fd: FoldData, cfg: RunConfig, prepared: Prepared, run_federated: FederatedRunner, out: Path, echo: Any
) -> tuple[ArmResult, dict[str, Any]]:
    fold, f = fd.fold, cfg.federated
    where = list(fold.train_sites)
    echo(f"  [{fold.name}] federated {f.strategy}: {f.rounds} rounds x {f.local_epochs} local epoch(s) over {where}")
    fed_out = out / fold.name / "federated"
    app = fold_app_config(cfg, prepared, fold, fed_out)
    t0 = time.perf_counter()
    outputs = run_federated(F.flatten(app), len(fold.train_sites))
    seconds = time.perf_counter() - t0
    curve = []
    for h in outputs.history:
        val_auc = h["val"][ALL_SITES]["auroc"]
        echo(f"    round {h['round']}: train loss {h['train_loss']:.4f}, validation AUROC {format_value(val_auc)}")
        curve.append(CurvePoint(passes=h["round"] * f.local_epochs, train_loss=h["train_loss"], val_auroc=val_auc))
    model = build_model(cfg.train)
    best = fed_out / "best.pt"
    model.load_state_dict(load_checkpoint(best if best.is_file() else fed_out / "last.pt"))
    thr = outputs.test["threshold"]  # chosen by the server on the training hospitals' validation histograms
    gah = set(fd.test) <= set(outputs.test["sites"])
    # the exact scores where the data is: for the held-out hospital under LOHO, and for the paired comparisons
    test_scores = predict_tests(model, fd.test, cfg.train) if not gah or len(cfg.arms) > 1 else {}
    if gah:  # every test site is a hospital of the federation: its figures are those the hospitals sent
        scores = scores_from_histograms("federated", fold.name, outputs.test)
    else:  # LOHO: the held-out hospital is no node of the run; it is scored where its data is
        scores = score_tests("federated", fold.name, fd.test, test_scores, thr, cfg)
    training = _federated_training(app, outputs, fd)
    arm = ArmResult("federated", training, seconds, tuple(curve), thr, scores, test_scores)
    return arm, outputs.test


def run_fold(
    fd: FoldData, cfg: RunConfig, prepared: Prepared, run_federated: FederatedRunner | None, out: Path, echo: Any
) -> FoldResult:
    """All arms of one fold."""
    fold = fd.fold
    arms: list[ArmResult] = []
    by_site = {s.site: s for s in prepared.stores}
    spec = spec_of_stores([by_site[s] for s in fold.train_sites], cfg.train.target_fs)
    server_test = None
    if run_federated is not None and "federated" in cfg.arms:
        fed, server_test = _federated_arm(fd, cfg, prepared, run_federated, out, echo)
        arms.append(fed)
    if "pooled" in cfg.arms:
        where = list(fold.train_sites)
        echo(f"  [{fold.name}] pooled over {where}, {cfg.federated.passes} epochs (same passes over the data)")
        arms.append(_centralised_arm("pooled", fd, fold.train_sites, cfg, spec, out, echo))
    for site in fold.train_sites if "local" in cfg.arms else ():
        echo(f"  [{fold.name}] local-only at {site}")
        arms.append(_centralised_arm(f"local:{site}", fd, [site], cfg, spec, out, echo))
    comparisons = compare_with_federated(fold.name, fd.test, arms, cfg)
    return FoldResult(fold.name, fold.train_sites, dict(fold.test_sites), tuple(arms), server_test, comparisons)


@dataclass(frozen=True)
class ComparisonResult:
    """Every fold of one comparison: what ``results.json`` holds."""

    config: RunConfig
    prepared: Prepared
    folds: tuple[FoldResult, ...]
    overhead: Overhead | None
    seconds: float

    def score_rows(self) -> list[dict[str, Any]]:
        """One row per arm and test site of every fold."""
        return [asdict(s) for r in self.folds for a in r.arms for s in a.scores]

    def scores(self) -> pd.DataFrame:
        return pd.DataFrame(self.score_rows())

    def comparisons(self) -> tuple[PairedComparison, ...]:
        return tuple(c for r in self.folds for c in r.comparisons)

    def to_dict(self) -> dict[str, Any]:
        ov = self.overhead
        return {
            "config": self.config.model_dump(mode="json"),
            "prepared": str(self.prepared.path),
            "hospitals": summarise(self.prepared.stores).to_dict(orient="records"),
            "folds": [r.to_dict() for r in self.folds],
            "scores": self.score_rows(),
            "federation_overhead": {"federated_s": ov.federated_s, "pooled_s": ov.pooled_s, "ratio": ov.ratio}
            if ov
            else None,
            "seconds": round(self.seconds, 1),
        }


def overhead(folds: Sequence[FoldResult]) -> Overhead | None:
    """Federated wall time / pooled wall time at the same passes, over all folds."""
    fed = sum(a.seconds for f in folds for a in f.arms if a.arm == "federated")
    pooled = sum(a.seconds for f in folds for a in f.arms if a.arm == "pooled")
    return Overhead(fed, pooled) if fed and pooled else None


class FoldDataError(ValueError):
    """A fold's data cannot train or select a model: said before any training starts."""


def check_folds(folds: Sequence[Fold], stores: Mapping[str, SiteStore], arms: Sequence[str]) -> list[str]:
    """Refuse folds that cannot train; return warnings for figures that will be undefined.

    Every training hospital needs AMI positives and negatives in its training split (training
    weights the classes by their counts, and a hospital of one class cannot federate), and the
    fold's validation data both classes (the kept round or epoch and the threshold are chosen there).
    A test site or a local-only arm's validation of one class only gives ``n/a`` (a warning).
    """
    problems, warnings = [], []

    def counts(site: str, splits: Sequence[str]) -> tuple[int, int]:
        m = stores[site].metadata
        labels = m.loc[m["split"].isin(splits), "label"]
        return int(labels.sum()), int(len(labels) - labels.sum())

    for fold in folds:
        for site in fold.train_sites:
            pos, neg = counts(site, ["train"])
            if pos == 0 or neg == 0:
                problems.append(
                    f"[{fold.name}] training hospital {site!r} has {pos} AMI positives and {neg} negatives in train"
                )
            vpos, vneg = counts(site, ["val"])
            if "local" in arms and (vpos == 0 or vneg == 0):
                warnings.append(
                    f"[{fold.name}] local-only at {site!r}: its validation split has one class (no threshold)"
                )
        val = [counts(site, ["val"]) for site in fold.train_sites]
        if sum(p for p, _ in val) == 0 or sum(n for _, n in val) == 0:
            problems.append(f"[{fold.name}] the training hospitals' validation data has one class only")
        for site, splits in fold.test_sites.items():
            pos, neg = counts(site, splits)
            if pos == 0 or neg == 0:
                warnings.append(f"[{fold.name}] test site {site!r} has one class only: its AUROC is n/a")
    if problems:
        raise FoldDataError(
            "the data cannot train this protocol:\n  "
            + "\n  ".join(problems)
            + "\n(merge small hospitals with --min-site-records, use more data, or choose the other protocol)"
        )
    return warnings


def run_comparison(
    cfg: RunConfig, prepared: Prepared, run_federated: FederatedRunner | None, *, echo: Any = print
) -> ComparisonResult:
    """Every fold of the protocol, every arm; writes config.json, results.json, results.md and a plot.

    Raises :class:`FoldDataError` before any training (and before writing) when a fold cannot train.
    """
    stores = prepared.stores
    by_name = {s.site: s for s in stores}
    sites = [s.site for s in stores]
    folds = gah_folds(sites) if cfg.protocol == "gah" else loho_folds(sites)
    for warning in check_folds(folds, by_name, cfg.arms):
        echo(f"!! {warning}")
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(cfg.model_dump_json(indent=2) + "\n")
    t0 = time.perf_counter()
    results: list[FoldResult] = []
    for fold in folds:
        echo(f"fold {fold.name}: train {list(fold.train_sites)}, test {list(fold.test_sites)}")
        fd = load_fold(fold, by_name, cfg.train.target_fs)
        results.append(run_fold(fd, cfg, prepared, run_federated, out, echo))
    ov = overhead(results)
    result = ComparisonResult(cfg, prepared, tuple(results), ov, time.perf_counter() - t0)
    write_json(out / "results.json", result.to_dict())
    readable = comparison_table(result.scores())
    plot_learning_curves(
        {
            f"{r.fold} {a.arm} (per {'round' if a.arm == 'federated' else 'epoch'})": (
                [p.passes for p in a.curve],
                [p.val_auroc for p in a.curve],
            )
            for r in results
            for a in r.arms
            if a.arm in ("federated", "pooled")
        },
        out / "learning_curves.png",
    )
    md = [
        "# fedami comparison",
        "",
        f"Protocol {cfg.protocol.upper()}, strategy {cfg.federated.strategy}, model {cfg.train.model}, "
        f"{cfg.federated.passes} passes over the data per arm.",
        "",
        "## Hospitals",
        "",
        markdown_table(summarise(stores)),
        "",
        "## Test results",
        "",
        markdown_table(readable),
        "",
        "Each arm's settings as trained are under `folds[].arms[].trained_with` in `results.json`.",
        "",
    ]
    paired = paired_table(result.comparisons())
    if len(paired):
        md += [
            "## Federated against the other arms, paired",
            "",
            f"Both models scored on the same test ECGs where the data is; difference and ratio of AUROC with "
            f"{cfg.n_boot}-replicate patient-bootstrap 95 % intervals, the bootstrap's two-sided p and DeLong's "
            "(which treats ECGs as independent). The federated AUROC here is that of its exact scores; the table "
            "above gives the one from the hospitals' score histograms.",
            "",
            markdown_table(paired),
            "",
        ]
    if ov:
        md += [
            "## Federation overhead",
            "",
            f"Federated wall time / pooled wall time at the same passes over the data: {ov.ratio:.2f} "
            f"({ov.federated_s:.1f} s / {ov.pooled_s:.1f} s).",
            "",
        ]
    (out / "results.md").write_text("\n".join(md))
    echo("")
    echo(readable.to_string(index=False))
    if len(paired):
        echo("\nfederated against the other arms, paired on the same test ECGs:")
        echo(paired.to_string(index=False))
    if ov:
        echo(f"federation overhead (wall time federated / pooled, same passes): {ov.ratio:.2f}")
    echo(f"results: {out / 'results.json'}  report: {out / 'results.md'}")
    return result


def comparison_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per arm and test site: AUROC [CI], AUPRC, threshold, Sens, Spec."""

    def auc(r: pd.Series) -> str:
        text = format_ci(r["auroc"], r["auroc_lo"], r["auroc_hi"])
        return "n/a (one class)" if text == "n/a" else text

    return pd.DataFrame(
        {
            "fold": table["fold"],
            "arm": table["arm"],
            "test site": table["test_site"],
            "n (AMI)": [f"{n} ({p})" for n, p in zip(table["n"], table["positives"], strict=True)],
            "AUROC [95% CI]": table.apply(auc, axis=1),
            "AUPRC": table["auprc"].map(format_value),
            "threshold": table["threshold"].map(format_value),
            "Sens": table["sensitivity"].map(format_value),
            "Spec": table["specificity"].map(format_value),
        }
    )


def paired_table(rows: Sequence[PairedComparison]) -> pd.DataFrame:
    """One row per fold, test site and other arm: both AUROCs, difference and ratio [95 % CI], p-values."""

    def signed(v: float, lo: float | None, hi: float | None) -> str:
        return f"{v:+.3f}" if lo is None or hi is None else f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]"

    return pd.DataFrame(
        {
            "fold": [c.fold for c in rows],
            "test site": [c.test_site for c in rows],
            "against": [c.other for c in rows],
            "n (AMI)": [f"{c.n} ({c.positives})" for c in rows],
            "federated": [format_value(c.federated) for c in rows],
            "other": [format_value(c.other_auroc) for c in rows],
            "difference [95% CI]": [signed(c.difference, c.lower, c.upper) for c in rows],
            "ratio [95% CI]": [format_ci(c.ratio, c.ratio_lower, c.ratio_upper) for c in rows],
            "p (bootstrap)": [f"{c.p_bootstrap:.3g}" for c in rows],
            "p (DeLong)": ["n/a" if c.p_delong is None else f"{c.p_delong:.3g}" for c in rows],
        }
    )
