"""Canonical ECG conventions shared by every module.

Every signal inside fedami is a float32 array of shape ``(12, n_samples)`` in millivolts with the
leads in :data:`LEADS` order. Readers convert names and units at the I/O boundary; nothing past it
ever sees another order or unit.
"""

from __future__ import annotations

from typing import Final

LEADS: Final[tuple[str, ...]] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)  # fmt: skip
N_LEADS: Final[int] = len(LEADS)
UNITS: Final[str] = "mV"
LEAD_INDEX: Final[dict[str, int]] = {name: i for i, name in enumerate(LEADS)}
TERRITORY_LEADS: Final[dict[str, tuple[str, ...]]] = {
    "anterior": ("V1", "V2", "V3", "V4"),
    "inferior": ("II", "III", "aVF"),
    "lateral": ("I", "aVL", "V5", "V6"),
}
"""The leads facing each coronary territory, where its infarct's ST-T changes show. A record's ``territory``
metadata is one of these names or several joined by ``+`` (``inferior+lateral``), empty when unknown or none."""
