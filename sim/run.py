"""``python sim/run.py --clients 3``: the main fedami job on the built-in synthetic cohort.

This first version generates (or reuses) the synthetic multi-hospital cohort, trains the pooled
baseline, prints per-hospital test AUROC and writes ``config.json``, ``results.json``,
``results.md`` and plots into the output folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=3, help="number of hospitals (>= 2)")
    p.add_argument("--n-ecgs", type=int, default=4000, help="ECGs in the synthetic cohort, all hospitals")
    p.add_argument("--difficulty", type=float, default=0.5, help="synthetic task difficulty, 0 (easy) to 1 (hard)")
    p.add_argument("--seed", type=int, default=0, help="seeds the cohort and training")
    p.add_argument("--model", default="cnn1d", help="registered model name")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--data-dir", type=Path, default=None, help="cohort store root (default $FEDAMI_DATA_DIR or ~/.cache/fedami)"
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/<timestamp> in the repository)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from pydantic import ValidationError

    from common.cohort import default_data_dir
    from common.config import CohortConfig, RunConfig, TrainConfig
    from common.experiment import default_out_dir, run_pooled
    from common.models import UnknownModelError, create_model

    try:
        create_model(args.model)
    except UnknownModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        cfg = RunConfig(
            cohort=CohortConfig(seed=args.seed, n_sites=args.clients, n_ecgs=args.n_ecgs, difficulty=args.difficulty),
            train=TrainConfig(
                model=args.model,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                seed=args.seed,
                num_threads=args.threads,
            ),
            data_dir=(args.data_dir or default_data_dir()).expanduser().resolve(),
            out_dir=(args.out or default_out_dir(REPO_ROOT)).expanduser().resolve(),
        )
    except (ValidationError, ValueError) as err:
        print(f"error: invalid settings:\n{err}", file=sys.stderr)
        return 2
    run_pooled(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
