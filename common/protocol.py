"""Names shared by the ServerApp and ClientApp, and the run-config to typed-config translation.

Flower-free: the apps import these constants so no protocol key is spelled twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

from common.cohort import default_data_dir
from common.config import CohortConfig, TrainConfig

ARRAYS: Final[str] = "arrays"
METRICS: Final[str] = "metrics"
CONFIG: Final[str] = "config"
NUM_EXAMPLES: Final[str] = "num-examples"
TRAIN_LOSS: Final[str] = "train-loss"
LOCAL_AUROC: Final[str] = "local-auroc"
SERVER_ROUND: Final[str] = "server-round"
LOCAL_EPOCHS: Final[str] = "local-epochs"
PARTITION_ID: Final[str] = "partition-id"
NUM_PARTITIONS: Final[str] = "num-partitions"
NUM_SITES: Final[str] = "num-sites"
NUM_SERVER_ROUNDS: Final[str] = "num-server-rounds"
NODE_WAIT_S: Final[float] = 120.0
"""How long the server waits for every hospital to connect before it gives up with an error."""


def site_index(node_config: Mapping[str, object], n_sites: int) -> int:
    """The hospital a node holds: its partition id, checked against the number of hospitals."""
    if PARTITION_ID not in node_config:
        raise KeyError(f"node config has no {PARTITION_ID!r}; got keys {sorted(node_config)}")
    idx = int(node_config[PARTITION_ID])  # type: ignore[call-overload]
    n_parts = int(node_config.get(NUM_PARTITIONS, n_sites))  # type: ignore[call-overload]
    if n_parts != n_sites or not 0 <= idx < n_sites:
        raise ValueError(
            f"node {idx} of {n_parts} cannot be one of {n_sites} hospitals: start exactly {n_sites} "
            f"supernodes (options.num-supernodes) or set {NUM_SITES}={n_parts}"
        )
    return idx


def settings_from_run_config(rc: Mapping[str, object]) -> tuple[CohortConfig, TrainConfig, Path]:
    """Typed settings from Flower's flat run config (the ``[tool.flwr.app.config]`` keys)."""
    seed = int(rc.get("seed", 0))  # type: ignore[call-overload]
    cohort = CohortConfig(
        seed=seed,
        n_sites=int(rc.get(NUM_SITES, 3)),  # type: ignore[call-overload]
        n_ecgs=int(rc.get("n-ecgs", 4000)),  # type: ignore[call-overload]
        difficulty=float(rc.get("difficulty", 0.5)),  # type: ignore[arg-type]
    )
    train = TrainConfig(
        model=str(rc.get("model", "cnn1d")),
        lr=float(rc.get("lr", 2e-3)),  # type: ignore[arg-type]
        batch_size=int(rc.get("batch-size", 64)),  # type: ignore[call-overload]
        seed=seed,
        num_threads=1,
    )
    data_dir = str(rc.get("data-dir", "") or "")
    return cohort, train, Path(data_dir).expanduser() if data_dir else default_data_dir()
