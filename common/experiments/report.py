"""Where results go."""

from __future__ import annotations

import time
from pathlib import Path


def default_out_dir(root: Path) -> Path:
    """``root/runs/<timestamp>``: a new folder per run, so nothing is overwritten."""
    return root / "runs" / time.strftime("%Y%m%d-%H%M%S")
