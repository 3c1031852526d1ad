"""Names shared by the ServerApp and ClientApp, and the run-config to typed-settings translation.

Flower-free: the apps import these constants so no protocol key is spelled twice, and
:func:`settings_from_run_config` turns Flower's flat run config (the ``[tool.flwr.app.config]``
keys, or the overrides ``sim/run.py`` passes) into typed settings once per message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from common.cohort import default_data_dir
from common.config import DEFAULT_ROUNDS, CohortConfig, FederatedConfig, TrainConfig
from common.datasets import RealData, real_data

# Message content keys.
ARRAYS: Final[str] = "arrays"
METRICS: Final[str] = "metrics"
CONFIG: Final[str] = "config"
# Metric keys a client returns: aggregates only, never a per-record value.
NUM_EXAMPLES: Final[str] = "num-examples"
TRAIN_LOSS: Final[str] = "train-loss"
SITE_INDEX: Final[str] = "site-index"
POS_HIST: Final[str] = "pos-hist"
NEG_HIST: Final[str] = "neg-hist"
TP: Final[str] = "tp"
FP: Final[str] = "fp"
TN: Final[str] = "tn"
FN: Final[str] = "fn"
# Config keys the server sends.
SERVER_ROUND: Final[str] = "server-round"
PROXIMAL_MU: Final[str] = "proximal-mu"
EVAL_SPLIT: Final[str] = "split"
THRESHOLD: Final[str] = "threshold"
# Node config keys: a partition in simulation; a hospital name (or index) and its data folder in deployment.
PARTITION_ID: Final[str] = "partition-id"
NUM_PARTITIONS: Final[str] = "num-partitions"
NODE_SITE: Final[str] = "site"
NODE_DATA_DIR: Final[str] = "data-dir"
# Run config keys.
NUM_SITES: Final[str] = "num-sites"
NUM_SERVER_ROUNDS: Final[str] = "num-server-rounds"
LOCAL_EPOCHS: Final[str] = "local-epochs"
LOCAL_BATCH_SIZE: Final[str] = "local-batch-size"
TRAIN_SITES: Final[str] = "train-sites"
OUT_DIR: Final[str] = "out-dir"
RESUME: Final[str] = "resume"
NODE_WAIT_S: Final[float] = 120.0
"""How long the server waits for every hospital to connect before it gives up with an error."""


def number(record: Mapping[str, object], key: str, default: float | None = None) -> float:
    """A numeric entry of a metric or config record, with a clear error when it is not one."""
    value = record.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{key!r} must be a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RunSettings:
    """Typed view of a flat run config."""

    cohort: CohortConfig
    """The synthetic cohort (also carries the seed and the number of hospitals for real data)."""
    data: CohortConfig | RealData
    """Where the hospitals' ECGs come from: the synthetic cohort or ingested PTB-XL."""
    train: TrainConfig
    federated: FederatedConfig
    data_dir: Path
    train_sites: tuple[int, ...]
    out_dir: Path | None
    resume: Path | None

    @property
    def local_train_config(self) -> TrainConfig:
        """The settings of a hospital's local epochs: ``train`` with the hospital's batch size."""
        batch = self.federated.local_batch(self.train.batch_size, len(self.train_sites))
        return self.train.model_copy(update={"batch_size": batch})

    def site_names(self, data_dir: Path | None = None) -> list[str]:
        """Hospital names in index order (opening real data is a cache hit after the first ingest)."""
        if isinstance(self.data, CohortConfig):
            return [s.name for s in self.data.site_specs()]
        return [s.site for s in self.data.open(data_dir or self.data_dir, workers=1, echo=lambda *_: None)]

    def data_dir_of(self, node_config: Mapping[str, object]) -> Path:
        """A deployed node's own data folder (``--node-config "data-dir=..."``), else the run's."""
        value = node_config.get(NODE_DATA_DIR)
        return Path(str(value)).expanduser() if value else self.data_dir

    def site_of(self, node_config: Mapping[str, object]) -> int:
        """The hospital a node holds.

        In deployment a supernode names its hospital (``site``: name or index); in simulation the
        ``partition-id``-th training hospital is used.
        """
        if NODE_SITE in node_config:
            value = str(node_config[NODE_SITE])
            names = self.site_names(self.data_dir_of(node_config))
            idx = int(value) if value.isdigit() else names.index(value) if value in names else -1
            if idx not in self.train_sites:
                raise ValueError(
                    f"node hospital {value!r} is not a training hospital of this run "
                    f"({[names[i] for i in self.train_sites]})"
                )
            return idx
        if PARTITION_ID not in node_config:
            raise KeyError(
                f"node config has neither {NODE_SITE!r} (deployment) nor {PARTITION_ID!r} (simulation); "
                f"got keys {sorted(node_config)}"
            )
        idx = int(node_config[PARTITION_ID])  # type: ignore[call-overload]
        n = len(self.train_sites)
        n_parts = int(node_config.get(NUM_PARTITIONS, n))  # type: ignore[call-overload]
        if n_parts != n or not 0 <= idx < n:
            raise ValueError(
                f"node {idx} of {n_parts} cannot be one of {n} training hospitals: start exactly {n} "
                f"supernodes (options.num-supernodes) or set {NUM_SITES}={n_parts}"
            )
        return self.train_sites[idx]


