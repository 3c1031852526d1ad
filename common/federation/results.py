"""The final test round's figures, built only from what a hospital may send (Flower-free).

Each hospital sends, for its test split: the score histogram by label, its patient count, its
confusion counts at the transferred threshold, and its patient-bootstrap replicates as histograms
(drawn from its own patients with a seed of its own: :func:`histograms.hospital_seed`). Added up over hospitals,
replicate r of every hospital is one replicate of a bootstrap stratified by hospital. No per-record
score leaves a hospital.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from common.data.store import write_json
from common.evaluation.calibration import CalibrationSums
from common.evaluation.metrics import jsonable
from common.evaluation.subgroups import SUBGROUPS, subgroup_reason
from common.federation import histograms as H
from common.federation.outputs import ALL_SITES

ALPHA: Final[float] = 0.05
"""The CIs are 95 % percentile intervals, as the central bootstrap's (``bootstrap_ci``)."""


@dataclass(frozen=True)
class SiteTest:
    """One hospital's test reply as plain objects."""

    hospital: str
    histogram: H.ScoreHistogram
    n_patients: int
    counts: H.ThresholdCounts | None
    replicates: H.ReplicateHistograms | None
    subgroups: tuple[H.SubgroupPart, ...] | None = None
    calibration: CalibrationSums | None = None


def point_figures(histogram: H.ScoreHistogram) -> dict[str, Any]:
    """ECGs, AMI, AUROC and AUPRC of a histogram; the rank figures None where a class is missing."""
    ok = histogram.n_pos > 0 and histogram.n_neg > 0
    return {
        "n": histogram.n_pos + histogram.n_neg,
        "positives": histogram.n_pos,
        "auroc": H.auroc(histogram) if ok else None,
        "auprc": H.auprc(histogram) if ok else None,
    }


def figures(
    histogram: H.ScoreHistogram,
    n_patients: int,
    counts: H.ThresholdCounts | None,
    replicates: Sequence[H.ReplicateHistograms] | None,
    seed: int,
    calibration: CalibrationSums | None = None,
) -> dict[str, Any]:
    """AUROC and AUPRC with their CIs, sensitivity and specificity, calibration: one hospital, or several added up.

    ``replicates`` None (a hospital sent none) leaves the CIs out rather than computing them from part
    of the data; a class missing leaves every rank figure out.
    """
    out = {**point_figures(histogram), "n_patients": n_patients, "auroc_ci": None, "auprc_ci": None}
    if out["auroc"] is not None and replicates:
        for metric in ("auroc", "auprc"):
            ci = H.histogram_ci(histogram, list(replicates), metric, alpha=ALPHA, seed=seed, n_patients=n_patients)
            out[f"{metric}_ci"] = [ci.lower, ci.upper]
            out["n_boot"], out["n_boot_valid"] = ci.n_boot, ci.n_valid
    if counts is not None:
        out.update(
            tp=counts.tp, fp=counts.fp, tn=counts.tn, fn=counts.fn,
            sensitivity=counts.sensitivity, specificity=counts.specificity,
        )  # fmt: skip
    out["calibration"] = None if calibration is None or calibration.n == 0 else calibration_figures(calibration)
    return out


def calibration_figures(sums: CalibrationSums) -> dict[str, Any]:
    """Brier score, ECE and the reliability curve (10 equal-width bins) of calibration sums."""
    curve = sums.curve()
    return {
        "brier": sums.brier(), "ece": sums.ece(), "count": curve.count.tolist(),
        "mean_predicted": jsonable(curve.mean_predicted), "observed": jsonable(curve.observed),
    }  # fmt: skip


def sums_of(figures: dict[str, Any]) -> CalibrationSums:
    """The calibration sums behind :func:`calibration_figures` (for the reliability diagram)."""
    import numpy as np

    count = np.asarray(figures["count"], np.int64)
    mean_p, observed = (np.nan_to_num(np.asarray(figures[k], np.float64)) for k in ("mean_predicted", "observed"))
    return CalibrationSums(count, count * mean_p, count * observed, figures["brier"] * int(count.sum()))


