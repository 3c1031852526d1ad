"""Model cards: what a checkpoint is, how its input must be prepared, what it was trained on.

Every checkpoint fedami writes (``<name>.pt``) has its card beside it (``<name>.card.json``),
readable by people and by :func:`read_card`. ``fedami predict`` prepares raw records exactly as
the card's :class:`InputSpec` says and refuses a store prepared any other way.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import numpy as np
from pydantic import Field, ValidationError
from torch import nn

from common.config import Frozen, PreprocessConfig, SamplingRate, TrainConfig
from common.config import flat as F
from common.data.leads import LEADS, UNITS
from common.data.preprocess import AGE_CENTER, AGE_SCALE, DEMOGRAPHIC_FEATURES
from common.data.store import SiteStore
from common.models.blocks import AUX_HEAD
from common.models.registry import count_parameters, create_model

CARD_VERSION: Final[int] = 1
CARD_SUFFIX: Final[str] = ".card.json"


class CardError(ValueError):
    """A card that is missing, unreadable or does not fit its checkpoint or the input offered."""


class DemographicEncoding(Frozen):
    """How age and sex become the model's demographic vector (``common.data.preprocess.demographics``)."""

    features: tuple[str, ...] = DEMOGRAPHIC_FEATURES
    age_center: float = AGE_CENTER
    age_scale: float = AGE_SCALE
    age: str = "age_z = (age - age_center) / age_scale, 0 with age_missing = 1 when unknown"
    sex: str = "sex_male, sex_female one-hot from M/F; sex_missing = 1 for anything else"


class LeadStats(Frozen):
    """Per-lead mean and SD (canonical lead order) of one hospital's training split."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


class InputSpec(Frozen):
    """The model's input, from the record as read (canonical leads, mV) to the array it scores.

    1. ``preprocessing``: resample to ``preprocessing.target_fs``, band-pass / notch, centre-crop or
       pad to ``preprocessing.length_s``, per-record standardisation if it says so;
    2. with ``normalise = site_train``: standardise with the record's hospital's ``site_stats``;
    3. resample to ``model_fs`` where it differs from ``preprocessing.target_fs``.
    """

    preprocessing: PreprocessConfig
    model_fs: SamplingRate
    leads: tuple[str, ...] = LEADS
    units: str = UNITS
    site_stats: dict[str, LeadStats] = Field(default_factory=dict)
    demographics: DemographicEncoding = DemographicEncoding()

    @property
    def n_samples(self) -> int:
        return round(self.preprocessing.length_s * self.model_fs)

    def same_preparation(self, other: InputSpec) -> list[str]:
        """What differs in how the two specs prepare a record (the hospitals' statistics aside)."""
        mine, theirs = self.model_dump(exclude={"site_stats"}), other.model_dump(exclude={"site_stats"})
        return [f"{key}: {a!r} vs {b!r}" for key, a, b in F.differences(mine, theirs)]


class HospitalData(Frozen):
    """One training hospital's share of the training data."""

    ecgs: int
    positives: int | None = None

    @property
    def prevalence(self) -> float | None:
        return None if self.positives is None or self.ecgs == 0 else self.positives / self.ecgs


class ModelCard(Frozen):
    """Everything needed to use a checkpoint correctly, and where its figures came from."""

    card_version: int = CARD_VERSION
    model: str
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="what rebuilds the network")
    hyperparameters: dict[str, Any] = Field(description="the constructor's settings (defaults and model_kwargs)")
    n_parameters: int
    input: InputSpec
    train: TrainConfig
    """The optimiser settings, and how a record is scored (``crop_s``: mean or max over sliding windows)."""
    arm: str
    training_data: dict[str, HospitalData]
    kept: str
    """Which weights these are (the epoch or round, and how it was chosen)."""
    validation_auroc: float | None
    threshold: float | None
    threshold_source: str
    fedami_version: str
    config_hash: str

    @property
    def training_totals(self) -> HospitalData:
        ecgs = sum(h.ecgs for h in self.training_data.values())
        known = [h.positives for h in self.training_data.values()]
        positives = None if any(p is None for p in known) else sum(p for p in known if p is not None)
        return HospitalData(ecgs=ecgs, positives=positives)


def raw_store_preprocessing(store: SiteStore, model_fs: int) -> PreprocessConfig:
    """What :func:`common.data.arrays.load_split` does to a store of raw device signals (the synthetic cohort):
    resample to the model's rate, then the default 0.5-40 Hz band-pass; the length is the store's."""
    return PreprocessConfig(
        target_fs=model_fs,
        bandpass_hz=(0.5, 40.0),
        notch_hz=None,
        length_s=store.manifest.n_samples / store.manifest.fs,
        normalise="none",
    )


def store_spec(store: SiteStore, model_fs: int) -> InputSpec:
    """The input spec of everything :func:`common.data.arrays.load_split` reads from ``store`` at ``model_fs``."""
    from common.data.arrays import site_train_stats

    pre = store.manifest.preprocessing
    if pre is None:
        return InputSpec(preprocessing=raw_store_preprocessing(store, model_fs), model_fs=model_fs)
    config = PreprocessConfig.model_validate(pre)
    stats = {}
    if config.normalise == "site_train":
        mean, std = site_train_stats(store)
        stats[store.site] = LeadStats(mean=tuple(map(float, mean)), std=tuple(map(float, std)))
    return InputSpec(preprocessing=config, model_fs=model_fs, site_stats=stats)


