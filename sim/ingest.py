"""Ingest real ECGs into fedami's cohort store and print the per-site table and quality report.

Examples
--------
PTB-XL raw records plus the shared filtered array, hospitals by recording site, small sites merged::

    python sim/ingest.py ptbxl --root ../shared/data/ptbxl --filtered ../shared/data/ptbxl-filtered \\
        --min-site-records 100 --normalise per_record

A hospital's own export described by a CSV manifest::

    python sim/ingest.py manifest --csv /data/export/manifest.csv
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="kind", required=True)
    ptb = sub.add_parser("ptbxl", help="PTB-XL (ptbxl_database.csv + records100/records500)")
    ptb.add_argument("--root", type=Path, required=True)
    ptb.add_argument(
        "--filtered", type=Path, default=None, help="also the shared filtered array (index.csv + signals.npy)"
    )
    ptb.add_argument("--rate", type=int, choices=(100, 500), default=100)
    ptb.add_argument("--label", choices=("mi", "acute", "normal"), default="mi")
    ptb.add_argument("--likelihood", type=float, default=50.0)
    ptb.add_argument("--hospital", choices=("site", "device"), default="site")
    ch = sub.add_parser("challenge", help="PhysioNet/CinC 2020-2021 challenge folders (.hea + .mat)")
    ch.add_argument("--root", type=Path, required=True)
    ch.add_argument("--label", choices=("mi", "acute"), default="mi")
    man = sub.add_parser("manifest", help="a CSV manifest of WFDB records")
    man.add_argument("--csv", type=Path, required=True)
    for s in (ptb, ch, man):
        s.add_argument("--target-fs", type=int, choices=(100, 250, 500), default=100)
        s.add_argument("--normalise", choices=("none", "per_record", "site_train"), default="none")
        s.add_argument("--notch", type=float, default=None, help="mains notch in Hz (50 or 60)")
        s.add_argument("--min-site-records", type=int, default=0, help="merge smaller sites into 'other'")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--workers", type=int, default=None)
        s.add_argument("--data-dir", type=Path, default=None)
    return p


def make_source(args: argparse.Namespace) -> Any:
    if args.kind == "ptbxl":
        from common.data.readers.ptbxl import ptbxl_source

        filtered = args.filtered.resolve() if args.filtered else None
        return ptbxl_source(
            args.root.resolve(),
            filtered,
            rate=args.rate,
            label=args.label,
            likelihood=args.likelihood,
            hospital_column=args.hospital,
        )
    if args.kind == "challenge":
        from common.data.readers.challenge import ChallengeSource

        return ChallengeSource(root=args.root.resolve(), label=args.label)
    from common.data.readers.manifest import ManifestSource

    return ManifestSource(path=args.csv.resolve())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from common.data.ingest import IngestConfig, ingest, site_table
    from common.data.preprocess import PreprocessConfig
    from common.data.store import StoreError
    from common.synthetic.cohort import default_data_dir

    cfg = IngestConfig(
        preprocess=PreprocessConfig(target_fs=args.target_fs, normalise=args.normalise, notch_hz=args.notch),
        min_site_records=args.min_site_records,
        seed=args.seed,
    )
    try:
        result = ingest(make_source(args), cfg, (args.data_dir or default_data_dir()).resolve(), workers=args.workers)
    except (StoreError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print()
    print("ECGs, patients and AMI positives per hospital and split:")
    print(site_table(result.stores).to_string(index=False))
    print(f"stores and quality report: {result.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