def _get(rc: Mapping[str, object], key: str, default: object) -> object:
    value = rc.get(key, default)
    return default if value is None else value


def settings_from_run_config(rc: Mapping[str, object]) -> RunSettings:
    """Typed settings from Flower's flat run config; missing keys take the defaults."""
    seed = int(_get(rc, "seed", 0))  # type: ignore[call-overload]
    cohort = CohortConfig(
        seed=seed,
        n_sites=int(_get(rc, NUM_SITES, 3)),  # type: ignore[call-overload]
        n_ecgs=int(_get(rc, "n-ecgs", 4000)),  # type: ignore[call-overload]
        difficulty=float(_get(rc, "difficulty", 0.5)),  # type: ignore[arg-type]
    )
    train = TrainConfig(
        model=str(_get(rc, "model", "cnn1d")),
        lr=float(_get(rc, "lr", 2e-3)),  # type: ignore[arg-type]
        batch_size=int(_get(rc, "batch-size", 64)),  # type: ignore[call-overload]
        seed=seed,
        num_threads=1,
    )
    federated = FederatedConfig(
        strategy=str(_get(rc, "strategy", "fedavg")),
        rounds=int(_get(rc, NUM_SERVER_ROUNDS, DEFAULT_ROUNDS)),  # type: ignore[call-overload]
        local_epochs=int(_get(rc, LOCAL_EPOCHS, 1)),  # type: ignore[call-overload]
        proximal_mu=float(_get(rc, "proximal-mu", 0.01)),  # type: ignore[arg-type]
        server_lr=float(_get(rc, "server-lr", 0.0)) or None,  # type: ignore[arg-type]  # 0: the strategy's default
        local_batch_size=int(_get(rc, LOCAL_BATCH_SIZE, 0)) or None,  # type: ignore[call-overload]  # 0: automatic
        server_momentum=float(_get(rc, "server-momentum", 0.9)),  # type: ignore[arg-type]
        trim_beta=float(_get(rc, "trim-beta", 0.2)),  # type: ignore[arg-type]
        krum_malicious=int(_get(rc, "krum-malicious", 0)),  # type: ignore[call-overload]
    )
    data: CohortConfig | RealData = cohort
    kind = str(_get(rc, "data", "synthetic"))
    if kind != "synthetic":
        keys = ("root", "filtered", "path")
        data = real_data({"kind": kind, **{k: str(_get(rc, f"data-{k}", "")) for k in keys}})
    sites = str(_get(rc, TRAIN_SITES, ""))
    train_sites = tuple(int(s) for s in sites.split(",") if s.strip()) or tuple(range(cohort.n_sites))
    if any(not 0 <= s < cohort.n_sites for s in train_sites) or len(set(train_sites)) != len(train_sites):
        raise ValueError(f"{TRAIN_SITES}={sites!r} must be distinct hospital indices below {cohort.n_sites}")
    data_dir = str(_get(rc, "data-dir", ""))
    out_dir = str(_get(rc, OUT_DIR, ""))
    resume = str(_get(rc, RESUME, ""))
    return RunSettings(
        cohort=cohort,
        data=data,
        train=train,
        federated=federated,
        data_dir=Path(data_dir).expanduser() if data_dir else default_data_dir(),
        train_sites=train_sites,
        out_dir=Path(out_dir) if out_dir else None,
        resume=Path(resume) if resume else None,
    )
