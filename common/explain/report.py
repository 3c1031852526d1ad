"""Explaining a run's test scores: the figures of its top cases, the checks of its maps, and their report.

``fedami explain`` (``sim/explain.py``) and ``fedami predict --explain`` call these. Files written into the
output folder: ``figures/<case>-<rank>-<record>-<method>.png`` and ``.pdf``, ``explain.json`` (the figures,
the checks' summary, records skipped and why, the settings), ``checks.csv`` (one row per method and record)
and ``explain.md``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from torch import nn

from common.config import ExplainConfig, TrainConfig
from common.data.arrays import EcgArrays
from common.data.leads import LEADS
from common.data.store import write_json
from common.evaluation.tables import format_value, markdown_table
from common.explain.checks import STT, check_records, summarise_checks, summarise_occlusion
from common.explain.figure import FigureInfo, draw_ecg, draw_profiles, save_ecg
from common.explain.maps import METHOD_TITLES, ExplainError, relevance

log = logging.getLogger(__name__)

CASES: Final[tuple[str, ...]] = ("TP", "FP", "FN")
"""True positives (highest scores), false positives (highest scores), false negatives (lowest scores)."""
REPORT_FILE: Final[str] = "explain.md"
SUMMARY_FILE: Final[str] = "explain.json"
CHECKS_FILE: Final[str] = "checks.csv"
PROFILES_FILE: Final[str] = "j_profile.csv"
PROFILES_FIGURE: Final[str] = "j_profile.png"
OCCLUSION_FILE: Final[str] = "occlusion.csv"
RESULTS_SECTION: Final[str] = "## Explanations"


def available_methods(model: nn.Module, methods: Sequence[str]) -> tuple[list[str], list[str]]:
    """The methods that apply to ``model`` and notes on those left out (attention needs attention pooling)."""
    kept, notes = [], []
    for m in methods:
        if m == "attention" and not hasattr(model, "encode_sequence"):
            notes.append(f"attention left out: {type(model).__name__} has no attention pooling")
        else:
            kept.append(m)
    if not kept:
        raise ExplainError(f"none of the methods {list(methods)} applies to {type(model).__name__}")
    return kept, notes


def select_cases(scores: np.ndarray, labels: np.ndarray, threshold: float, k: int) -> dict[str, np.ndarray]:
    """Indices of the top-``k`` true positives and false positives (highest scores) and false negatives (lowest);
    ties keep record order."""
    pos, above = labels == 1, scores >= threshold
    by_high, by_low = np.argsort(-scores, kind="stable"), np.argsort(scores, kind="stable")
    return {
        "TP": by_high[(pos & above)[by_high]][:k],
        "FP": by_high[(~pos & above)[by_high]][:k],
        "FN": by_low[(pos & ~above)[by_low]][:k],
    }


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def _opt(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else v


def draw_records(
    model: nn.Module,
    data: EcgArrays,
    scores: np.ndarray,
    threshold: float | None,
    train: TrainConfig,
    fs: float,
    cfg: ExplainConfig,
    methods: Sequence[str],
    out: Path,
    names: Sequence[str],
) -> list[dict[str, Any]]:
    """One figure per record of ``data`` and method, ``out/<name>-<record>-<method>.png|pdf``."""
    entries: list[dict[str, Any]] = []
    if len(data) == 0:
        return entries
    maps = {
        m: relevance(m, model, np.asarray(data.x), data.demo, train, layer=cfg.layer, batch_size=cfg.batch_size)
        for m in methods
    }
    meta = data.meta
    for i in range(len(data)):
        rid = str(meta["record_id"].iloc[i])
        label = meta["label"].iloc[i] if "label" in meta else None
        for m in methods:
            info = FigureInfo(
                record_id=rid,
                age=_opt(meta["age"].iloc[i]) if "age" in meta else None,
                sex=_opt(meta["sex"].iloc[i]) if "sex" in meta else None,
                score=float(scores[i]),
                threshold=threshold,
                label=None if label is None or _opt(label) is None else int(label),
                method=METHOD_TITLES[m],
            )
            fig = draw_ecg(data.x[i], fs, info, maps[m][i], dpi=cfg.dpi)
            png, pdf = save_ecg(fig, out / f"{names[i]}-{_slug(rid)}-{m}")
            entries.append({"name": names[i], "record_id": rid, "method": m, "score": float(scores[i]),
                            "label": info.label, "png": png.name, "pdf": pdf.name})  # fmt: skip
    return entries


def _subset(data: EcgArrays, idx: np.ndarray) -> EcgArrays:
    return EcgArrays(data.x[idx], data.demo[idx], data.y[idx], data.meta.iloc[idx].reset_index(drop=True))


def check_sample(labels: np.ndarray, scores: np.ndarray, threshold: float, n: int, seed: int) -> np.ndarray:
    """At most ``n`` true positives and ``n`` true negatives, drawn with ``seed``, in record order."""
    rng = np.random.default_rng([seed, 14])
    above = scores >= threshold
    picked = []
    for group in ((labels == 1) & above, (labels != 1) & ~above):
        idx = np.flatnonzero(group)
        picked.append(rng.choice(idx, size=min(n, len(idx)), replace=False) if len(idx) else idx)
    return np.sort(np.concatenate(picked))


def explain_scores(
    model: nn.Module,
    data: EcgArrays,
    scores: np.ndarray,
    threshold: float,
    train: TrainConfig,
    fs: float,
    cfg: ExplainConfig,
    out: Path,
    *,
    checks: bool = True,
    seed: int = 0,
    header: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Figures of the top-k cases and the checks of every method's maps on a sample of TPs and TNs; written to
    ``out`` (module docstring). Returns what ``explain.json`` holds."""
    methods, notes = available_methods(model, cfg.methods)
    for note in notes:
        log.info(note)
    labels = data.y
    cases = select_cases(scores, labels, threshold, cfg.top_k)
    figures: list[dict[str, Any]] = []
    for case, idx in cases.items():
        names = [f"{case}-{r + 1}" for r in range(len(idx))]
        drawn = draw_records(
            model, _subset(data, idx), scores[idx], threshold, train, fs, cfg, methods, out / "figures", names
        )
        figures += [{**e, "case": case} for e in drawn]
    summary: dict[str, Any] = {
        **dict(header or {}),
        "settings": cfg.model_dump(mode="json"),
        "methods": methods,
        "notes": notes,
        "threshold": threshold,
        "records": len(data),
        "cases": {c: len(i) for c, i in cases.items()},
        "figures": figures,
    }
    if checks:
        idx = check_sample(labels, scores, threshold, cfg.check_records, seed)
        sub = _subset(data, idx)
        maps = {
            m: relevance(m, model, np.asarray(sub.x), sub.demo, train, layer=cfg.layer, batch_size=cfg.batch_size)
            for m in methods
        }
        result = check_records(
            model, np.asarray(sub.x), sub.demo, sub.meta, scores[idx], threshold, maps, train, fs, seed=seed
        )
        out.mkdir(parents=True, exist_ok=True)
        result.rows.to_csv(out / CHECKS_FILE, index=False)
        result.profiles.to_csv(out / PROFILES_FILE, index=False)
        result.occlusion.to_csv(out / OCCLUSION_FILE, index=False)
        summary["occlusion"] = summarise_occlusion(result.occlusion)
        summary["checks"] = summarise_checks(result.rows, result.profiles) if len(result.rows) else {}
        curves = {m: s["j_profile"] for m, s in summary["checks"].items() if s.get("j_profile")}
        if curves:
            draw_profiles(curves, dpi=cfg.dpi).savefig(out / PROFILES_FIGURE, facecolor="white")
        summary["checks_skipped"] = result.skipped.to_dict(orient="records")
    write_json(out / SUMMARY_FILE, summary)
    (out / REPORT_FILE).write_text(report_markdown(summary))
    return summary


