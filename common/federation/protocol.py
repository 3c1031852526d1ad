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

from common.config import CohortConfig, FederatedConfig, TrainConfig
from common.data.sources import RealData, real_data
from common.synthetic.cohort import default_data_dir

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
DATA_DIR: Final[str] = "data-dir"
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


# Run-config keys of the typed settings' fields, one table for both directions (settings -> run config in
# :func:`run_config_of`, run config -> settings in :func:`settings_from_run_config`). A missing key takes
# the field's default.
COHORT_KEYS: Final[dict[str, str]] = {
    "seed": "seed",
    NUM_SITES: "n_sites",
    "n-ecgs": "n_ecgs",
    "difficulty": "difficulty",
}
TRAIN_KEYS: Final[dict[str, str]] = {"model": "model", "lr": "lr", "batch-size": "batch_size"}
FEDERATED_KEYS: Final[dict[str, str]] = {
    "strategy": "strategy",
    NUM_SERVER_ROUNDS: "rounds",
    LOCAL_EPOCHS: "local_epochs",
    LOCAL_BATCH_SIZE: "local_batch_size",
    PROXIMAL_MU: "proximal_mu",
    "server-lr": "server_lr",
    "server-momentum": "server_momentum",
    "trim-beta": "trim_beta",
    "krum-malicious": "krum_malicious",
}
_ZERO_IS_NONE: Final[frozenset[str]] = frozenset({LOCAL_BATCH_SIZE, "server-lr"})
"""Optional settings: a run config (TOML) has no null, so 0 stands for None (automatic / the strategy's default)."""


def _text(rc: Mapping[str, object], key: str) -> str:
    value = rc.get(key)
    return "" if value is None else str(value)


def _fields(rc: Mapping[str, object], keys: Mapping[str, str]) -> dict[str, object]:
    """The fields ``rc`` sets, by field name (pydantic checks and converts the values)."""
    out = {}
    for key, field in keys.items():
        value = rc.get(key)
        if value is not None and not (key in _ZERO_IS_NONE and value == 0):
            out[field] = value
    return out


def run_config_of(cohort: CohortConfig, train: TrainConfig, federated: FederatedConfig) -> dict[str, str | int | float]:
    """The flat run-config entries of the typed settings (the inverse of :func:`settings_from_run_config`)."""
    rc: dict[str, str | int | float] = {}
    for obj, keys in ((cohort, COHORT_KEYS), (train, TRAIN_KEYS), (federated, FEDERATED_KEYS)):
        for key, field in keys.items():
            value = getattr(obj, field)
            rc[key] = 0 if value is None and key in _ZERO_IS_NONE else value
    return rc


def settings_from_run_config(rc: Mapping[str, object]) -> RunSettings:
    """Typed settings from Flower's flat run config; missing keys take the defaults."""
    cohort = CohortConfig.model_validate(_fields(rc, COHORT_KEYS))
    # Each simulated hospital is one process with one CPU, so one torch thread.
    train = TrainConfig.model_validate({**_fields(rc, TRAIN_KEYS), "seed": cohort.seed, "num_threads": 1})
    federated = FederatedConfig.model_validate(_fields(rc, FEDERATED_KEYS))
    data: CohortConfig | RealData = cohort
    kind = _text(rc, "data") or "synthetic"
    if kind != "synthetic":
        keys = ("root", "filtered", "path")
        data = real_data({"kind": kind, **{k: _text(rc, f"data-{k}") for k in keys}})
    sites = _text(rc, TRAIN_SITES)
    train_sites = tuple(int(s) for s in sites.split(",") if s.strip()) or tuple(range(cohort.n_sites))
    if any(not 0 <= s < cohort.n_sites for s in train_sites) or len(set(train_sites)) != len(train_sites):
        raise ValueError(f"{TRAIN_SITES}={sites!r} must be distinct hospital indices below {cohort.n_sites}")
    data_dir, out_dir, resume = _text(rc, DATA_DIR), _text(rc, OUT_DIR), _text(rc, RESUME)
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
