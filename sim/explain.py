"""``fedami explain``: why a run's model scored its test ECGs as it did, drawn as clinicians read ECGs, and checked.

For one fold and arm of a ``fedami run`` folder it scores the fold's test records with the arm's checkpoint
(prepared as its model card says; a store prepared otherwise is refused), then

* draws the top-k true positives, false positives and false negatives at the card's threshold in the
  standard 12-lead layout (3 x 4 and a lead II rhythm strip, 25 mm/s, 10 mm/mV) with each method's
  relevance as a colour band under every trace (PNG and PDF);
* checks the maps with numbers on a sample of true positives and true negatives: the share of relevance
  in the ST-T windows of each beat (J point to T end), on the injured territory's leads (where the
  metadata names the territory: the synthetic cohort, PTB-XL's infarct statements), and a deletion test.

Example::

    fedami explain --run runs/run-20261202-101500 --arm federated --top-k 3

Writes ``<run>/explanations/<fold>-<arm>/`` (``explain.md``, ``explain.json``, ``checks.csv``, ``figures/``) and
links it from the run's ``results.md``. Exit status 0 on success, 2 for a wrong command line, run or checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python sim/explain.py` from a checkout puts sim/ first on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.config import ExplainConfig
from sim.cli import check_writable


class RunError(ValueError):
    """A run folder that cannot be explained: said with what is missing."""


def add_explain_options(p: argparse.ArgumentParser) -> None:
    """The explanation settings, defaults from :class:`ExplainConfig` (shared with ``fedami predict --explain``)."""
    f = ExplainConfig.model_fields
    methods = ",".join(f["methods"].default)
    p.add_argument("--methods", default=methods, help=f"comma-separated, of {methods}")
    p.add_argument("--layer", default=f["layer"].default, help=f["layer"].description)
    p.add_argument("--dpi", type=int, default=f["dpi"].default, help=f["dpi"].description)


def explain_config(args: argparse.Namespace, **more: Any) -> ExplainConfig:
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    return ExplainConfig(methods=methods, layer=args.layer, dpi=args.dpi, **more)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fedami explain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    f = ExplainConfig.model_fields
    p.add_argument("--run", type=Path, required=True, help="a fedami run's output folder")
    p.add_argument("--fold", default=None, help="the fold (default: the run's first, e.g. gah)")
    p.add_argument("--arm", default=None, help="federated, pooled or local:<hospital> (default: federated if run)")
    p.add_argument("--top-k", type=int, default=f["top_k"].default, help=f["top_k"].description)
    p.add_argument("--check-records", type=int, default=f["check_records"].default, help=f["check_records"].description)
    p.add_argument("--no-checks", action="store_true", help="figures only")
    add_explain_options(p)
    p.add_argument("--out", type=Path, default=None, help="output folder (default <run>/explanations/<fold>-<arm>)")
    return p


def _fold(results: dict[str, Any], name: str | None) -> dict[str, Any]:
    folds = results.get("folds") or []
    names = [f["fold"] for f in folds]
    if not folds:
        raise RunError("the run's results.json holds no fold")
    if name is None:
        return dict(folds[0])
    if name not in names:
        raise RunError(f"the run has no fold {name!r}; its folds: {', '.join(names)}")
    return dict(folds[names.index(name)])


def checkpoint_of(run: Path, fold: dict[str, Any], arm: str | None) -> tuple[str, Path]:
    """The arm (default: federated if it ran, else pooled, else the first) and its kept checkpoint."""
    from common.experiments.comparison import arm_folder

    arms = [a["arm"] for a in fold["arms"]]
    if arm is None:
        arm = next((a for a in ("federated", "pooled") if a in arms), arms[0] if arms else None)
    if arm is None or arm not in arms:
        raise RunError(f"fold {fold['fold']} has no arm {arm!r}; its arms: {', '.join(arms)}")
    folder = run / fold["fold"] / arm_folder(arm)
    candidates = ("best.pt", "last.pt") if arm == "federated" else ("model.pt",)
    for name in candidates:
        if (folder / name).is_file():
            return arm, folder / name
    raise RunError(f"no checkpoint for {arm} in {folder} (looked for {', '.join(candidates)})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from pydantic import ValidationError

    from common.data.arrays import concat, load_split
    from common.data.store import SiteStore, StoreError
    from common.experiments.comparison import arm_folder
    from common.explain.maps import ExplainError
    from common.explain.report import REPORT_FILE, explain_scores, link_from_results
    from common.inference.predict import check_store
    from common.models.card import CardError, load_model
    from common.training.engine import predict

    run = args.run.expanduser().resolve()
    try:
        cfg = explain_config(args, top_k=args.top_k, check_records=args.check_records)
        results_file = run / "results.json"
        if not results_file.is_file():
            raise RunError(f"{run} is no fedami run folder (no results.json)")
        results = json.loads(results_file.read_text())
        fold = _fold(results, args.fold)
        arm, checkpoint = checkpoint_of(run, fold, args.arm)
        out = (
            args.out.expanduser().resolve() if args.out else run / "explanations" / f"{fold['fold']}-{arm_folder(arm)}"
        )
        check_writable(out)
        model, card = load_model(checkpoint)
        if card.threshold is None:
            raise RunError(f"{checkpoint.name}'s card has no decision threshold: no true or false positives to draw")
        fs = card.input.model_fs
        parts = []
        for site, splits in fold["test_sites"].items():
            store = SiteStore.open(Path(results["prepared"]) / site)
            check_store(store, card)
            parts += [load_split(store, split, fs) for split in splits]
        data = concat(parts)
    except (RunError, CardError, StoreError, ExplainError, ValidationError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{card.model} ({arm}, {fold['fold']}): {len(data)} test ECGs, threshold {card.threshold:.3f}")
    scores = predict(model, data, card.train)
    header = {"run": str(run), "fold": fold["fold"], "arm": arm, "checkpoint": str(checkpoint), "model": card.model}
    try:
        summary = explain_scores(
            model, data, scores, card.threshold, card.train, fs, cfg, out, checks=not args.no_checks,
            seed=card.train.seed, header=header,
        )  # fmt: skip
    except ExplainError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    link_from_results(run / "results.md", out / REPORT_FILE)
    print(f"{len(summary['figures'])} figures; report: {out / REPORT_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
