"""Plots of evaluation results (PNG via matplotlib's Agg backend, imported only when drawing)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from common.evaluation.calibration import CalibrationSums, calibration_sums
from common.evaluation.metrics import auprc, auroc


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _plt().close(fig)


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    """ROC curves ``name -> (y, scores)`` into one PNG."""
    from sklearn.metrics import roc_curve

    fig, ax = _plt().subplots(figsize=(5, 5))
    for name, (y, s) in curves.items():
        y = np.asarray(y)
        if 0 < y.sum() < len(y):
            fpr, tpr, _ = roc_curve(y, s)
            ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc(y, s):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_reliability(y: ArrayLike, p: ArrayLike, path: Path, title: str, n_bins: int = 10) -> None:
    """One model's reliability diagram (bins of :func:`reliability_curve`, ECE in the legend) with the
    histogram of its probabilities underneath, into one PNG."""
    plot_calibration(calibration_sums(y, p, n_bins), path, title)


def plot_calibration(sums: CalibrationSums, path: Path, title: str) -> None:
    """:func:`plot_reliability` from calibration sums (those a federated test round adds up)."""
    curve, ece = sums.curve(), sums.ece()
    used = curve.count > 0
    fig, (ax, hist) = _plt().subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(curve.mean_predicted[used], curve.observed[used], "o-", ms=4, label=f"model (ECE {ece:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--", label="perfect calibration")
    ax.set(ylabel="observed fraction AMI", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    edges = curve.bin_edges
    hist.bar(edges[:-1], curve.count, width=np.diff(edges), align="edge", color="C0", alpha=0.5)
    hist.set(xlabel="predicted probability", ylabel="ECGs", yscale="log" if curve.count.max() > 0 else "linear")
    _save(fig, path)


def plot_pr(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    """Precision-recall curves ``name -> (y, scores)`` into one PNG."""
    from sklearn.metrics import precision_recall_curve

    fig, ax = _plt().subplots(figsize=(5, 5))
    for name, (y, s) in curves.items():
        y = np.asarray(y)
        if 0 < y.sum() < len(y):
            prec, rec, _ = precision_recall_curve(y, s)
            line = ax.plot(rec, prec, drawstyle="steps-post", label=f"{name} (AUPRC {auprc(y, s):.3f})")
            ax.axhline(float(y.mean()), color=line[0].get_color(), lw=0.5, ls=":")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="upper right", fontsize=8)
    _save(fig, path)


def _nan(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def plot_history(history: Sequence[Mapping[str, float | None]], path: Path, title: str) -> None:
    """Training loss and validation AUROC per epoch (``epoch``, ``train_loss``, ``val_auroc`` entries)."""
    ep = np.array([h["epoch"] for h in history], dtype=float)
    fig, ax = _plt().subplots(figsize=(6, 3.5))
    ax.plot(ep, _nan([h["train_loss"] for h in history]), "o-", label="train loss")
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax2 = ax.twinx()
    ax2.plot(ep, _nan([h["val_auroc"] for h in history]), "s-", color="C1", label="val AUROC")
    ax2.set_ylabel("validation AUROC")
    fig.legend(loc="upper center", ncol=2, fontsize=8)
    _save(fig, path)


def plot_learning_curves(curves: Mapping[str, tuple[Sequence[int], Sequence[float | None]]], path: Path) -> None:
    """Validation AUROC per pass over the data, one line per ``label -> (passes, aurocs)``."""
    fig, ax = _plt().subplots(figsize=(6.5, 4))
    for i, (label, (x, auc)) in enumerate(curves.items()):
        ax.plot(list(x), _nan(auc), "o-" if i % 2 == 0 else "s--", label=label)
    ax.set(xlabel="round / epoch (one pass over the data each)", ylabel="validation AUROC", title="Learning curves")
    ax.legend(fontsize=7)
    _save(fig, path)
