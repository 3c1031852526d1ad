"""Do the relevance maps point where they should? Mass in beat windows, on the injured territory, and deletion.

For each record and method (:mod:`common.explain.maps`), with the record's own beat windows
(:func:`common.explain.beats.detect_beats`: P, QRS, ST-T from the J point to the T end):

* **window shares**: the share of the relevance mass that falls in each window, over all leads and per
  lead, beside the share of time the window takes (what a map spread evenly would get: chance);
* **territory**: for a positive with a known injured territory (``territory`` metadata; the leads of
  :data:`common.data.leads.TERRITORY_LEADS`), the share of the mass on the ST-T windows of the territory's
  leads against chance (their share of leads x time) and against the same leads' QRS windows, both as
  enrichment (share / chance, so windows of unequal length compare fairly), and the share on the
  territory's leads at all against the others;
* **profile around the J point**: the relevance of each beat from 200 ms before to 400 ms after its J point,
  relative to the record's mean (1 = chance), averaged over beats, on the territory's leads and on the others
  (all leads for a record without a territory): where in the beat a method looks, whatever the windows;
* **window occlusion** (the model, not a map): for a true positive with a known territory, how far the score's
  logit falls when the territory leads' ST-T windows, or their QRS windows, are zeroed, in total and per second
  of signal removed; it says where the model's evidence lies, so a map that favours QRS while the model's
  score falls more per second without ST-T misplaces that evidence; beside it, the logit gain when only those
  windows are kept (the rest of the record zeroed), the kind of masked input Score-CAM's keep-masks weigh
  its maps by (its deletion masks zero a part of the record, as the occlusion does);
* **deletion**: the record's (lead, segment) cells are zeroed (the isoelectric line of a filtered record)
  in order of relevance, or in a random order, 0-50 % of the cells; the score must fall faster for the
  relevance order (a smaller area under the deletion curve).

:func:`summarise_checks` turns the per-record table into the figures with one-sided tests: Wilcoxon
signed-rank for paired comparisons within records, Mann-Whitney U for true positives against true
negatives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from common.config import TrainConfig
from common.data.leads import LEAD_INDEX, LEADS, N_LEADS, TERRITORY_LEADS
from common.explain.beats import WINDOWS, BeatError, Beats, detect_beats
from common.training.engine import score_records

STT: Final[str] = "ST-T"
QRS: Final[str] = "QRS"
DELETION_FRACTIONS: Final[tuple[float, ...]] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
PROFILE_S: Final[tuple[float, float]] = (-0.2, 0.4)
"""The profile's span around each J point, in seconds: the QRS before it, ST and T after it."""
PROFILE_SPANS: Final[dict[str, tuple[float, float]]] = {
    "before_J": (-100.0, 0.0),
    "J_to_200ms": (0.0, 200.0),
    "200_to_400ms": (200.0, 400.0),
}
"""Spans of the profile (ms from the J point) whose mean the summary gives: the QRS side, the ST segment and
early T, the late T."""
SEGMENT_S: Final[float] = 0.1
"""The deletion test's cell: one lead over 100 ms (a QRS is about one cell, an ST-T segment three)."""


def territory_leads(territory: object) -> np.ndarray | None:
    """The (12,) mask of the leads facing ``territory`` (names joined by ``+``); None when unknown or none."""
    if not isinstance(territory, str) or not territory.strip():
        return None
    mask = np.zeros(N_LEADS, bool)
    for name in territory.split("+"):
        if name not in TERRITORY_LEADS:
            raise ValueError(f"unknown territory {name!r}; known: {', '.join(TERRITORY_LEADS)}")
        mask[[LEAD_INDEX[lead] for lead in TERRITORY_LEADS[name]]] = True
    return mask


