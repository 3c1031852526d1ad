"""Model selection without the test fold: patient-grouped K-fold cross-validation over training + validation.

Usage::

    python benchmarks/bench_selection.py --data ptbxl --ptbxl-root ../shared/data/ptbxl \\
        --ptbxl-filtered ../shared/data/ptbxl-filtered --lr 0.001 --epochs 12 --seeds 3 \\
        --variants default,wide-regularised,synthetic-pretrained,superclass-auxiliary,cnn1d,bilstm

PTB-XL's validation fold holds 43 MI: one validation AUROC moves by about 0.02 between training
seeds, more than most changes one would choose between. This benchmark pools the training and
validation splits (the test split is never loaded), cuts them into ``--folds`` patient-disjoint,
label-stratified folds and trains every variant with every seed on each K-1 folds for a fixed
``--epochs`` (the cosine schedule to its end, no early stopping, so no fold chooses its own epoch),
scoring the held-out fold. It prints, per variant, the held-out AUROC as mean ± SD over folds and
seeds, the AUROC of the seeds' averaged scores (a seed ensemble), and the seconds per fit; with
``--out`` also ``selection.json`` (written after every variant), and each variant's paired difference from the
first one over the same folds and seeds; ``--summary runs/.../selection.json`` prints that table again.

Variants (:data:`VARIANTS`): ``default`` (the typed defaults with the data options given), ``wide-regularised``
(conv_bilstm_attn at width 32, 64 LSTM units, 125 steps, dropout 0.5, weight decay 0.05, lr 5e-4),
``synthetic-pretrained`` (the network first trained on a synthetic cohort prepared exactly as the data
are, then fine-tuned), ``superclass-auxiliary`` (PTB-XL only: PTB-XL's diagnostic superclasses NORM,
STTC, CD, HYP as auxiliary targets of the attention context during training, ``train.auxiliary_targets``),
``subclass-auxiliary`` (PTB-XL's 19 diagnostic subclasses outside MI instead: the mimics told apart, ischaemia,
bundle-branch blocks, hypertrophy), ``localised-auxiliary`` (those and MI's own subclasses by territory),
``augmented`` (training batches with random gains, noise and baseline sway: ``train.augment_*``),
``augmented-auxiliary`` (both) and every registered model by its name.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.data.readers.ptbxl import MI_SUBCLASS_TARGETS, SUBCLASS_TARGETS, SUPERCLASS_TARGETS


@dataclass(frozen=True)
class Variant:
    """A candidate: a registered model with constructor settings, training settings, and how it starts."""

    model: str = "conv_bilstm_attn"
    kwargs: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    pretrain_ecgs: int | None = None


AUGMENTATION = {"augment_gain": 0.1, "augment_noise": 0.05, "augment_wander": 0.1}
"""Sized before any fit: gains within about ±10 %, noise and sway small beside the lead's own SD."""

VARIANTS: dict[str, Variant] = {
    "default": Variant(),
    "wide-regularised": Variant(
        kwargs={"width": 32, "lstm_hidden": 64, "last_stride": 1, "dropout": 0.5},
        train={"lr": 5e-4, "weight_decay": 0.05},
    ),
    "synthetic-pretrained": Variant(pretrain_ecgs=8000),
    "superclass-auxiliary": Variant(train={"auxiliary_targets": SUPERCLASS_TARGETS}),
    "subclass-auxiliary": Variant(train={"auxiliary_targets": SUBCLASS_TARGETS}),
    "localised-auxiliary": Variant(train={"auxiliary_targets": SUBCLASS_TARGETS + MI_SUBCLASS_TARGETS}),
    "augmented": Variant(train=AUGMENTATION),
    "augmented-auxiliary": Variant(train={**AUGMENTATION, "auxiliary_targets": SUPERCLASS_TARGETS}),
}


def variant(name: str) -> Variant:
    """A named variant, or a registered model by its name with the defaults; an unknown name lists the known ones."""
    from common.models import list_models

    if name in VARIANTS:
        return VARIANTS[name]
    if name in list_models():
        return Variant(model=name)
    raise SystemExit(f"error: unknown variant {name!r}; known: {', '.join([*VARIANTS, *list_models()])}")


