"""Reproduce the clinical study without federation: every model trained pooled and evaluated.

Examples
--------
On the synthetic cohort::

    python sim/study.py --data synthetic --n-ecgs 6000

On the real PTB-XL data beside the checkout (task: any MI statement, likelihood >= 50, vs rest;
100 Hz; PTB-XL folds; hospitals by recording site)::

    python sim/study.py --data ptbxl --ptbxl-root ../shared/data/ptbxl --ptbxl-filtered ../shared/data/ptbxl-filtered

Writes ``config.json``, ``results.json``, ``report.md`` (the study's main table for
conv_bilstm_attn and a benchmark table of all models with DeLong p-values) and ROC, PR and
calibration plots into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("synthetic", "ptbxl"), default="synthetic")
    p.add_argument("--n-ecgs", type=int, default=6000, help="synthetic cohort size")
    p.add_argument("--clients", type=int, default=3, help="synthetic hospitals")
    p.add_argument("--difficulty", type=float, default=0.5)
    p.add_argument("--ptbxl-root", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "ptbxl")
    p.add_argument("--ptbxl-filtered", type=Path, default=None, help="also the shared filtered PTB-XL array")
    p.add_argument("--models", default="all", help="comma-separated registered names and/or features_logreg, or 'all'")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--crop-s", type=float, default=None, help="train on random crops, test on sliding windows")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", choices=("bce", "focal"), default="bce")
    p.add_argument("--boot", type=int, default=1000, help="patient-bootstrap replicates for CIs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--reuse", action="store_true", help="load models already finished in --out instead of retraining")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from common.config import CohortConfig, TrainConfig
    from common.data.ingest import site_table
    from common.data.sources import PtbxlDataset, open_stores, pooled_split
    from common.experiments.study import run_study
    from common.models import list_models
    from common.models.feature_baseline import FEATURE_BASELINE
    from common.synthetic.cohort import default_data_dir

    known = (*list_models(), FEATURE_BASELINE)
    models = list(known) if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in known]
    if unknown:
        print(f"error: unknown models {unknown}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    data = (
        CohortConfig(seed=args.seed, n_sites=args.clients, n_ecgs=args.n_ecgs, difficulty=args.difficulty)
        if args.data == "synthetic"
        else PtbxlDataset(
            root=args.ptbxl_root.resolve(), filtered=args.ptbxl_filtered.resolve() if args.ptbxl_filtered else None
        )
    )
    cfg = TrainConfig(
        epochs=args.epochs,
        patience=args.patience,
        crop_s=args.crop_s,
        batch_size=args.batch_size,
        lr=args.lr,
        loss=args.loss,
        seed=args.seed,
        num_threads=args.threads,
    )
    out = (args.out or REPO_ROOT / "runs" / f"study-{args.data}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = {"data": {"kind": args.data, **data.model_dump(mode="json")}, "train": cfg.model_dump(mode="json"),
              "models": models, "bootstrap": args.boot}  # fmt: skip
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    stores = open_stores(data, (args.data_dir or default_data_dir()).resolve())
    data_table = site_table(stores)
    print(data_table.to_string(index=False))
    train, val, test = (pooled_split(stores, s, cfg.target_fs) for s in ("train", "val", "test"))
    for name, part in (("train", train), ("val", val), ("test", test)):
        print(f"pooled {name}: {len(part)} ECGs, {part.n_positive} AMI")
    title = "PTB-XL (real), pooled" if args.data == "ptbxl" else "Synthetic cohort, pooled"
    table = run_study(
        models,
        train,
        val,
        test,
        cfg,
        out,
        title=title,
        data_table=data_table,
        config=config,
        n_boot=args.boot,
        reuse=args.reuse,
    )
    print()
    print(table.to_string(index=False))
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