def common_spec(specs: Mapping[str, InputSpec]) -> InputSpec:
    """One spec for data from several hospitals: their preparation must agree (each keeps its own statistics)."""
    if not specs:
        raise CardError("no training hospital to describe")
    names = list(specs)
    first = specs[names[0]]
    for name in names[1:]:
        diff = first.same_preparation(specs[name])
        if diff:
            raise CardError(
                f"hospitals {names[0]!r} and {name!r} were prepared differently ({'; '.join(diff)}): "
                "a model trained on both has no one input spec; ingest them with the same settings"
            )
    stats = {site: s for spec in specs.values() for site, s in spec.site_stats.items()}
    return first.model_copy(update={"site_stats": stats})


def spec_of_stores(stores: Sequence[SiteStore], model_fs: int) -> InputSpec:
    return common_spec({s.site: store_spec(s, model_fs) for s in stores})


def hyperparameters(model: nn.Module, model_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The network's constructor settings: its signature's defaults, overlaid with the kwargs it was built with."""
    out: dict[str, Any] = {}
    for name, param in inspect.signature(type(model)).parameters.items():
        if param.default is not inspect.Parameter.empty:
            out[name] = param.default
    out.update(model_kwargs)
    return json.loads(json.dumps(out, default=str))


def fedami_version() -> str:
    try:
        return metadata.version("fedami")
    except metadata.PackageNotFoundError:  # a checkout on the path without an install
        return "unknown (not installed)"


def config_hash(config: Any) -> str:
    """sha256 of the canonical JSON of the run's settings (what ``config.json`` beside the run holds)."""
    payload = config.model_dump(mode="json") if hasattr(config, "model_dump") else config
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def make_card(
    model: nn.Module,
    *,
    train: TrainConfig,
    spec: InputSpec,
    arm: str,
    training_data: Mapping[str, HospitalData],
    kept: str,
    validation_auroc: float | None,
    threshold: float | None,
    threshold_source: str,
    config: Any,
    model_kwargs: Mapping[str, Any] | None = None,
) -> ModelCard:
    kwargs = dict(model_kwargs or {})
    return ModelCard(
        model=train.model,
        model_kwargs=kwargs,
        hyperparameters=hyperparameters(model, kwargs),
        n_parameters=count_parameters(model) - count_parameters(getattr(model, AUX_HEAD, nn.Sequential())),
        input=spec,
        train=train,
        arm=arm,
        training_data=dict(training_data),
        kept=kept,
        validation_auroc=validation_auroc,
        threshold=threshold,
        threshold_source=threshold_source,
        fedami_version=fedami_version(),
        config_hash=config_hash(config),
    )


def card_path(checkpoint: Path) -> Path:
    """``best.pt`` -> ``best.card.json``."""
    return checkpoint.with_name(checkpoint.stem + CARD_SUFFIX)


def write_card(checkpoint: Path, card: ModelCard) -> Path:
    path = card_path(checkpoint)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(card.model_dump_json(indent=2) + "\n")
    tmp.replace(path)
    return path


def read_card(path: Path) -> ModelCard:
    """The card of a checkpoint (``x.pt``) or a card file itself (``x.card.json``)."""
    path = Path(path)
    file = path if path.name.endswith(CARD_SUFFIX) else card_path(path)
    if not file.is_file():
        raise CardError(f"{path} has no model card ({file.name} beside it): it cannot be used without one")
    try:
        card = ModelCard.model_validate_json(file.read_text())
    except ValidationError as err:
        raise CardError(f"{file} is not a model card fedami can read: {err.errors()[0]['msg']}") from None
    if card.card_version != CARD_VERSION:
        raise CardError(f"{file} is a version {card.card_version} card; this fedami reads version {CARD_VERSION}")
    if card.input.demographics != DemographicEncoding():
        raise CardError(
            f"{file}: the model encodes age and sex differently from this fedami ({card.input.demographics})"
        )
    return card


def checkpoint_of(card_file: Path) -> Path:
    """The checkpoint a card describes: ``best.card.json`` -> ``best.pt``."""
    return card_file.with_name(card_file.name.removesuffix(CARD_SUFFIX) + ".pt")


def load_model(path: Path) -> tuple[nn.Module, ModelCard]:
    """The network of a checkpoint (or its card), built as the card says, weights loaded, in eval mode."""
    from common.training.engine import load_checkpoint, scoring_state

    path = Path(path)
    card = read_card(path)
    weights = path if path.suffix == ".pt" else checkpoint_of(path)
    if not weights.is_file():
        raise CardError(f"the card {card_path(weights).name} has no checkpoint {weights} beside it")
    model = create_model(card.model, **card.model_kwargs)
    state = load_checkpoint(weights)
    if card.train.auxiliary_targets:  # the auxiliary head trained beside the AMI head; scoring never uses it
        state = scoring_state(state)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CardError(f"{weights} does not hold the weights of {card.model} as its card describes: {first}") from None
    model.eval()
    return model, card


def lead_stats(spec: InputSpec, site: str) -> tuple[np.ndarray, np.ndarray]:
    """A training hospital's standardisation statistics (``normalise = site_train``)."""
    if site not in spec.site_stats:
        raise CardError(
            f"the model standardises each record with its hospital's training statistics; it has them for "
            f"{sorted(spec.site_stats)}, not {site!r}: name one of those (--stats-site)"
        )
    s = spec.site_stats[site]
    return np.asarray(s.mean, np.float64), np.asarray(s.std, np.float64)