def grouped_folds(y: np.ndarray, patients: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """``k`` label-stratified folds (indices) with every patient's ECGs in one fold only."""
    from sklearn.model_selection import StratifiedGroupKFold

    split = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, patients)
    return [held for _, held in split]


def train_fixed(model: Any, data: Any, cfg: Any, epochs: int) -> None:
    """``epochs`` epochs on the engine's cosine schedule (auxiliary targets as ``cfg`` says), the last one kept."""
    import torch

    from common.training.engine import cosine_factor, train_epochs

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: cosine_factor(e, epochs))
    for epoch in range(1, epochs + 1):
        train_epochs(model, data, cfg, epochs=1, seed=cfg.seed * 1000 + epoch, optimizer=opt)
        sched.step()


def pretrained_state(v: Variant, cfg: Any, preprocessing: Any, data_dir: Path, seed: int, epochs: int) -> Any:
    """The network trained on a synthetic cohort of ``v.pretrain_ecgs`` ECGs, prepared with ``preprocessing``."""
    from common.config import CohortConfig, SyntheticData
    from common.data.arrays import EcgArrays
    from common.data.preprocess import preprocess_signal
    from common.data.sources import pooled_split, prepare
    from common.training.engine import build_model, seed_everything

    assert v.pretrain_ecgs is not None
    stores = prepare(SyntheticData(cohort=CohortConfig(n_ecgs=v.pretrain_ecgs)), data_dir, progress=False).stores
    raw = pooled_split(stores, "train", cfg.target_fs)
    x = np.stack([preprocess_signal(r.astype(np.float64), cfg.target_fs, preprocessing)[0] for r in raw.x])
    seed_everything(seed)
    run_cfg = cfg.model_copy(update={"model": v.model, **v.train, "seed": seed})
    model = build_model(run_cfg, **v.kwargs)
    train_fixed(model, EcgArrays(x, raw.demo, raw.y, raw.meta), run_cfg, epochs)
    return model.state_dict()


def cross_validate(
    v: Variant, dev: Any, folds: Sequence[np.ndarray], cfg: Any, seeds: Sequence[int], epochs: int,
    *, init: Callable[[int], Any] | None = None, echo: Callable[..., Any] = print,
) -> dict[str, Any]:  # fmt: skip
    """Held-out scores of every seed on every fold; their AUROCs and the seed ensemble's."""
    from common.data.arrays import EcgArrays
    from common.evaluation.metrics import auroc
    from common.training.engine import build_model, predict, seed_everything

    def part(idx: np.ndarray) -> EcgArrays:
        return EcgArrays(dev.x[idx], dev.demo[idx], dev.y[idx], dev.meta.iloc[idx].reset_index(drop=True))

    scores = np.full((len(seeds), len(dev)), np.nan)
    aurocs, seconds = [], []
    tcfg = cfg.model_copy(update={"model": v.model, **v.train})
    for i, seed in enumerate(seeds):
        start_state = init(seed) if init is not None else None
        for k, held in enumerate(folds):
            train = np.setdiff1d(np.arange(len(dev)), held)
            run_cfg = tcfg.model_copy(update={"seed": seed})
            seed_everything(seed)
            model = build_model(run_cfg, **v.kwargs)
            if start_state is not None:
                model.load_state_dict(start_state)
            t0 = time.perf_counter()
            train_fixed(model, part(train), run_cfg, epochs)
            seconds.append(time.perf_counter() - t0)
            scores[i, held] = predict(model, part(held), run_cfg)
            aurocs.append(auroc(dev.y[held], scores[i, held]))
            echo(f"  seed {seed} fold {k + 1}/{len(folds)}: held-out AUROC {aurocs[-1]:.3f} ({seconds[-1]:.0f} s)")
    ensemble = [auroc(dev.y[held], scores[:, held].mean(0)) for held in folds]
    return {
        "auroc_mean": float(np.mean(aurocs)), "auroc_sd": float(np.std(aurocs, ddof=1)) if len(aurocs) > 1 else 0.0,
        "ensemble_auroc_mean": float(np.mean(ensemble)), "seconds_per_fit": float(np.mean(seconds)),
        "aurocs": [float(a) for a in aurocs], "ensemble_aurocs": [float(a) for a in ensemble],
    }  # fmt: skip