def record_masses(rel: np.ndarray, windows: dict[str, np.ndarray], territory: np.ndarray | None) -> dict[str, float]:
    """One record's window shares (all leads, per lead) and territory figures (module docstring)."""
    rel = np.asarray(rel, np.float64)
    total = rel.sum()
    lead_total = rel.sum(1)
    out: dict[str, float] = {"mass": float(total)}
    for w in WINDOWS:
        m = windows[w]
        share = rel[:, m].sum() / total if total > 0 else math.nan
        out[f"{w}_share"], out[f"{w}_time"] = float(share), float(m.mean())
        per_lead = np.divide(rel[:, m].sum(1), lead_total, out=np.full(N_LEADS, np.nan), where=lead_total > 0)
        for lead, v in zip(LEADS, per_lead, strict=True):
            out[f"{w}_share_{lead}"] = float(v)
    if territory is not None and total > 0:
        k = territory.mean()
        out["territory_share"], out["territory_chance"] = float(rel[territory].sum() / total), float(k)
        for w in (STT, QRS):
            m = windows[w]
            share, chance = rel[np.ix_(territory, m)].sum() / total, k * m.mean()
            out[f"territory_{w}_share"], out[f"territory_{w}_chance"] = float(share), float(chance)
            out[f"territory_{w}_enrichment"] = float(share / chance) if chance > 0 else math.nan
    return out


def j_profile(rel: np.ndarray, beats: Beats, leads: np.ndarray | None) -> dict[str, np.ndarray]:
    """Mean relevance around the J points of a record's beats, relative to the record's mean.

    Parameters
    ----------
    rel
        (12, T) relevance of one record.
    beats
        Its beats; those whose span (:data:`PROFILE_S`) leaves the record are left out.
    leads
        (12,) mask of the territory's leads, or None.

    Returns
    -------
    dict[str, np.ndarray]
        ``"territory"`` and ``"other"`` (or ``"all"`` without ``leads``): (S,) profiles over the offsets
        :func:`profile_offsets` gives; empty when no beat fits or the map is all zero.
    """
    lo, hi = _profile_span(beats.fs)
    mean = float(np.mean(rel))
    j = beats.j[(beats.j + lo >= 0) & (beats.j + hi <= rel.shape[1])]
    if len(j) == 0 or mean <= 0:
        return {}
    segs = np.stack([rel[:, k + lo : k + hi] for k in j]) / mean  # (beats, 12, S)
    if leads is None:
        return {"all": segs.mean((0, 1))}
    return {"territory": segs[:, leads].mean((0, 1)), "other": segs[:, ~leads].mean((0, 1))}


def _profile_span(fs: float) -> tuple[int, int]:
    """:data:`PROFILE_S` in samples from the J point."""
    lo, hi = (round(v * fs) for v in PROFILE_S)
    return lo, hi


def profile_offsets(fs: float) -> np.ndarray:
    """The profile's offsets from the J point in ms."""
    lo, hi = _profile_span(fs)
    return np.arange(lo, hi) * 1000.0 / fs


