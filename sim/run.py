"""``fedami run`` (or ``python sim/run.py --clients 3``): federated vs pooled vs local-only AMI detection.

On the built-in synthetic cohort (generated on first use, then reused) it runs the Flower
simulation (Ray backend, one CPU per hospital), the pooled and the local-only baselines under the
same splits, and writes ``config.json`` (the settings as run), ``results.json`` (every score and
what each arm trained with), ``results.md`` and a learning-curve plot. The console ends with the
comparison table: for each arm and test hospital, AUROC [95% CI], AUPRC, and sensitivity and
specificity at the threshold transferred from the arm's validation data.

Every option's default comes from the typed settings (``common/config``); ``--set KEY=VALUE``
reaches any other setting (``fedami config run`` lists them).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # `python sim/run.py` from a checkout puts sim/ first on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from common.config import options as O
from sim.cli import add_paths, check_names, check_writable, paths, settings

OPTIONS = (*O.DATA_OPTIONS, O.SEED_OPTION, *O.TRAIN_OPTIONS, *O.FEDERATED_OPTIONS, *O.RUN_OPTIONS)


def build_parser() -> argparse.ArgumentParser:
    from common.config import RunConfig

    p = argparse.ArgumentParser(
        prog="fedami run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    O.add_data_options(p, RunConfig)
    O.add_options(p, RunConfig, OPTIONS[len(O.DATA_OPTIONS) :])
    add_paths(p, resume=True)
    O.add_preset_option(p)
    O.add_set_option(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("flwr").propagate = False  # Flower prints its own round-by-round progress
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the simulation's state database, set up each run
    from common.config import RunConfig
    from common.data.sources import prepare
    from common.data.store import StoreError
    from common.experiments.comparison import FoldDataError, run_comparison

    try:
        fixed: dict[str, object] = dict(paths(args, "run"))
        if args.resume is not None:
            fixed["resume"] = args.resume.expanduser().resolve()
        cfg = settings(args, RunConfig, OPTIONS, **fixed)
        check_names(cfg.train.model, cfg.federated.strategy if "federated" in cfg.arms else None)
        check_writable(cfg.out_dir)
    except O.SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"output folder: {cfg.out_dir}")
    try:
        prepared = prepare(cfg.data, cfg.data_dir)
    except (StoreError, ValueError, FileNotFoundError) as err:  # the data cannot be prepared: say why, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{cfg.data.kind}: {len(prepared.stores)} hospitals ({', '.join(prepared.hospitals)}) in {prepared.path}")
    runner = None
    if "federated" in cfg.arms:
        from sim.simulation import run_federation

        runner = run_federation
    try:
        run_comparison(cfg, prepared, runner)
    except FoldDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