def print_table(results: dict[str, dict[str, Any]]) -> None:
    """The comparison, and each variant's paired difference from the first (same folds and seeds: mean ± SE)."""
    names = list(results)
    n_seeds = len(results[names[0]]["aurocs"]) // max(len(results[names[0]]["ensemble_aurocs"]), 1)
    print(f"\n{'variant':<24} {'held-out AUROC (mean ± SD)':>27} {f'ensemble of {n_seeds}':>15} {'s per fit':>10}"
          f"   paired difference from {names[0]} (mean ± SE)")  # fmt: skip
    base = np.asarray(results[names[0]]["aurocs"])
    for name, r in results.items():
        diff = np.asarray(r["aurocs"]) - base
        paired = "" if name == names[0] else f"   {diff.mean():+.4f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.4f}"
        print(_row(name, r) + paired)


def _row(name: str, r: dict[str, Any]) -> str:
    return (f"{name:<24} {r['auroc_mean']:>19.4f} ± {r['auroc_sd']:.4f} {r['ensemble_auroc_mean']:>15.4f} "
            f"{r['seconds_per_fit']:>10.1f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from sim.study import OPTIONS, build_parser

    p = build_parser()
    p.prog, p.description = "bench_selection.py", __doc__
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (patient-disjoint)")
    p.add_argument("--variants", default="default", help="comma-separated variant names (see the module's help)")
    p.add_argument("--summary", type=Path, default=None, help="print the table of a saved selection.json and stop")
    args = p.parse_args(argv)
    if args.summary is not None:
        print_table(json.loads(args.summary.read_text())["results"])
        return 0
    if args.folds < 2:
        raise SystemExit("error: --folds must be at least 2")
    chosen = {name: variant(name) for name in args.variants.split(",") if name}

    from common.config import StudyConfig
    from common.data.arrays import concat
    from common.data.sources import pooled_split, prepare
    from common.models.card import spec_of_stores
    from sim.cli import paths, settings

    cfg = settings(args, StudyConfig, OPTIONS, **paths(args, "selection"))
    if cfg.models or args.reuse:  # the study's options that mean nothing here: never silently ignored
        raise SystemExit("error: --models and --reuse are fedami study's; name what to compare with --variants")
    if any(v.train.get("auxiliary_targets") for v in chosen.values()) and cfg.data.kind != "ptbxl":
        raise SystemExit("error: superclass-auxiliary needs PTB-XL's SCP statements (--data ptbxl)")
    prepared = prepare(cfg.data, cfg.data_dir)
    dev = concat([pooled_split(prepared.stores, s, cfg.train.target_fs) for s in ("train", "val")])
    folds = grouped_folds(dev.y, dev.meta["patient_id"].astype(str).to_numpy(), args.folds, cfg.train.seed)
    seeds = list(range(cfg.train.seed, cfg.train.seed + cfg.seeds))
    print(f"{len(dev)} ECGs ({dev.n_positive} AMI) of the training and validation splits; test never loaded; "
          f"{args.folds} patient-disjoint folds, seeds {seeds}, {cfg.epochs} epochs per fit")  # fmt: skip
    preprocessing = spec_of_stores(prepared.stores, cfg.train.target_fs).preprocessing
    results: dict[str, Any] = {}
    for name, v in chosen.items():
        print(f"{name}: {v}")

        def init(seed: int, v: Variant = v) -> Any:
            return pretrained_state(v, cfg.train, preprocessing, cfg.data_dir, seed, cfg.epochs)

        results[name] = cross_validate(v, dev, folds, cfg.train, seeds, cfg.epochs,
                                       init=init if v.pretrain_ecgs else None)  # fmt: skip
        print(_row(name, results[name]))
        if args.out is not None:  # after every variant, so an interrupted comparison keeps what finished
            out = cfg.out_dir
            out.mkdir(parents=True, exist_ok=True)
            config = {**cfg.model_dump(mode="json"), "folds": args.folds, "variants": list(chosen)}
            (out / "selection.json").write_text(json.dumps({"config": config, "results": results}, indent=2) + "\n")
    print_table(results)
    if args.out is not None:
        print(f"written: {cfg.out_dir / 'selection.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
