"""Numbers as text: the one value formatter, the one "estimate [lower-upper]" formatter, Markdown tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

NA = "n/a"


def format_value(v: Any, digits: int = 3) -> str:
    """``v`` with ``digits`` decimals; ``"n/a"`` for None, NaN, inf and non-numbers."""
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) or not math.isfinite(v):
        return NA
    return f"{v:.{digits}f}"


def format_ci(estimate: Any, lower: Any = None, upper: Any = None, digits: int = 3) -> str:
    """``"0.874 [0.802-0.945]"``; the estimate alone where a bound is undefined, ``"n/a"`` without an estimate."""
    if format_value(estimate, digits) == NA:
        return NA
    if format_value(lower, digits) == NA or format_value(upper, digits) == NA:
        return format_value(estimate, digits)
    return f"{format_value(estimate, digits)} [{format_value(lower, digits)}-{format_value(upper, digits)}]"


def format_ci_pair(estimate: Any, ci: Any, digits: int = 3) -> str:
    """:func:`format_ci` with the bounds as one ``[lower, upper]`` pair (as results JSON stores them)."""
    lower, upper = ci if isinstance(ci, Sequence) and len(ci) == 2 else (None, None)
    return format_ci(estimate, lower, upper, digits)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; floats with 3 decimals, missing values as ``"n/a"``."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        cells = (format_value(v) if isinstance(v, float | np.floating) else str(v) for v in row)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