def subgroup_figures(tests: Sequence[SiteTest], n_boot: int | None, seed: int) -> list[dict[str, Any]] | None:
    """AUROC [CI] per age band and sex over all tested hospitals, from their subgroup histograms and replicates.

    The CI adds up replicate r of every hospital's subgroup (each drawn from that hospital's patients in the
    subgroup): a bootstrap stratified by hospital. None where a hospital sent no subgroups.
    """
    if not tests or any(t.subgroups is None for t in tests):
        return None
    out = []
    for i, (group, label) in enumerate(SUBGROUPS):
        parts = [t.subgroups[i] for t in tests if t.subgroups is not None and t.subgroups[i].n_patients > 0]
        hist = sum((p.histogram for p in parts), H.empty())
        n, pos, n_patients = hist.n_pos + hist.n_neg, hist.n_pos, sum(p.n_patients for p in parts)
        entry: dict[str, Any] = {"group": group, "subgroup": label, "n": n, "positives": pos,
                                 "n_patients": n_patients, "auroc": None, "auroc_ci": None,
                                 "reason": subgroup_reason(n, pos)}  # fmt: skip
        if entry["reason"] is None:
            entry["auroc"] = H.auroc(hist)
            reps = [p.replicates for p in parts]
            if n_boot is not None and all(r is not None and r.n_boot == n_boot for r in reps):
                usable = [r for r in reps if r is not None]
                ci = H.histogram_ci(hist, usable, "auroc", alpha=ALPHA, seed=seed, n_patients=n_patients)
                entry["auroc_ci"] = [ci.lower, ci.upper]
            elif n_boot is not None:
                entry["reason"] = "no CI: a hospital sent no usable replicates for this subgroup"
        out.append(entry)
    return out


def summarise_test(
    tests: Sequence[SiteTest], hospitals: Sequence[str], threshold: float | None, *, seed: int, n_boot: int | None
) -> dict[str, Any]:
    """``test.json``: every hospital's figures, all of them together, the threshold, who is missing.

    Replicates that do not number ``n_boot`` are not used (that hospital's CI and the pooled CI are
    left out and the reason is recorded in ``problems``).
    """
    problems: list[str] = []

    def usable(t: SiteTest) -> H.ReplicateHistograms | None:
        if n_boot is None:
            return None
        if t.replicates is None:
            problems.append(f"{t.hospital} sent no bootstrap replicates")
            return None
        if t.replicates.n_boot != n_boot:
            problems.append(f"{t.hospital} sent {t.replicates.n_boot} bootstrap replicates, not {n_boot}")
            return None
        return t.replicates

    order = {h: i for i, h in enumerate(hospitals)}
    tests = sorted(tests, key=lambda t: order.get(t.hospital, len(order)))
    reps = {t.hospital: usable(t) for t in tests}
    sites = {
        t.hospital: figures(
            t.histogram, t.n_patients, t.counts, [r] if (r := reps[t.hospital]) else None, seed, t.calibration
        )
        for t in tests
    }
    calibrations = [t.calibration for t in tests if t.calibration is not None]
    every_rep = [r for r in reps.values() if r is not None]
    counted = [t.counts for t in tests if t.counts is not None]
    everything = figures(
        sum((t.histogram for t in tests), H.empty()),
        sum(t.n_patients for t in tests),
        sum(counted[1:], counted[0]) if len(counted) == len(tests) and counted else None,
        every_rep if tests and len(every_rep) == len(tests) else None,
        seed,
        sum(calibrations[1:], calibrations[0]) if calibrations and len(calibrations) == len(tests) else None,
    )
    return {
        ALL_SITES: everything,
        "sites": sites,
        "threshold": threshold,
        "subgroups": subgroup_figures(tests, n_boot, seed),
        "missing": [h for h in hospitals if h not in sites],
        "n_boot": n_boot,
        "problems": problems,
    }


