"""Default locations, resolved when a command runs (never at import, never inside site-packages)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Final

DATA_DIR_ENV: Final[str] = "FEDAMI_DATA_DIR"
RUNS_DIR_ENV: Final[str] = "FEDAMI_RUNS_DIR"


def default_data_dir() -> Path:
    """Where prepared stores live: ``$FEDAMI_DATA_DIR`` or ``~/.cache/fedami``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "fedami"


def server_out_dir() -> Path:
    """A deployed ServerApp's default output folder: ``federated-<time>`` under ``$FEDAMI_RUNS_DIR``, else
    ``~/fedami/runs``: never relative to the working folder of the process that runs it."""
    env = os.environ.get(RUNS_DIR_ENV)
    return _unique((Path(env).expanduser() if env else Path.home() / "fedami" / "runs").resolve(), "federated")


def _unique(root: Path, kind: str) -> Path:
    stamp = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, n = root / stamp, 1
    while out.exists():  # two runs started in the same second
        n += 1
        out = root / f"{stamp}-{n}"
    return out


def default_out_dir(kind: str = "run") -> Path:
    """A new folder per run, so nothing is overwritten: ``<runs>/<kind>-<timestamp>``.

    ``<runs>`` is ``$FEDAMI_RUNS_DIR`` or ``runs/`` in the folder the command was started from,
    made absolute at once (the command prints it).
    """
    env = os.environ.get(RUNS_DIR_ENV)
    return _unique((Path(env).expanduser() if env else Path.cwd() / "runs").resolve(), kind)
