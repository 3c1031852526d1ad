"""What a hospital does in a federated round, as plain functions (Flower-free).

A node reads its run config (:class:`common.config.AppConfig`), finds which hospital it is and that
hospital's *prepared* store, and trains or evaluates there. Nothing here generates or ingests data:
a node whose store is missing gets :class:`NodeDataError` with the command that prepares it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from common.config import AppConfig, CohortConfig, Frozen, TrainConfig
from common.config import flat as F
from common.config.paths import default_data_dir
from common.data.arrays import EcgArrays, load_split
from common.data.store import MANIFEST_FILE, SiteStore, StoreError
from common.evaluation.calibration import CalibrationSums, calibration_sums
from common.federation import histograms as H
from common.federation import protocol as P
from common.models.card import InputSpec, store_spec
from common.synthetic.key import synthetic_cohort_dir
from common.training.engine import build_model, cosine_factor, predict, seed_everything, train_epochs

StateDict = dict[str, torch.Tensor]


class NodeDataError(StoreError):
    """A node has no prepared data for its hospital (nodes never ingest)."""


def app_config(run_config: Mapping[str, object]) -> AppConfig:
    """The typed settings of a flat run config; an unknown key lists the known ones."""
    return F.parse(AppConfig, run_config)


def hospitals(cfg: AppConfig) -> tuple[str, ...]:
    """The run's training hospitals in order: ``data.hospitals``, else those of the prepared cohort."""
    if cfg.data.hospitals:
        return cfg.data.hospitals
    if cfg.data.stores is None:
        return cfg.cohort.site_names()
    folder = cfg.data.stores
    if not folder.is_dir():
        raise NodeDataError(
            f"data.hospitals is empty and the prepared folder {folder} is not readable here: "
            'name the training hospitals in the run config (data.hospitals = "site_a,site_b")'
        )
    return tuple(sorted(p.name for p in folder.iterdir() if (p / MANIFEST_FILE).is_file()))


def stores_folder(cfg: AppConfig, node_config: Mapping[str, object] | None = None) -> Path:
    """The folder holding the hospitals' stores: the node's own ``data-dir``, else the run's."""
    own = (node_config or {}).get(P.NODE_DATA_DIR)
    if own:
        return Path(str(own)).expanduser()
    if cfg.data.stores is not None:
        return cfg.data.stores
    return synthetic_cohort_dir(cfg.cohort, cfg.data.dir or default_data_dir())


@dataclass(frozen=True)
class Hospital:
    """The hospital one node holds: its index among the training hospitals, its name, its store."""

    index: int
    name: str
    store: Path


def hospital_of(cfg: AppConfig, node_config: Mapping[str, object]) -> Hospital:
    """The hospital a node holds.

    In deployment a SuperNode names its hospital (``--node-config "site=<name>"``, or its index); in
    simulation the ``partition-id``-th training hospital is used.
    """
    names = hospitals(cfg)
    if P.NODE_SITE in node_config:
        value = str(node_config[P.NODE_SITE])
        idx = names.index(value) if value in names else int(value) if value.isdigit() else -1
        if not 0 <= idx < len(names):
            raise ValueError(f"node hospital {value!r} is not a training hospital of this run ({list(names)})")
    elif P.PARTITION_ID in node_config:
        idx = int(str(node_config[P.PARTITION_ID]))
        n_parts = int(str(node_config.get(P.NUM_PARTITIONS, len(names))))
        if n_parts != len(names) or not 0 <= idx < len(names):
            raise ValueError(
                f"node {idx} of {n_parts} cannot be one of {len(names)} training hospitals {list(names)}: "
                f"start exactly {len(names)} nodes, or name the hospitals in data.hospitals"
            )
    else:
        raise KeyError(
            f"node config has neither {P.NODE_SITE!r} (deployment) nor {P.PARTITION_ID!r} (simulation); "
            f"got keys {sorted(node_config)}"
        )
    return Hospital(idx, names[idx], stores_folder(cfg, node_config) / names[idx])


def claimed_hospital(cfg: AppConfig, node_config: Mapping[str, object]) -> str:
    """The hospital a node says it holds, unchecked (the server checks it against the run's hospitals).

    A deployed node's ``site`` as written (a name, or an index into the run's hospitals); a
    simulated node's ``partition-id``-th training hospital.
    """
    if P.NODE_SITE in node_config:
        value = str(node_config[P.NODE_SITE])
        names = hospitals(cfg)
        return names[int(value)] if value.isdigit() and int(value) < len(names) else value
    return hospital_of(cfg, node_config).name