def _cells(rel: np.ndarray, seg: int) -> np.ndarray:
    """(N, 12, T) -> (N, 12 * n_cells) relevance per (lead, segment) cell; a short last segment counts too."""
    n, n_leads, n_t = rel.shape
    n_cells = -(-n_t // seg)
    padded = np.zeros((n, n_leads, n_cells * seg), np.float64)
    padded[..., :n_t] = rel
    return padded.reshape(n, n_leads, n_cells, seg).sum(-1).reshape(n, n_leads * n_cells)


def deletion_curves(
    model: nn.Module,
    x: np.ndarray,
    demo: np.ndarray,
    rel: np.ndarray,
    cfg: TrainConfig | None,
    fs: float,
    *,
    seed: int,
    fractions: Sequence[float] = DELETION_FRACTIONS,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores (N, F) after zeroing the top-relevance cells first, and after zeroing random cells.

    The random order of record ``i`` is seeded from ``(seed, i)``, so it does not depend on the batch.
    """
    n, n_leads, n_t = x.shape
    seg = max(1, round(SEGMENT_S * fs))
    cells = _cells(rel, seg)
    n_cells = cells.shape[1]
    by_rel = np.argsort(-cells, axis=1, kind="stable")
    by_rand = np.stack([np.random.default_rng([seed, i]).permutation(n_cells) for i in range(n)])
    cell_of_sample = np.minimum(np.arange(n_t) // seg, n_cells // n_leads - 1)
    out = []
    for order in (by_rel, by_rand):
        scores = np.empty((n, len(fractions)))
        for j, f in enumerate(fractions):
            k = round(f * n_cells)
            keep = np.ones((n, n_cells), bool)
            np.put_along_axis(keep, order[:, :k], False, axis=1)
            lead_cell = keep.reshape(n, n_leads, n_cells // n_leads)[:, :, cell_of_sample]  # (N, 12, T)
            masked = np.where(lead_cell, x, 0.0).astype(np.float32)
            with torch.no_grad():
                for i in range(0, n, batch_size):
                    xb, db = torch.from_numpy(masked[i : i + batch_size]), torch.from_numpy(demo[i : i + batch_size])
                    scores[i : i + batch_size, j] = score_records(model, xb, db, cfg).numpy()
        out.append(scores)
    return out[0], out[1]


def window_occlusion(
    model: nn.Module,
    x: np.ndarray,
    demo: np.ndarray,
    windows: Sequence[dict[str, np.ndarray]],
    leads: Sequence[np.ndarray],
    cfg: TrainConfig | None,
    fs: float,
) -> pd.DataFrame:
    """Per record: the logit drop when the ST-T, or the QRS, windows of ``leads[i]`` (a (12,) mask) are zeroed,
    and the logit gain over the all-zero record when only those windows are kept.

    Columns ``<window>_drop`` (logit units), ``<window>_seconds`` (signal removed, summed over the leads),
    ``<window>_drop_per_s``, ``<window>_kept_gain`` and ``<window>_kept_gain_per_s`` for ST-T and QRS. Keeping
    a window alone is the kind of input Score-CAM's keep-masks score (the record zeroed outside a mask): a window
    the model reads only beside the rest of the record gains little there, however far zeroing it drops the score.
    """
    cols = ("drop", "seconds", "drop_per_s", "kept_gain", "kept_gain_per_s")
    out: dict[str, list[float]] = {f"{w}_{c}": [] for w in (STT, QRS) for c in cols}
    for i in range(len(x)):
        batch = [x[i], np.zeros_like(x[i])]
        for w in (STT, QRS):
            cells = np.ix_(leads[i], windows[i][w])
            zeroed, kept = x[i].copy(), np.zeros_like(x[i])
            zeroed[cells], kept[cells] = 0.0, x[i][cells]
            batch += [zeroed, kept]
        with torch.no_grad():
            xb = torch.from_numpy(np.stack(batch).astype(np.float32))
            db = torch.from_numpy(np.repeat(demo[i : i + 1], len(batch), 0).astype(np.float32))
            logit = torch.logit(score_records(model, xb, db, cfg).double(), eps=1e-6).numpy()
        full, none = logit[0], logit[1]
        for w, (zeroed_logit, kept_logit) in zip((STT, QRS), logit[2:].reshape(2, 2), strict=True):
            seconds = float(leads[i].sum() * windows[i][w].sum() / fs)
            out[f"{w}_seconds"].append(seconds)
            for name, v in (("drop", full - zeroed_logit), ("kept_gain", kept_logit - none)):
                out[f"{w}_{name}"].append(float(v))
                out[f"{w}_{name}_per_s"].append(float(v) / seconds if seconds > 0 else math.nan)
    return pd.DataFrame(out)


def curve_area(scores: np.ndarray, fractions: Sequence[float] = DELETION_FRACTIONS) -> np.ndarray:
    """Area under each deletion curve, divided by the deleted range: the mean score while deleting."""
    f = np.asarray(fractions, np.float64)
    return np.trapezoid(scores, f, axis=1) / (f[-1] - f[0])


@dataclass(frozen=True)
class CheckRows:
    """One row per (method, record) with the record's masses and deletion areas; the profiles; the records
    skipped and why."""

    rows: pd.DataFrame
    """Also the deletion curves: ``deletion_<j>`` and ``random_deletion_<j>``, the score at
    :data:`DELETION_FRACTIONS` ``[j]``."""
    skipped: pd.DataFrame
    profiles: pd.DataFrame
    """One row per (method, record, leads) with the record's group and its J-point profile
    (:func:`j_profile`) in columns named by their offset in ms."""
    occlusion: pd.DataFrame
    """One row per true positive with a known territory: :func:`window_occlusion` with its ``record_id``."""


def check_records(
    model: nn.Module,
    x: np.ndarray,
    demo: np.ndarray,
    meta: pd.DataFrame,
    scores: np.ndarray,
    threshold: float,
    maps: dict[str, np.ndarray],
    cfg: TrainConfig | None,
    fs: float,
    *,
    seed: int = 0,
) -> CheckRows:
    """The per-record checks of every method's maps (``maps[method]``: (N, 12, T)) on the records ``x``.

    A record whose beats cannot be delineated is skipped and listed with the reason.
    """
    labels = meta["label"].to_numpy()
    groups = np.where(scores >= threshold, np.where(labels == 1, "TP", "FP"), np.where(labels == 1, "FN", "TN"))
    beats: list[Beats | None] = []
    skipped = []
    for i in range(len(x)):
        try:
            beats.append(detect_beats(x[i], fs))
        except BeatError as err:
            beats.append(None)
            skipped.append({"record_id": meta["record_id"].iloc[i], "reason": str(err)})
    windows = [b.windows() if b is not None else None for b in beats]
    territory = meta["territory"] if "territory" in meta else pd.Series("", index=meta.index)
    rows: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    offsets = [f"{v:g}" for v in profile_offsets(fs)]
    ok = np.array([w is not None for w in windows])
    terr_of = [territory_leads(territory.iloc[i]) if labels[i] == 1 else None for i in range(len(x))]
    picked = [
        (i, w, terr)
        for i, (w, terr) in enumerate(zip(windows, terr_of, strict=True))
        if w is not None and terr is not None and groups[i] == "TP"
    ]
    occ = [i for i, _, _ in picked]
    occlusion = window_occlusion(
        model, x[occ], demo[occ], [w for _, w, _ in picked], [t for _, _, t in picked], cfg, fs
    )
    occlusion.insert(0, "record_id", meta["record_id"].iloc[occ].to_numpy())
    for method, rel in maps.items():
        by_rel, by_rand = deletion_curves(model, x[ok], demo[ok], rel[ok], cfg, fs, seed=seed)
        area_rel, area_rand = curve_area(by_rel), curve_area(by_rand)
        for j, i in enumerate(np.flatnonzero(ok).tolist()):
            w, b = windows[i], beats[i]
            assert w is not None and b is not None
            terr = terr_of[i]
            record = {"method": method, "record_id": meta["record_id"].iloc[i], "group": groups[i]}
            for leads, prof in j_profile(rel[i], b, terr).items():
                profiles.append({**record, "leads": leads, **dict(zip(offsets, prof.tolist(), strict=True))})
            rows.append(
                {
                    **record, "score": float(scores[i]), "territory": territory.iloc[i] if terr is not None else "",
                    **record_masses(rel[i], w, terr),
                    "deletion_area": float(area_rel[j]), "random_deletion_area": float(area_rand[j]),
                    **{f"deletion_{k}": float(v) for k, v in enumerate(by_rel[j])},
                    **{f"random_deletion_{k}": float(v) for k, v in enumerate(by_rand[j])},
                }
            )  # fmt: skip
    return CheckRows(
        pd.DataFrame(rows),
        pd.DataFrame(skipped, columns=["record_id", "reason"]),
        pd.DataFrame(profiles, columns=["method", "record_id", "group", "leads", *offsets]),
        occlusion,
    )


def _one_sided_wilcoxon(d: np.ndarray) -> float | None:
    d = d[np.isfinite(d)]
    if len(d) < 5 or np.all(d == 0):
        return None
    return float(stats.wilcoxon(d, alternative="greater").pvalue)


def _median(v: pd.Series) -> float | None:
    v = v.dropna()
    return float(v.median()) if len(v) else None


def summarise_profiles(profiles: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """Per method and curve (``"TP territory"``, ``"TP other"``, ``"TP all"``, ``"TN all"``, where there are
    records): the mean J-point profile over records, its peak and the peak's offset."""
    offsets = [c for c in profiles.columns if c not in ("method", "record_id", "group", "leads")]
    ms = np.array([float(o) for o in offsets])
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for method, r in profiles.groupby("method", sort=False):
        curves: dict[str, dict[str, Any]] = {}
        for group, leads in (("TP", "territory"), ("TP", "other"), ("TP", "all"), ("TN", "all")):
            part = r[(r["group"] == group) & (r["leads"] == leads)]
            if len(part):
                mean = part[offsets].to_numpy(np.float64).mean(0)
                k = int(np.argmax(mean))
                curves[f"{group} {leads}"] = {
                    "n": len(part), "offsets_ms": ms.tolist(), "mean": mean.tolist(),
                    "peak_ms": float(ms[k]), "peak": float(mean[k]),
                    **{name: float(mean[(ms >= a) & (ms < b)].mean()) for name, (a, b) in PROFILE_SPANS.items()},
                }  # fmt: skip
        out[str(method)] = curves
    return out


def summarise_occlusion(occlusion: pd.DataFrame) -> dict[str, Any]:
    """Medians of :func:`window_occlusion`'s drops and kept-alone gains, and one-sided Wilcoxon p for
    ST-T > QRS (total, per second)."""
    s: dict[str, Any] = {"n": len(occlusion)}
    for suffix in ("drop", "drop_per_s", "kept_gain", "kept_gain_per_s"):
        for w, key in ((STT, "STT"), (QRS, "QRS")):
            s[f"{key}_{suffix}"] = _median(occlusion[f"{w}_{suffix}"])
        d = (occlusion[f"{STT}_{suffix}"] - occlusion[f"{QRS}_{suffix}"]).to_numpy(np.float64)
        s[f"p_STT_vs_QRS_{suffix}"] = _one_sided_wilcoxon(d)
    return s


def summarise_checks(rows: pd.DataFrame, profiles: pd.DataFrame | None = None) -> dict[str, dict[str, Any]]:
    """Per method: ST-T share of true positives vs true negatives, the territory figures, the deletion test
    and, with ``profiles``, the J-point profiles (:func:`summarise_profiles`)."""
    out: dict[str, dict[str, Any]] = {}
    curves = summarise_profiles(profiles) if profiles is not None and len(profiles) else {}
    for method, r in rows.groupby("method", sort=False):
        tp, tn = r[r["group"] == "TP"], r[r["group"] == "TN"]
        s: dict[str, Any] = {"n": {g: int((r["group"] == g).sum()) for g in ("TP", "FP", "FN", "TN")}}
        for w in WINDOWS:
            s[f"{w}_share"] = {"TP": _median(tp[f"{w}_share"]), "TN": _median(tn[f"{w}_share"])}
            s[f"{w}_time"] = _median(r[f"{w}_time"])
        s["STT_share_per_lead"] = {
            g: {lead: _median(part[f"{STT}_share_{lead}"]) for lead in LEADS} for g, part in (("TP", tp), ("TN", tn))
        }
        a, b = tp[f"{STT}_share"].dropna(), tn[f"{STT}_share"].dropna()
        s["STT_share_TP_vs_TN_p"] = (
            float(stats.mannwhitneyu(a, b, alternative="greater").pvalue) if len(a) >= 5 and len(b) >= 5 else None
        )
        terr = r[(r["group"] == "TP") & r["territory"].astype(bool)] if "territory_share" in r else r.iloc[:0]
        if len(terr):
            stt_e, qrs_e = terr[f"territory_{STT}_enrichment"], terr[f"territory_{QRS}_enrichment"]
            s["territory"] = {
                "n": len(terr),
                "STT_share": _median(terr[f"territory_{STT}_share"]),
                "STT_chance": _median(terr[f"territory_{STT}_chance"]),
                "STT_enrichment": _median(stt_e),
                "QRS_share": _median(terr[f"territory_{QRS}_share"]),
                "QRS_enrichment": _median(qrs_e),
                "leads_share": _median(terr["territory_share"]),
                "leads_chance": _median(terr["territory_chance"]),
                "p_STT_vs_chance": _one_sided_wilcoxon((stt_e - 1).to_numpy(np.float64)),
                "p_STT_vs_QRS": _one_sided_wilcoxon((stt_e - qrs_e).to_numpy(np.float64)),
                "p_STT_vs_QRS_mass": _one_sided_wilcoxon(
                    (terr[f"territory_{STT}_share"] - terr[f"territory_{QRS}_share"]).to_numpy(np.float64)
                ),
                "p_leads_vs_chance": _one_sided_wilcoxon(
                    (terr["territory_share"] - terr["territory_chance"]).to_numpy(np.float64)
                ),
            }
        pos = r[r["group"] == "TP"]
        s["deletion"] = {
            "n": len(pos),
            "fractions": list(DELETION_FRACTIONS),
            "curve_relevance": [float(pos[f"deletion_{k}"].mean()) for k in range(len(DELETION_FRACTIONS))],
            "curve_random": [float(pos[f"random_deletion_{k}"].mean()) for k in range(len(DELETION_FRACTIONS))],
            "area_relevance": _median(pos["deletion_area"]),
            "area_random": _median(pos["random_deletion_area"]),
            "p_faster_than_random": _one_sided_wilcoxon(
                (pos["random_deletion_area"] - pos["deletion_area"]).to_numpy(np.float64)
            ),
        }
        if str(method) in curves:
            s["j_profile"] = curves[str(method)]
        out[str(method)] = s
    return out
