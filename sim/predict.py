"""``fedami predict``: score new ECGs with a trained checkpoint, prepared exactly as its model card says.

Examples
--------
A folder of WFDB records (searched recursively; age and sex from the ``#Age``/``#Sex`` header comments)::

    fedami predict --model runs/run-.../gah/federated/best.pt --wfdb /data/new_ecgs --out scored/

Single records, a hospital's CSV manifest (labels from its ``label`` column), a PhysioNet challenge
folder (labels from ``#Dx``), or a prepared store (one split)::

    fedami predict --model best.pt --record /data/a/ecg_0001 --record /data/a/ecg_0002
    fedami predict --model best.pt --manifest export/manifest.csv
    fedami predict --model best.pt --challenge /data/challenge/georgia --label mi
    fedami predict --model best.pt --store ~/.cache/fedami/synthetic-.../hospital_a --split test

Writes ``predictions.csv`` (record id, patient id, score, flag at the card's threshold, status: ``scored`` or
why not, detail) and ``summary.json`` into ``--out``, and prints the summary: with labels, AUROC with a
patient-bootstrap CI and sensitivity / specificity at the threshold. A record that cannot be read or fails
quality control is listed with its reason and never stops the batch. A store prepared differently from
the model's training data is refused. Exit status: 0 when at least one record was scored, 1 when none
could be, 2 for a wrong command line, checkpoint or card.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if __package__ in (None, ""):  # `python sim/predict.py` from a checkout puts sim/ first on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.config import ChallengeData, EvaluationConfig, ExplainConfig, InferenceConfig, ManifestData
from common.data.readers.base import Source
from sim.cli import check_writable
from sim.explain import add_explain_options, explain_config

if TYPE_CHECKING:
    from torch import nn

    from common.inference.predict import Predictions
    from common.models.card import ModelCard


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fedami predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model", type=Path, required=True, help="a checkpoint (.pt) with its model card beside it, or the card"
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--wfdb", type=Path, help="a folder of WFDB records (recursive), no labels")
    what.add_argument(
        "--record", type=Path, action="append", help="one WFDB record (with or without extension); repeatable"
    )
    what.add_argument("--manifest", type=Path, help="a CSV manifest (as fedami ingest --data manifest reads)")
    what.add_argument("--challenge", type=Path, help="a PhysioNet/CinC challenge folder (labels from #Dx)")
    what.add_argument("--store", type=Path, help="a prepared site store (must be prepared as the model's data)")
    p.add_argument("--split", choices=("train", "val", "test"), default=None, help="--store: score one split only")
    p.add_argument(
        "--label",
        choices=("mi", "acute"),
        default=ChallengeData.model_fields["label"].default,
        help="--challenge: the label",
    )
    p.add_argument(
        "--sex-codes",
        choices=("letters", "ptbxl", "iso5218"),
        default=ManifestData.model_fields["sex_codes"].default,
        help="--manifest: how its sex column is written",
    )
    p.add_argument(
        "--stats-site", default=None, help="a site_train-standardised model: whose training statistics to use"
    )
    p.add_argument(
        "--boot",
        type=int,
        default=EvaluationConfig.model_fields["n_boot"].default,
        help="bootstrap replicates for the CI",
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/predict-<time>)")
    engine, threads = InferenceConfig.model_fields["engine"], InferenceConfig.model_fields["threads"]
    p.add_argument("--engine", choices=("onnx", "torch"), default=engine.default, help=engine.description)
    p.add_argument("--threads", type=int, default=threads.default, help=threads.description)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    f = ExplainConfig.model_fields
    p.add_argument(
        "--explain", action="store_true", help="also draw the relevance maps of the scored records (<out>/explanations)"
    )
    p.add_argument("--explain-max", type=int, default=f["predict_max"].default, help=f["predict_max"].description)
    add_explain_options(p)
    return p


def _source(args: argparse.Namespace) -> Source:
    from common.data.readers.challenge import ChallengeSource
    from common.data.readers.manifest import ManifestSource
    from common.data.readers.records import RecordsSource

    if args.wfdb is not None:
        return RecordsSource(paths=(args.wfdb.expanduser().resolve(),))
    if args.record:
        return RecordsSource(paths=tuple(p.expanduser().resolve() for p in args.record))
    if args.manifest is not None:
        return ManifestSource(path=args.manifest.expanduser().resolve(), sex_codes=args.sex_codes)
    return ChallengeSource(root=args.challenge.expanduser().resolve(), label=args.label)


def _engine(model: nn.Module, n_samples: int, cfg: InferenceConfig) -> tuple[nn.Module, str]:
    """The network as ``cfg.engine`` runs it; ONNX Runtime unable to run it falls back to torch, said on stderr."""
    import torch

    from common.inference.runtime import RuntimeUnavailable, scoring_model

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return scoring_model(model, n_samples, cfg.engine, cfg.threads), cfg.engine
    except RuntimeUnavailable as err:
        print(f"note: {err}; scoring with torch (the same scores, slower)", file=sys.stderr)
        return model, "torch"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from common.config.options import SettingsError
    from common.config.paths import default_out_dir
    from common.data.store import SiteStore, StoreError
    from common.inference.predict import predict_source, predict_store, summarise, summary_lines, write_predictions
    from common.models.card import CardError, load_model

    out = args.out.expanduser().resolve() if args.out else default_out_dir("predict")
    kept: dict[int, np.ndarray] = {}
    try:
        explain = explain_config(args, predict_max=args.explain_max) if args.explain else None
        if args.split is not None and args.store is None:
            raise SettingsError("--split applies to --store only")
        if args.boot < 10:
            raise SettingsError("--boot must be at least 10")
        check_writable(out)
        inference = InferenceConfig(engine=args.engine, threads=args.threads)
        model, card = load_model(args.model.expanduser())
        torch_model = model
        spec = card.input
        print(f"model {card.model} ({card.arm}, {card.kept}); input {spec.model_fs} Hz, {spec.n_samples} samples")
        model, engine = _engine(model, spec.n_samples, inference)
        print(f"scoring with {engine}")
        if args.store is not None:
            if explain is not None:
                raise SettingsError("--explain draws raw records as they are prepared; score the records, not a store")
            pred = predict_store(model, card, SiteStore.open(args.store.expanduser()), args.split)
        else:

            def keep(rows: list[int], inputs: np.ndarray) -> None:
                for r, x in zip(rows, inputs, strict=True):
                    if explain is not None and len(kept) < explain.predict_max:
                        kept[r] = x

            pred = predict_source(
                model,
                card,
                _source(args),
                stats_site=args.stats_site,
                progress=not args.no_progress,
                on_scored=keep if explain is not None else None,
            )
    except (SettingsError, CardError, StoreError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = {**summarise(pred, n_boot=args.boot, seed=card.train.seed), "engine": engine}
    write_predictions(out, pred, summary)
    for line in summary_lines(summary):
        print(line)
    print(f"predictions: {out / 'predictions.csv'}")
    if explain is not None and kept:
        _explain(torch_model, card, pred, kept, explain, out / "explanations")
    return 0 if summary["scored"] else 1


def _explain(model: nn.Module, card: ModelCard, pred: Predictions, kept: dict[int, np.ndarray], cfg: ExplainConfig,
             out: Path) -> None:  # fmt: skip
    """Figures of the first scored records (at most ``cfg.predict_max``), said when more were scored."""
    from common.data.arrays import EcgArrays
    from common.data.preprocess import demographics
    from common.explain.report import available_methods, draw_records

    rows = sorted(kept)
    meta = pred.rows.iloc[rows].reset_index(drop=True)
    data = EcgArrays(np.stack([kept[r] for r in rows]), demographics(meta), np.zeros(len(rows), np.float32), meta)
    methods, notes = available_methods(model, cfg.methods)
    for note in notes:
        print(f"note: {note}")
    names = [f"{i + 1:04d}" for i in range(len(rows))]
    scores = meta["score"].to_numpy(np.float64)
    figures = draw_records(
        model, data, scores, card.threshold, card.train, card.input.model_fs, cfg, methods, out, names
    )
    more = len(pred.scored) - len(rows)
    note = f"; {more} more scored records not drawn (--explain-max {cfg.predict_max})" if more > 0 else ""
    print(f"explanations: {len(figures)} figures of {len(rows)} records in {out}{note}")


if __name__ == "__main__":
    sys.exit(main())