def prepare_hint(cfg: AppConfig, hospital: Hospital) -> str:
    """The command that prepares the data a node is missing."""
    if cfg.data.stores is not None:
        return (
            f"ingest hospital {hospital.name!r}'s ECG export first (fedami ingest --data manifest --manifest "
            f"EXPORT.csv --data-dir DIR; README: 'Preparing a hospital's data') and point the node at the folder "
            f'holding {hospital.name}/ (--node-config "data-dir=...")'
        )
    flags = {"n-sites": "--clients", "n-ecgs": "--n-ecgs", "difficulty": "--difficulty", "seed": "--seed"}
    defaults = F.flatten(CohortConfig())
    changed = {k: v for k, v in F.flatten(cfg.cohort).items() if v != defaults[k]}
    args = [f"{flags[k]} {v}" if k in flags else f"--set data.cohort.{k}={v}" for k, v in changed.items()]
    where = cfg.data.dir or default_data_dir()
    return f"prepare it first: fedami ingest --data synthetic {' '.join(args)} --data-dir {where}".replace("  ", " ")


def _version(store: Path) -> tuple[int, int]:
    """Which preparation of the store is on disk (its manifest's mtime and size): a re-ingested store is read anew
    by a long-lived process (the hospital's worker) instead of being served from the cache."""
    st = (store / MANIFEST_FILE).stat()
    return st.st_mtime_ns, st.st_size


@lru_cache(maxsize=8)
def _spec(store: Path, target_fs: int, version: tuple[int, int]) -> InputSpec:
    return store_spec(SiteStore.open(store), target_fs)


def hospital_spec(cfg: AppConfig, hospital: Hospital) -> InputSpec:
    """How the hospital's training data were prepared for the model (the model card's input spec)."""
    hospital_split(cfg, hospital, "train")  # the same clear error when the store is missing
    return _spec(hospital.store, cfg.train.target_fs, _version(hospital.store))


@lru_cache(maxsize=8)
def _split(store: Path, split: str, target_fs: int, version: tuple[int, int]) -> EcgArrays:
    return load_split(SiteStore.open(store), split, target_fs)


def hospital_split(cfg: AppConfig, hospital: Hospital, split: str) -> EcgArrays:
    """One split of the hospital's prepared store at the model's rate (kept in memory across rounds)."""
    if not (hospital.store / MANIFEST_FILE).is_file():
        raise NodeDataError(
            f"hospital {hospital.name!r} has no prepared data at {hospital.store}; {prepare_hint(cfg, hospital)}"
        )
    return _split(hospital.store, split, cfg.train.target_fs, _version(hospital.store))


def round_seed(seed: int, site: int, server_round: int) -> int:
    """Seed of one hospital's local training in one round: independent of process and node order."""
    return int(np.random.SeedSequence([seed, site, server_round]).generate_state(1)[0])


def local_train_config(cfg: AppConfig, seed: int) -> TrainConfig:
    """A hospital's training settings: the run's, with its share of the batch, its threads and its seed."""
    batch = cfg.federated.local_batch(cfg.train.batch_size, len(hospitals(cfg)))
    return cfg.train.model_copy(
        update={"batch_size": batch, "num_threads": cfg.federated.hospital_threads, "seed": seed}
    )


class LocalTraining(Frozen):
    """What a hospital trains with in one round; the training reply carries it back to the server."""

    hospital: str
    server_round: int
    train: TrainConfig
    epochs: int
    first_epoch: int
    """The round's first epoch in the run's cosine schedule (0-based)."""
    total_epochs: int
    """Epochs of the whole schedule: rounds x local epochs."""
    lr_first: float
    lr_last: float
    proximal_mu: float


def planned_training(cfg: AppConfig, hospital: Hospital, server_round: int, prox_mu: float) -> LocalTraining:
    """Exactly what ``hospital`` trains with in ``server_round`` under the run config ``cfg``.

    The round's epochs take their place in the run's cosine learning-rate schedule over rounds x
    local epochs, as pooled training over the same passes decays it; the seed comes from
    ``(train.seed, hospital, round)``.
    """
    epochs = cfg.federated.local_epochs
    first, total = (server_round - 1) * epochs, max(server_round, cfg.federated.rounds) * epochs
    train = local_train_config(cfg, round_seed(cfg.train.seed, hospital.index, server_round))
    return LocalTraining(
        hospital=hospital.name,
        server_round=server_round,
        train=train,
        epochs=epochs,
        first_epoch=first,
        total_epochs=total,
        lr_first=train.lr * cosine_factor(first, total),
        lr_last=train.lr * cosine_factor(first + epochs - 1, total),
        proximal_mu=prox_mu,
    )


