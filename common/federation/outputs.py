"""What a finished federated run leaves in its output folder, read back as one typed object."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

ALL_SITES: Final[str] = "all"
"""The name of the figures over all hospitals together (each hospital's carry its own name)."""
HISTORY: Final[str] = "history.json"
TEST: Final[str] = "test.json"
MESSAGES: Final[str] = "messages.json"
TIMING: Final[str] = "timing.json"
TRAINED_WITH: Final[str] = "trained_with.json"
APP_CONFIG: Final[str] = "app_config.json"
STOPPED: Final[str] = "stopped.json"
"""Written when a run stops before its end: why, and the last round checkpointed."""


@dataclass(frozen=True)
class FederatedOutputs:
    """The server's records of one federated run (all aggregates: no per-record value)."""

    history: list[dict[str, Any]]
    """One entry per round: training loss and examples per hospital, validation AUROC over all and each, seconds."""
    test: dict[str, Any]
    """The final test round from the hospitals' histograms: ``all``, ``sites`` and the transferred ``threshold``."""
    messages: dict[str, Any]
    """Which node got which message, which node holds which hospital, the best round."""
    timing: dict[str, float]
    trained_with: dict[str, list[dict[str, Any]]]
    """Per hospital, what it reported training with in each round."""
    app_config: dict[str, Any]
    """The run config as the server ran it."""

    @property
    def best_round(self) -> int | None:
        best = self.messages.get("best_round")
        return None if best is None else int(best)

    @classmethod
    def read(cls, out: Path) -> FederatedOutputs:
        def load(name: str) -> Any:
            path = out / name
            if not path.is_file():
                raise FileNotFoundError(f"the federated run left no {name} in {out}; see the Flower log above")
            return json.loads(path.read_text())

        return cls(
            history=load(HISTORY),
            test=load(TEST),
            messages=load(MESSAGES),
            timing=load(TIMING),
            trained_with=load(TRAINED_WITH),
            app_config=load(APP_CONFIG),
        )
