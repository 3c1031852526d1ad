"""``python sim/run.py --clients 3``: federated vs pooled vs local-only AMI detection, one command.

On the built-in synthetic cohort (generated on first use, then reused) it runs the Flower
simulation (Ray backend, one CPU per hospital), the pooled and the local-only baselines under the
same splits, and writes ``config.json``, ``results.json``, ``results.md`` and a learning-curve plot.
The console ends with the comparison table: for each arm and test hospital, AUROC [95% CI], AUPRC,
and sensitivity/specificity at the threshold transferred from the arm's validation data.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python sim/run.py` from a checkout puts sim/ first on the path
    sys.path.insert(0, str(REPO_ROOT))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=3, help="number of hospitals (>= 2)")
    p.add_argument("--protocol", choices=("gah", "loho"), default="gah")
    p.add_argument(
        "--strategy",
        default="fedavg",
        help="fedavg, fedprox, fedadam, fedyogi, fedavgm, fedmedian, fedtrimmedavg, krum",
    )
    from common.config import DEFAULT_ROUNDS

    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument(
        "--local-batch-size",
        type=int,
        default=None,
        help="a hospital's batch size (default: --batch-size / the training hospitals, so that the hospitals "
        "take on average as many optimiser steps per pass over the data as pooled training)",
    )
    p.add_argument("--proximal-mu", type=float, default=0.01, help="FedProx mu")
    p.add_argument("--arms", default="federated,pooled,local", help="comma-separated subset of federated,pooled,local")
    p.add_argument("--data", choices=("synthetic", "ptbxl", "manifest"), default="synthetic")
    p.add_argument("--manifest", type=Path, default=None, help="with --data manifest: the CSV manifest of WFDB records")
    p.add_argument("--ptbxl-root", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "ptbxl")
    p.add_argument("--ptbxl-filtered", type=Path, default=None, help="also the shared filtered PTB-XL array")
    p.add_argument("--n-ecgs", type=int, default=4000, help="ECGs in the synthetic cohort, all hospitals")
    p.add_argument("--difficulty", type=float, default=0.5, help="synthetic task difficulty, 0 (easy) to 1 (hard)")
    p.add_argument("--seed", type=int, default=0, help="seeds the cohort, the splits and all training")
    p.add_argument("--model", default="cnn1d", help="registered model name")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--boot", type=int, default=1000, help="patient-bootstrap replicates for the AUROC CIs")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for the centralised arms")
    p.add_argument(
        "--data-dir", type=Path, default=None, help="cohort store root (default $FEDAMI_DATA_DIR or ~/.cache/fedami)"
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/<timestamp> in the repository)")
    p.add_argument("--resume", type=Path, default=None, help="continue the federated run saved in this folder (GAH)")
    return p


def real_data_spec(args: argparse.Namespace) -> dict[str, str] | None:
    """The flat real-data spec of the run config, or None for the synthetic cohort."""
    if args.data == "ptbxl":
        filtered = str(args.ptbxl_filtered.resolve()) if args.ptbxl_filtered else ""
        return {"kind": "ptbxl", "root": str(args.ptbxl_root.resolve()), "filtered": filtered}
    if args.data == "manifest":
        if args.manifest is None:
            raise SystemExit("error: --data manifest needs --manifest CSV")
        return {"kind": "manifest", "path": str(args.manifest.resolve())}
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("flwr").propagate = False  # Flower prints its own round-by-round progress
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the simulation's state database, set up each run
    from pydantic import ValidationError

    from common.config import CohortConfig, FederatedConfig, RunConfig, TrainConfig
    from common.data.sources import real_data
    from common.experiments.comparison import run_comparison
    from common.experiments.report import default_out_dir
    from common.models import UnknownModelError, create_model
    from common.synthetic.cohort import default_data_dir, ensure_synthetic_cohort
    from server.strategies import STRATEGIES

    try:
        create_model(args.model)
    except UnknownModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.strategy not in STRATEGIES:
        print(f"error: unknown strategy {args.strategy!r}; known: {', '.join(STRATEGIES)}", file=sys.stderr)
        return 2
    try:
        cfg = RunConfig(
            cohort=CohortConfig(seed=args.seed, n_sites=args.clients, n_ecgs=args.n_ecgs, difficulty=args.difficulty),
            real_data=real_data_spec(args),
            train=TrainConfig(
                model=args.model, batch_size=args.batch_size, lr=args.lr, seed=args.seed, num_threads=args.threads
            ),
            federated=FederatedConfig(
                strategy=args.strategy,
                rounds=args.rounds,
                local_epochs=args.local_epochs,
                local_batch_size=args.local_batch_size,
                proximal_mu=args.proximal_mu,
            ),
            protocol=args.protocol,
            arms=tuple(a.strip() for a in args.arms.split(",") if a.strip()),
            n_boot=args.boot,
            data_dir=(args.data_dir or default_data_dir()).expanduser().resolve(),
            out_dir=(args.out or default_out_dir(REPO_ROOT)).expanduser().resolve(),
            resume=args.resume.resolve() if args.resume else None,
        )
    except (ValidationError, ValueError) as err:
        print(f"error: invalid settings:\n{err}", file=sys.stderr)
        return 2
    if cfg.real_data is None:
        print(f"cohort: {cfg.cohort.n_sites} synthetic hospitals, {cfg.cohort.n_ecgs} ECGs, key {cfg.cohort.key()}")
        stores = ensure_synthetic_cohort(cfg.cohort, cfg.data_dir)
    else:
        stores = real_data(cfg.real_data).open(cfg.data_dir)
        print(f"{cfg.real_data['kind']}: {len(stores)} hospitals ({', '.join(s.site for s in stores)})")
    runner = None
    if "federated" in cfg.arms:
        from sim.simulation import run_federation

        runner = run_federation
    run_comparison(cfg, stores, runner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