@dataclass(frozen=True)
class LocalTrainResult:
    state: StateDict
    num_examples: int
    num_positives: int
    train_loss: float
    trained_with: LocalTraining


@dataclass(frozen=True)
class LocalEvalResult:
    """Everything a hospital reports about an evaluation: counts, never a per-record value."""

    num_examples: int
    histogram: H.ScoreHistogram
    counts: H.ThresholdCounts | None
    n_patients: int
    replicates: H.ReplicateHistograms | None
    subgroups: tuple[H.SubgroupPart, ...] | None = None
    calibration: CalibrationSums | None = None


def local_train(state: StateDict, data: EcgArrays, plan: LocalTraining) -> LocalTrainResult:
    """Start from the global weights and train as ``plan`` says (FedProx term if ``plan.proximal_mu``)."""
    cfg = plan.train
    seed_everything(cfg.seed)
    model = build_model(cfg)
    model.load_state_dict(state)
    losses = train_epochs(
        model,
        data,
        cfg,
        epochs=plan.epochs,
        seed=cfg.seed,
        prox_mu=plan.proximal_mu,
        schedule=(plan.first_epoch, plan.total_epochs),
    )
    return LocalTrainResult(model.state_dict(), len(data), data.n_positive, float(np.mean(losses)), plan)


def local_evaluate(
    state: StateDict,
    data: EcgArrays,
    cfg: TrainConfig,
    threshold: float | None = None,
    *,
    n_boot: int | None = None,
    boot_seed: int = 0,
) -> LocalEvalResult:
    """Score the local split and reduce it to a score histogram (and counts at ``threshold``).

    With ``n_boot`` (the test round) also the hospital's patient-bootstrap replicates as histograms, drawn
    with ``boot_seed``, the same per age band and sex (each over its own patients), and the calibration sums.
    """
    torch.set_num_threads(cfg.num_threads)
    model = build_model(cfg)
    model.load_state_dict(state)
    scores = predict(model, data, cfg)
    return score_summary(data.y, scores, data.meta, threshold, n_boot=n_boot, boot_seed=boot_seed)


def score_summary(
    y: np.ndarray,
    scores: np.ndarray,
    meta: pd.DataFrame,
    threshold: float | None = None,
    *,
    n_boot: int | None = None,
    boot_seed: int = 0,
) -> LocalEvalResult:
    """What a hospital may send of its scored split (``meta``: ``patient_id``, and ``age`` and ``sex`` with
    ``n_boot``): see :func:`local_evaluate`."""
    counts = H.threshold_counts(y, scores, threshold) if threshold is not None else None
    patients = meta["patient_id"].to_numpy()
    hist, n_patients = H.histogram(y, scores), int(meta["patient_id"].nunique())
    if n_boot is None:
        return LocalEvalResult(len(y), hist, counts, n_patients, None)
    age, sex = meta["age"].to_numpy(), meta["sex"].to_numpy()
    return LocalEvalResult(
        len(y),
        hist,
        counts,
        n_patients,
        H.replicate_histograms(y, scores, patients, n_boot, boot_seed),
        H.subgroup_parts(y, scores, age, sex, patients, n_boot, boot_seed),
        calibration_sums(y, scores),
    )


def evaluation_metrics(res: LocalEvalResult, site_index: int) -> dict[str, H.MetricValue]:
    """An evaluation reply's metric record (:mod:`common.federation.protocol` keys) from ``res``; its bootstrap
    replicates travel as arrays beside it (:func:`common.federation.histograms.replicate_arrays`)."""
    metrics: dict[str, H.MetricValue] = {
        P.NUM_EXAMPLES: res.num_examples,
        P.NUM_PATIENTS: res.n_patients,
        P.SITE_INDEX: site_index,
        P.POS_HIST: res.histogram.pos.tolist(),
        P.NEG_HIST: res.histogram.neg.tolist(),
    }
    if res.counts is not None:
        metrics.update({P.TP: res.counts.tp, P.FP: res.counts.fp, P.TN: res.counts.tn, P.FN: res.counts.fn})
    if res.replicates is not None:
        reps = res.replicates
        metrics[P.REP_BINS] = reps.bins.tolist()
    if res.subgroups is not None:
        metrics.update(H.subgroup_metrics(res.subgroups))
    if res.calibration is not None:
        metrics.update(H.calibration_metrics(res.calibration))
    return metrics
