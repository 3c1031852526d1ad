"""``fedami ingest``: prepare a data source's hospital stores, the step before any federated node starts.

Nodes only read prepared data. This command generates the synthetic cohort or reads, checks,
preprocesses and stores real records (one store per hospital, with a quality report), then
preprocesses every split at the models' rate so a node only maps files. It takes the same data
options as ``fedami run`` and ``fedami study``, so with the same options they use the same stores.

Examples
--------
The synthetic cohort a default ``flwr run .`` expects::

    fedami ingest --data synthetic

PTB-XL with the shared filtered array, hospitals by recording site::

    fedami ingest --data ptbxl --ptbxl-root ../shared/data/ptbxl --ptbxl-filtered ../shared/data/ptbxl-filtered

A hospital's own export described by a CSV manifest::

    fedami ingest --data manifest --manifest /data/export/manifest.csv --data-dir /srv/fedami
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # `python sim/ingest.py` from a checkout puts sim/ first on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.config import options as O
from sim.cli import add_paths, paths, settings

OPTIONS = (*O.DATA_OPTIONS, O.DATA_SEED_OPTION, O.Option("--model-fs", ("model-fs",)))


def build_parser() -> argparse.ArgumentParser:
    from common.config import PrepareConfig

    p = argparse.ArgumentParser(
        prog="fedami ingest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    O.add_data_options(p, PrepareConfig)
    O.add_options(p, PrepareConfig, OPTIONS[len(O.DATA_OPTIONS) :])
    p.add_argument("--workers", type=int, default=None, help="reader processes (default: the cores, at most 8)")
    p.add_argument(
        "--export",
        type=Path,
        default=None,
        help="also copy each hospital's store to EXPORT/<hospital>, a folder to hand to that hospital's node alone",
    )
    add_paths(p, out=False)
    O.add_preset_option(p)
    O.add_set_option(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from common.config import PrepareConfig
    from common.data.ingest import site_table
    from common.data.sources import export_stores, prepare, warm_splits
    from common.data.store import StoreError

    try:
        cfg = settings(args, PrepareConfig, OPTIONS, **paths(args, "ingest"))
        prepared = prepare(cfg.data, cfg.data_dir, workers=args.workers)
        warm_splits(prepared.stores, cfg.model_fs)
        if args.export is not None:
            for folder in export_stores(prepared.stores, args.export.expanduser().resolve()):
                print(f"exported {folder}")
    except (O.SettingsError, StoreError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print()
    print("ECGs, patients and AMI positives per hospital and split:")
    print(site_table(prepared.stores).to_string(index=False))
    print(f"prepared {len(prepared.stores)} hospitals in {prepared.path}")
    print(f'(a node holding one of them: --node-config "site=<hospital> data-dir={prepared.path}")')
    return 0


if __name__ == "__main__":
    sys.exit(main())