def score_rows(test: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per tested hospital, then ``all`` where there are several: the figures the comparison reports."""

    def row(site: str, f: dict[str, Any]) -> dict[str, Any]:
        lo, hi = f["auroc_ci"] or (None, None)
        return {
            "test_site": site, "n": f["n"], "positives": f["positives"], "auroc": f["auroc"], "auroc_lo": lo,
            "auroc_hi": hi, "auprc": f["auprc"], "threshold": test["threshold"],
            "sensitivity": f.get("sensitivity"), "specificity": f.get("specificity"),
        }  # fmt: skip

    rows = [row(site, f) for site, f in test["sites"].items()]
    if len(rows) > 1:
        rows.append(row(ALL_SITES, test[ALL_SITES]))
    return rows


RESULTS: Final[str] = "results.json"
REPORT: Final[str] = "results.md"
CURVE: Final[str] = "learning_curve.png"
CALIBRATION: Final[str] = "calibration.png"


def subgroup_table(subgroups: Sequence[dict[str, Any]]) -> str:
    """AUROC [CI] per age band and sex as a Markdown table (the reason where there is none)."""
    import pandas as pd

    from common.evaluation.tables import format_ci_pair, markdown_table

    rows = [{"group": g["group"], "subgroup": g["subgroup"], "ECGs": g["n"], "AMI": g["positives"],
             "patients": g["n_patients"], "AUROC [95% CI]": format_ci_pair(g["auroc"], g["auroc_ci"]),
             "note": g["reason"] or ""} for g in subgroups]  # fmt: skip
    return markdown_table(pd.DataFrame(rows))


def test_table(test: dict[str, Any]) -> str:
    """The final test round as a Markdown table: each hospital, then all of them."""
    import pandas as pd

    from common.evaluation.tables import format_ci_pair, format_value, markdown_table

    rows = []
    for name, f in [*test["sites"].items(), (ALL_SITES, test[ALL_SITES])]:
        rows.append(
            {
                "hospital": name,
                "ECGs": f["n"],
                "AMI": f["positives"],
                "patients": f["n_patients"],
                "AUROC [95% CI]": format_ci_pair(f["auroc"], f["auroc_ci"]),
                "AUPRC [95% CI]": format_ci_pair(f["auprc"], f["auprc_ci"]),
                "sensitivity": format_value(f.get("sensitivity")),
                "specificity": format_value(f.get("specificity")),
            }
        )
    return markdown_table(pd.DataFrame(rows))


def write_report(out: Path, test: dict[str, Any], history: Sequence[dict[str, Any]]) -> None:
    """``results.json`` (the comparison's score rows, the curve), ``results.md`` (the test table, the rounds) and
    the validation learning curve, beside ``test.json``."""
    from common.evaluation.plots import plot_calibration, plot_learning_curves
    from common.evaluation.tables import format_value

    threshold = test["threshold"]
    lines = [
        "# Federated run: final test round",
        "",
        f"Model of the best validation round, tested at every hospital on its own test split; the Youden threshold "
        f"{format_value(threshold)} was chosen on the training hospitals' pooled validation histograms. CIs: "
        f"patient bootstrap within each hospital ({test['n_boot']} replicates, stratified by hospital for 'all'), "
        "from score histograms only.",
        "",
        test_table(test),
        "",
    ]
    if test.get("subgroups"):
        lines += ["## Subgroups (all hospitals)", "", subgroup_table(test["subgroups"]), ""]
    calibrated = [(n, f["calibration"]) for n, f in [*test["sites"].items(), (ALL_SITES, test[ALL_SITES])]
                  if f.get("calibration")]  # fmt: skip
    if calibrated:
        lines += ["## Calibration", "", "| hospital | Brier score | ECE (10 bins) |", "|---|---|---|"]
        lines += [f"| {n} | {format_value(c['brier'])} | {format_value(c['ece'])} |" for n, c in calibrated]
        lines += ["", f"Reliability diagram (all hospitals): `{CALIBRATION}`.", ""]
    if test["missing"]:
        lines += [f"Not tested (no usable reply): {', '.join(test['missing'])}.", ""]
    if test["problems"]:
        lines += ["Problems: " + "; ".join(test["problems"]) + ".", ""]
    lines += ["## Rounds", "", "| round | training loss | validation AUROC (all) | trained |", "|---|---|---|---|"]
    for h in history:
        auc = h.get("val", {}).get(ALL_SITES, {}).get("auroc")
        lines.append(f"| {h['round']} | {format_value(h.get('train_loss'))} | {format_value(auc)} | "
                     f"{', '.join(h.get('trained', []))} |")  # fmt: skip
    (out / REPORT).write_text("\n".join(lines) + "\n")
    everything = test[ALL_SITES].get("calibration")
    if everything:
        plot_calibration(sums_of(everything), out / CALIBRATION, "Federated model, test at all hospitals")
    rounds = [int(h["round"]) for h in history]
    aurocs = [h.get("val", {}).get(ALL_SITES, {}).get("auroc") for h in history]
    curve = [
        {"round": r, "train_loss": h.get("train_loss"), "val_auroc": a}
        for r, h, a in zip(rounds, history, aurocs, strict=True)
    ]
    results = {
        "scores": [{"arm": "federated", **row} for row in score_rows(test)],
        "n_boot": test["n_boot"],
        "missing": test["missing"],
        "problems": test["problems"],
        "subgroups": test.get("subgroups"),
        "calibration": {
            name: f.get("calibration") for name, f in [*test["sites"].items(), (ALL_SITES, test[ALL_SITES])]
        },
        "curve": curve,
        "settings": "app_config.json",
    }
    write_json(out / RESULTS, results)
    plot_learning_curves({"federated": (rounds, aurocs)}, out / CURVE)