def _p(v: Any) -> str:
    return "n/a" if v is None else (f"{v:.1e}" if v < 1e-3 else f"{v:.3f}")


def checks_table(checks: Mapping[str, Any]) -> pd.DataFrame:
    """One row per method: the checks' medians and one-sided p values."""
    rows = []
    for method, s in checks.items():
        t, d = s.get("territory", {}), s["deletion"]
        rows.append(
            {
                "method": METHOD_TITLES.get(method, method),
                "TP / TN": f"{s['n']['TP']} / {s['n']['TN']}",
                "ST-T share TP": format_value(s[f"{STT}_share"]["TP"]),
                "ST-T share TN": format_value(s[f"{STT}_share"]["TN"]),
                "ST-T time": format_value(s[f"{STT}_time"]),
                "p TP>TN": _p(s["STT_share_TP_vs_TN_p"]),
                "territory ST-T enrichment": format_value(t.get("STT_enrichment")),
                "p >chance": _p(t.get("p_STT_vs_chance")),
                "territory QRS enrichment": format_value(t.get("QRS_enrichment")),
                "p ST-T>QRS": _p(t.get("p_STT_vs_QRS")),
                "territory ST-T / QRS mass": f"{format_value(t.get('STT_share'))} / {format_value(t.get('QRS_share'))}",
                "p mass ST-T>QRS": _p(t.get("p_STT_vs_QRS_mass")),
                "territory leads share (chance)": f"{format_value(t.get('leads_share'))} "
                f"({format_value(t.get('leads_chance'))})",
                "p leads": _p(t.get("p_leads_vs_chance")),
                "deletion area (random)": f"{format_value(d['area_relevance'])} ({format_value(d['area_random'])})",
                "p faster": _p(d["p_faster_than_random"]),
            }
        )
    return pd.DataFrame(rows)


