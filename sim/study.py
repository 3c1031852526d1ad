"""``fedami study``: the clinical study without federation: every model trained pooled and evaluated.

Examples
--------
On the synthetic cohort::

    fedami study --data synthetic --n-ecgs 6000

On the real PTB-XL data beside the checkout (task: any MI statement, likelihood >= 50, vs rest;
100 Hz; PTB-XL folds; hospitals by recording site)::

    fedami study --data ptbxl --ptbxl-root ../shared/data/ptbxl --ptbxl-filtered ../shared/data/ptbxl-filtered

Writes ``config.json``, ``results.json``, ``report.md`` (the study's main table for
conv_bilstm_attn and a benchmark table of all models with DeLong p-values) and ROC, PR and
calibration plots into ``--out``. Every option's default comes from the typed settings
(``fedami config study`` lists them).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # `python sim/study.py` from a checkout puts sim/ first on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.config import options as O
from sim.cli import add_paths, check_names, check_writable, paths, settings

OPTIONS = (*O.DATA_OPTIONS, O.SEED_OPTION, *O.TRAIN_OPTIONS, *O.STUDY_OPTIONS)


def build_parser() -> argparse.ArgumentParser:
    from common.config import StudyConfig

    p = argparse.ArgumentParser(
        prog="fedami study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    O.add_data_options(p, StudyConfig)
    O.add_options(p, StudyConfig, OPTIONS[len(O.DATA_OPTIONS) :])
    add_paths(p)
    p.add_argument("--reuse", action="store_true", help="load models already finished in --out instead of retraining")
    O.add_preset_option(p)
    O.add_set_option(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from common.config import StudyConfig
    from common.data.ingest import site_table
    from common.data.sources import pooled_split, prepare
    from common.data.store import StoreError
    from common.experiments.study import run_study
    from common.models import list_models
    from common.models.card import spec_of_stores
    from common.models.feature_baseline import FEATURE_BASELINE

    try:
        cfg = settings(args, StudyConfig, OPTIONS, **paths(args, "study"))
        models = list(cfg.models) or [*list_models(), FEATURE_BASELINE]
        check_names([m for m in models if m != FEATURE_BASELINE])
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
    data_table = site_table(prepared.stores)
    print(data_table.to_string(index=False))
    train, val, test = (pooled_split(prepared.stores, s, cfg.train.target_fs) for s in ("train", "val", "test"))
    for name, part in (("train", train), ("val", val), ("test", test)):
        print(f"pooled {name}: {len(part)} ECGs, {part.n_positive} AMI")
    title = "PTB-XL (real), pooled" if cfg.data.kind == "ptbxl" else f"{cfg.data.kind.capitalize()} data, pooled"
    spec = spec_of_stores(prepared.stores, cfg.train.target_fs)
    table = run_study(cfg, models, train, val, test, title=title, data_table=data_table, spec=spec, reuse=args.reuse)
    print()
    print(table.to_string(index=False))
    print(f"report: {cfg.out_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
