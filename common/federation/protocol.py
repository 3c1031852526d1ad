"""Names shared by the ServerApp and ClientApp, so no protocol key is spelled twice (Flower-free).

The run config itself is :class:`common.config.AppConfig` in flat form (:mod:`common.config.flat`);
the keys here are those of the messages and of a node's own config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# Message content keys.
ARRAYS: Final[str] = "arrays"
METRICS: Final[str] = "metrics"
CONFIG: Final[str] = "config"
REPLICATES: Final[str] = "replicates"
"""Array record of a test reply: its patient-bootstrap replicates (``rep-pos``, ``rep-neg`` and each subgroup's),
as ``(n-boot, bins)`` arrays of the smallest unsigned integer type that holds the counts. Millions of counts
as metric lists took seconds to serialise at each of Flower's hops; as arrays they are one buffer each."""
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
NUM_PATIENTS: Final[str] = "num-patients"
NUM_POSITIVES: Final[str] = "num-positives"
"""AMI-positive ECGs among a training reply's examples (for the model card's training data)."""
REP_BINS: Final[str] = "rep-bins"
"""The bins a hospital's bootstrap replicates can fill (those holding one of its ECGs), ascending."""
REP_POS: Final[str] = "rep-pos"
REP_NEG: Final[str] = "rep-neg"
"""Replicate x bin counts, ``(n-boot, len(rep-bins))`` arrays in the :data:`REPLICATES` record."""
SUB_PATIENTS: Final[str] = "sub-patients"
SUB_BINS: Final[str] = "sub-bins"
SUB_POS: Final[str] = "sub-pos"
SUB_NEG: Final[str] = "sub-neg"
SUB_REP_POS: Final[str] = "sub-rep-pos"
SUB_REP_NEG: Final[str] = "sub-rep-neg"
"""A test reply's subgroup ``i`` (``common.evaluation.subgroups.SUBGROUPS``) under ``<key>-<i>`` (:func:`subgroup_key`):
its patients; the bins its ECGs fill, its counts there, and its replicates there (arrays as ``rep-pos``).
A subgroup without ECGs at the hospital sends its patient count (0) only."""
CAL_COUNT: Final[str] = "cal-count"
CAL_SUM_P: Final[str] = "cal-sum-p"
CAL_SUM_Y: Final[str] = "cal-sum-y"
CAL_SQ_ERR: Final[str] = "cal-sq-err"
"""A test reply's calibration sums (``common.evaluation.calibration.CalibrationSums``)."""
HOSPITAL: Final[str] = "hospital"
"""Config key of a query reply: the hospital the node holds (as its node config names it)."""
TRAINED_WITH: Final[str] = "trained-with"
"""Config key of a training reply: JSON of the settings the hospital actually trained with."""
INPUT_SPEC: Final[str] = "input-spec"
"""Config key of a training reply: JSON of how the hospital's data were prepared (``common.models.card.InputSpec``)."""
VAL_METRICS: Final[str] = "val-metrics"
"""Metric record of a training reply whose message asked for :data:`VALIDATE`: the evaluation reply's metrics for
the weights the hospital received, on its validation split."""
UPDATE_COMPRESSION: Final[str] = "update-compression"
"""Config key of a training reply: how its arrays encode the update (``common.federation.compression``)."""
# Config keys the server sends.
SERVER_ROUND: Final[str] = "server-round"
PROXIMAL_MU: Final[str] = "proximal-mu"
VALIDATE: Final[str] = "validate"
"""Config key of a training message: first score the received weights on the validation split (the previous round's
model; its validation rides on this round's exchange instead of a message of its own)."""
EVAL_SPLIT: Final[str] = "split"
THRESHOLD: Final[str] = "threshold"
N_BOOT: Final[str] = "n-boot"
"""Config key of a test round: how many patient-bootstrap replicates each hospital sends."""
# Node config keys: a partition in simulation; a hospital name (or index) and its data folder in deployment.
PARTITION_ID: Final[str] = "partition-id"
NUM_PARTITIONS: Final[str] = "num-partitions"
NODE_SITE: Final[str] = "site"
NODE_DATA_DIR: Final[str] = "data-dir"
NODE_WORKER: Final[str] = "worker-socket"
"""Node config key: the Unix socket of the hospital's warm worker (``fedami deploy worker``), if it runs one."""

READ_S: Final[str] = "read-s"
VALIDATE_S: Final[str] = "validate-s"
TRAIN_S: Final[str] = "train-s"
HANDLER_S: Final[str] = "handler-s"
TIMINGS: Final[tuple[str, ...]] = (READ_S, VALIDATE_S, TRAIN_S, HANDLER_S)
"""Metric keys of a training reply: seconds the hospital's handler spent reading its training split (0 once it is
in memory), validating the weights it received (with reading its validation split the first time), training, and
in all, by its own clock. The server records them per round in ``history.json`` and never relies on them."""


def number(record: Mapping[str, object], key: str, default: float | None = None) -> float:
    """A numeric entry of a metric or config record, with a clear error when it is not one."""
    value = record.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{key!r} must be a number, got {value!r}")
    return float(value)


def subgroup_key(key: str, i: int) -> str:
    return f"{key}-{i}"
