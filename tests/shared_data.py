"""Where the real shared data lives, and a skip with a reason when it is absent (a user's clone)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PTBXL = SHARED / "ptbxl"
PTBXL_FILTERED = SHARED / "ptbxl-filtered"

needs_ptbxl = pytest.mark.skipif(
    not (PTBXL / "metadata" / "ptbxl_database.csv").is_file(),
    reason=f"real PTB-XL data not found at {PTBXL} (it sits beside the checkout as ../shared on CI)",
)
needs_ptbxl_filtered = pytest.mark.skipif(
    not (PTBXL_FILTERED / "signals.npy").is_file(), reason=f"filtered PTB-XL array not found at {PTBXL_FILTERED}"
)