def report_markdown(summary: Mapping[str, Any]) -> str:
    """``explain.md``: the checks' table, per-lead ST-T shares and links to every figure."""
    md = ["# fedami explanations", ""]
    for key in ("run", "fold", "arm", "checkpoint", "model"):
        if key in summary:
            md.append(f"- {key}: `{summary[key]}`")
    md += [f"- threshold: {format_value(summary['threshold'])}; records: {summary['records']}", ""]
    md += [f"Note: {n}." for n in summary["notes"]]
    checks = summary.get("checks")
    if checks:
        md += [
            "## Do the maps point where they should?",
            "",
            "Medians over the checked records. ST-T share: the share of a record's relevance mass in its ST-T windows "
            "(J point to T end), beside the share of time they take (chance). Territory: true positives with a known "
            "injured territory; enrichment = share of mass on the territory leads' windows / their share of "
            "leads x time (p ST-T>QRS compares the enrichments, so the short QRS is not favoured by its length); "
            "mass: the shares of the record's mass on the territory leads' ST-T and QRS windows as they are (an "
            "evenly spread map passes this one too, the ST-T windows being longer). "
            "Deletion: mean score while the (lead, 100 ms) cells are zeroed, 0-50 %, most relevant "
            "first (random order in brackets). p: one-sided (Mann-Whitney U for TP > TN, Wilcoxon signed-rank "
            "otherwise).",
            "",
            markdown_table(checks_table(checks)),
            "",
            "### ST-T share per lead (TP / TN)",
            "",
        ]
        per_lead = pd.DataFrame(
            [
                {"method": METHOD_TITLES.get(m, m), **{
                    lead: f"{format_value(s['STT_share_per_lead']['TP'][lead])} / "
                    f"{format_value(s['STT_share_per_lead']['TN'][lead])}" for lead in LEADS}}
                for m, s in checks.items()
            ]
        )  # fmt: skip
        md += [markdown_table(per_lead), ""]
        profiles = [
            {"method": METHOD_TITLES.get(m, m), "curve": name, "records": c["n"],
             "peak (ms from J)": f"{c['peak_ms']:+.0f}", "peak / mean": format_value(c["peak"]),
             "-100 to 0 ms": format_value(c["before_J"]), "0 to +200 ms": format_value(c["J_to_200ms"]),
             "+200 to +400 ms": format_value(c["200_to_400ms"])}
            for m, s in checks.items() for name, c in s.get("j_profile", {}).items()
        ]  # fmt: skip
        if profiles:
            md += [
                "### Where in the beat: relevance around the J point",
                "",
                "Mean relevance of each beat from 200 ms before to 400 ms after its J point, relative to the record's "
                "mean (1 = chance), on the injured territory's leads and the others (all leads for true negatives "
                f"and for positives without a territory). Plot: [{PROFILES_FIGURE}]({PROFILES_FIGURE}); every "
                f"record's profile: `{PROFILES_FILE}`.",
                "",
                markdown_table(pd.DataFrame(profiles)),
                "",
            ]
    occ = summary.get("occlusion")
    if occ and occ["n"]:
        md += [
            "### Where the model's evidence lies: occluding the injured territory's windows",
            "",
            "True positives with a known territory. *Zeroed*: the drop of the score's logit when the territory "
            "leads' ST-T windows, or their QRS windows, are zeroed. *Kept alone*: the logit gain over the all-zero "
            "record when only those windows are kept, the kind of masked input Score-CAM's keep-masks weigh its "
            "maps by (its deletion masks zero a part, as *zeroed* does). "
            "Medians; per second: over the signal zeroed or kept, summed over the leads. Zeroing measures the "
            "model, not a map: where it says ST-T and a map's enrichment says QRS, the map misplaces the model's "
            "evidence; where a window counts when zeroed but not when kept alone, the model reads it only beside "
            f"the rest of the record, which masked inputs take away. Every record: `{OCCLUSION_FILE}`.",
            "",
            markdown_table(
                pd.DataFrame(
                    [
                        {
                            "test": title,
                            "records": occ["n"],
                            "ST-T": format_value(occ[f"STT_{key}"]),
                            "QRS": format_value(occ[f"QRS_{key}"]),
                            "p ST-T>QRS": _p(occ[f"p_STT_vs_QRS_{key}"]),
                            "ST-T per s": format_value(occ[f"STT_{key}_per_s"]),
                            "QRS per s": format_value(occ[f"QRS_{key}_per_s"]),
                            "p per s ST-T>QRS": _p(occ[f"p_STT_vs_QRS_{key}_per_s"]),
                        }
                        for title, key in (("zeroed: logit drop", "drop"), ("kept alone: logit gain", "kept_gain"))
                    ]
                )
            ),
            "",
        ]
    if summary.get("checks_skipped"):
        md += [f"{len(summary['checks_skipped'])} records skipped by the checks (no beats found; `explain.json`).", ""]
    md += ["## Figures", ""]
    for e in summary["figures"]:
        md.append(
            f"- {e['name']} `{e['record_id']}` score {format_value(e['score'])}, "
            f"{METHOD_TITLES.get(e['method'], e['method'])}: [PNG](figures/{e['png']}) [PDF](figures/{e['pdf']})"
        )
    return "\n".join(md) + "\n"


def link_from_results(results_md: Path, report: Path) -> None:
    """Link ``report`` from the ``## Explanations`` section of a run's ``results.md`` (added once per report)."""
    if not results_md.is_file():
        return
    head, _, section = results_md.read_text().partition(f"\n{RESULTS_SECTION}\n")
    rel = report.relative_to(results_md.parent) if report.is_relative_to(results_md.parent) else report
    links = [line for line in section.splitlines() if line.startswith("- [")]
    line = f"- [{rel}]({rel}): figures of the top cases and the checks of their maps"
    if line not in links:
        links.append(line)
    results_md.write_text(f"{head.rstrip()}\n\n{RESULTS_SECTION}\n\n" + "\n".join(links) + "\n")
