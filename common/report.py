"""Results as JSON, Markdown tables and plots."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def _fmt(v: object) -> str:
    if isinstance(v, float | np.floating):
        return "n/a" if np.isnan(v) else f"{v:.3f}"
    return str(v)


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    """ROC curves ``name -> (y, scores)`` into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (y, s) in curves.items():
        if 0 < y.sum() < len(y):
            fpr, tpr, _ = roc_curve(y, s)
            ax.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_history(history: Sequence[Mapping[str, float | None]], path: Path, title: str) -> None:
    """Training loss and validation AUROC per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = np.array([h["epoch"] for h in history], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(ep, np.array([h["train_loss"] for h in history], dtype=float), "o-", label="train loss")
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax2 = ax.twinx()
    ax2.plot(
        ep,
        np.array([np.nan if h["val_auroc"] is None else h["val_auroc"] for h in history], dtype=float),
        "s-",
        color="C1",
        label="val AUROC",
    )
    ax2.set_ylabel("validation AUROC")
    fig.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def default_out_dir(root: Path) -> Path:
    """``root/runs/<timestamp>``: a new folder per run, so nothing is overwritten."""
    return root / "runs" / time.strftime("%Y%m%d-%H%M%S")
