"""Every setting of fedami with its one default: typed, frozen pydantic sections.

The command lines, the Flower run config (``[tool.flwr.app.config]`` in pyproject.toml) and the
benchmarks all derive their defaults from these classes (see :mod:`common.config.flat` and
:mod:`common.config.options`); an unknown key is an error everywhere.

Sections
--------
* :class:`CohortConfig` (with :class:`SiteSpec`): the built-in synthetic cohort;
* :class:`PreprocessConfig`, :class:`QCConfig`, :class:`IngestConfig`: how real records become a store;
* :class:`SyntheticData`, :class:`PtbxlData`, :class:`ManifestData`, :class:`ChallengeData`: the data a
  run reads, one of them (:data:`DataSource`);
* :class:`TrainConfig`: how a model is optimised, the same for every arm;
* :class:`FederatedConfig`: the federated arm (strategy, rounds, a hospital's share of the work);
* :class:`AppConfig`: what the Flower ServerApp and ClientApps read (their run config);
* :class:`RunConfig`: the federated / pooled / local-only comparison (``fedami run``);
* :class:`StudyConfig`: the pooled model study (``fedami study``);
* :class:`PrepareConfig`: preparing a data source's stores (``fedami ingest``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SamplingRate = Literal[100, 250, 500]
PtbxlLabel = Literal["mi", "acute", "normal"]
ChallengeLabel = Literal["mi", "acute"]
Arm = Literal["federated", "pooled", "local"]
UpdateCompression = Literal["none", "float16", "int8"]


class Frozen(BaseModel):
    """Base of every section: immutable, and an unknown field is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------------------------------- synthetic cohort


class SiteSpec(Frozen):
    """One synthetic hospital: its size, case mix and ECG device."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    weight: float = Field(gt=0, description="share of the cohort's ECGs (normalised over sites)")
    prevalence: float = Field(gt=0, lt=1, description="target fraction of AMI-positive ECGs")
    fs: SamplingRate = Field(description="device sampling rate in Hz")
    age_mean: float = Field(ge=18, le=95)
    age_sd: float = Field(gt=0, le=30)
    male_fraction: float = Field(ge=0, le=1)
    gain: float = Field(1.0, gt=0.5, lt=1.5, description="device amplitude calibration factor")
    muscle_noise_mv: float = Field(0.015, ge=0, description="EMG noise SD before filtering")
    wander_mv: float = Field(0.1, ge=0, description="baseline wander amplitude")
    hum_mv: float = Field(0.0, ge=0, description="50 Hz mains interference amplitude")
    highpass_hz: float = Field(0.05, ge=0.0, lt=1.0)
    lowpass_hz: float = Field(40.0, gt=10.0)
    resolution_uv: float = Field(1.0, gt=0, description="ADC quantisation step in microvolts")

    @model_validator(mode="after")
    def _filter_below_nyquist(self) -> SiteSpec:
        if self.lowpass_hz >= self.fs / 2:
            raise ValueError(
                f"site {self.name!r}: lowpass_hz={self.lowpass_hz} must be below the Nyquist "
                f"frequency {self.fs / 2} Hz of fs={self.fs}"
            )
        return self


_DEVICE_BY_FS: dict[int, dict[str, float]] = {
    # fs: lowpass, hum (a 100 Hz device's anti-alias filter removes 50 Hz), resolution
    500: {"lowpass_hz": 150.0, "hum_mv": 0.02, "resolution_uv": 1.0},
    250: {"lowpass_hz": 100.0, "hum_mv": 0.01, "resolution_uv": 2.5},
    100: {"lowpass_hz": 40.0, "hum_mv": 0.0, "resolution_uv": 5.0},
}


def default_sites(n_sites: int) -> tuple[SiteSpec, ...]:
    """Deterministic hospital specs for ``n_sites`` sites.

    Sites differ in size (largest first), AMI prevalence (6-10 %), age and sex mix, sampling rate
    (500/250/100 Hz in turn), gain, noise and filtering, so federated training sees a real non-IID
    shift. For three sites the sizes are 47/30/22 % of the cohort.
    """
    if n_sites < 2:
        raise ValueError(f"a multi-hospital cohort needs at least 2 sites, got {n_sites}")
    specs = []
    for i in range(n_sites):
        frac = i / (n_sites - 1)
        fs = (500, 250, 100)[i % 3]
        specs.append(
            SiteSpec(
                name=f"hospital_{chr(ord('a') + i)}" if n_sites <= 26 else f"hospital_{i:03d}",
                weight=round(1.0 / (1.0 + 0.55 * i), 4),
                prevalence=round(0.06 + 0.04 * frac, 4),
                fs=fs,
                age_mean=round(62.0 + 8.0 * frac, 2),
                age_sd=round(17.0 - 3.0 * frac, 2),
                male_fraction=round(0.52 + 0.06 * frac, 3),
                gain=round(1.0 + 0.06 * ((i % 3) - 1), 3),
                muscle_noise_mv=round(0.010 + 0.015 * frac, 4),
                wander_mv=round(0.06 + 0.10 * frac, 3),
                highpass_hz=0.05 if i % 2 == 0 else 0.5,
                **_DEVICE_BY_FS[fs],
            )
        )
    return tuple(specs)


STUDY_ECGS: Final[int] = 145_656
STUDY_PATIENTS: Final[int] = 96_813
"""The clinical study's cohort: ECGs and patients at its three hospitals (``--preset paper``)."""

MIN_SITE_ECGS = 10
"""The fewest ECGs a synthetic hospital is generated with (a run also checks, before training, that
every training hospital's splits hold the AMI positives training needs)."""


class CohortConfig(Frozen):
    """The built-in synthetic multi-hospital cohort.

    ``difficulty`` (0 = easy, 1 = hard) scales the ST-change amplitude of AMI positives, the share
    of subtle (non-ST-elevation) positives, the share of ST-T mimics among negatives and the noise.
    At the default 0.5 a simple ST-level feature model lands well between chance and perfection.
    """

    seed: int = Field(0, ge=0, description="seeds the generator and the cohort's splits")
    n_sites: int = Field(3, ge=2, description="hospitals")
    n_ecgs: int = Field(4000, ge=20, description="ECGs over all hospitals")
    difficulty: float = Field(0.5, ge=0.0, le=1.0, description="0 (easy) to 1 (hard)")
    ecgs_per_patient: float = Field(
        1.5, ge=1.0, le=5.0, description="mean ECGs per patient (the study: 145,656/96,813)"
    )
    duration_s: float = Field(10.0, gt=2.0, le=60.0, description="record length in seconds")
    split_fractions: tuple[float, float, float] = Field(
        (0.7, 0.15, 0.15), description="train, validation and test shares of each hospital's ECGs"
    )
    sites: tuple[SiteSpec, ...] | None = Field(None, description="explicit hospital specs (default: default_sites)")
    store_fs: SamplingRate | None = Field(
        None,
        description="store every hospital at this rate (e.g. the training rate, to save disk); a hospital "
        "recording below it keeps its own; None: each at its device's rate",
    )

    @model_validator(mode="after")
    def _check(self) -> CohortConfig:
        if self.sites is not None and len(self.sites) != self.n_sites:
            raise ValueError(f"n_sites={self.n_sites} but {len(self.sites)} site specs given")
        if self.sites is not None and len({s.name for s in self.sites}) != len(self.sites):
            raise ValueError("site names must be unique")
        if abs(sum(self.split_fractions) - 1.0) > 1e-9 or min(self.split_fractions) <= 0:
            raise ValueError(f"split_fractions must be positive and sum to 1: {self.split_fractions}")
        self.site_sizes()  # every hospital needs enough ECGs for three splits: say so before any work
        return self

    def site_specs(self) -> tuple[SiteSpec, ...]:
        return self.sites if self.sites is not None else default_sites(self.n_sites)

    def site_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.site_specs())

    def site_sizes(self) -> tuple[int, ...]:
        """ECGs per site: the weights applied to ``n_ecgs``, largest remainders rounded up."""
        specs = self.site_specs()
        total_w = sum(s.weight for s in specs)
        raw = [self.n_ecgs * s.weight / total_w for s in specs]
        sizes = [int(r) for r in raw]
        for i in sorted(range(len(raw)), key=lambda j: raw[j] - sizes[j], reverse=True):
            if sum(sizes) >= self.n_ecgs:
                break
            sizes[i] += 1
        if min(sizes) < MIN_SITE_ECGS:
            enough = math.ceil(MIN_SITE_ECGS * total_w / min(s.weight for s in specs)) + 1
            raise ValueError(
                f"n_ecgs={self.n_ecgs} over {len(specs)} hospitals leaves one with {min(sizes)} ECGs; each needs at "
                f"least {MIN_SITE_ECGS}: raise n_ecgs (to about {enough}) or lower n_sites"
            )
        return tuple(sizes)


# ------------------------------------------------------------------------------------------------ real data


class PreprocessConfig(Frozen):
    """How raw records become store records (recorded with every ingest)."""

    target_fs: SamplingRate = Field(100, description="the store's sampling rate in Hz")
    bandpass_hz: tuple[float, float] | None = Field((0.5, 40.0), description="band-pass edges in Hz; None for off")
    notch_hz: float | None = Field(None, gt=0, description="mains notch, e.g. 50 or 60; None for off")
    length_s: float = Field(10.0, gt=0, description="records are centre-cropped or zero-padded to this length")
    normalise: Literal["none", "per_record", "site_train"] = Field(
        "none",
        description="per-lead standardisation: none (keep mV), per record, or with statistics fitted on each "
        "site's training split only (applied when the split is loaded)",
    )

    @model_validator(mode="after")
    def _check(self) -> PreprocessConfig:
        if self.bandpass_hz is not None and not 0 < self.bandpass_hz[0] < self.bandpass_hz[1]:
            raise ValueError(f"bandpass_hz must be (low, high) with 0 < low < high, got {self.bandpass_hz}")
        return self


class QCConfig(Frozen):
    """Thresholds of the quality checks (saved with every ingest)."""

    min_duration_s: float = Field(5.0, gt=0, description="shorter records are rejected as too short")
    flat_ptp: float = Field(0.01, ge=0, description="a lead whose peak-to-peak is below this is flat")
    saturation_run_s: float = Field(0.08, gt=0, description="a run this long at a lead's extreme is clipping")
    fs_range_hz: tuple[float, float] = Field((50.0, 2000.0), description="accepted sampling rates in Hz")
    age_range: tuple[float, float] = Field((0.0, 110.0), description="accepted ages in years")
    amplitude_mv: tuple[float, float] = Field(
        (0.2, 4.0),
        description="accepted median over the 12 leads of a lead's peak-to-peak in mV after a 0.5-40 Hz band-pass "
        "(PTB-XL's records: 0.45-3.7); outside it a gain or unit is wrong",
    )
    require_label: bool = Field(True, description="reject records without a label")


OTHER_SITE = "other"
"""The hospital that sites smaller than ``min_site_records`` are merged into."""


class IngestConfig(Frozen):
    """Everything that decides what an ingest produces (part of the cache key)."""

    preprocess: PreprocessConfig = PreprocessConfig()
    qc: QCConfig = QCConfig()
    min_site_records: int = Field(0, ge=0, description=f"sites with fewer records are merged into {OTHER_SITE!r}")
    split_fractions: tuple[float, float, float] = Field(
        (0.7, 0.15, 0.15), description="train, validation and test shares where the source has no folds"
    )
    seed: int = Field(0, ge=0, description="seeds the patient-disjoint splits")


class SyntheticData(Frozen):
    """The built-in synthetic cohort (generated on first use, then reused)."""

    kind: Literal["synthetic"] = "synthetic"
    cohort: CohortConfig = CohortConfig()


PTBXL_INGEST = IngestConfig(preprocess=PreprocessConfig(normalise="per_record"), min_site_records=100)
"""PTB-XL's ingest: records standardised per record (the shared filtered array is z-scored, so raw
records pooled with it must be too), and recording sites under 100 records merged into ``other``."""


class PtbxlData(Frozen):
    """Real PTB-XL: raw WFDB records (and optionally the shared filtered array), hospitals by
    recording site (or device), PTB-XL's folds as the splits."""

    kind: Literal["ptbxl"] = "ptbxl"
    root: Path = Field(description="PTB-XL's folder: ptbxl_database.csv (or metadata/) and records100/records500")
    filtered: Path | None = Field(None, description="also the shared filtered array (index.csv + signals.npy)")
    rate: Literal[100, 500] = Field(100, description="read records100 or records500")
    label: PtbxlLabel = Field("mi", description="mi: any MI statement; acute: INJ* or stadium I-II; normal: NORM")
    likelihood: float = Field(50.0, ge=0, le=100, description="an SCP statement counts at this likelihood or more")
    hospital: Literal["site", "device"] = Field("site", description="what defines a hospital")
    ingest: IngestConfig = PTBXL_INGEST


class ManifestData(Frozen):
    """A hospital network's own WFDB exports listed in one CSV manifest (a ``site`` column names the hospital)."""

    kind: Literal["manifest"] = "manifest"
    path: Path = Field(description="the CSV manifest")
    sex_codes: Literal["letters", "ptbxl", "iso5218"] = Field(
        "letters",
        description="how the sex column is written: letters or words (M/F, male/female), ptbxl (0 male, 1 female) "
        "or iso5218 (1 male, 2 female, 0/9 unknown); numeric codes need one of the last two",
    )
    ingest: IngestConfig = IngestConfig()


class ChallengeData(Frozen):
    """PhysioNet/CinC 2020-2021 challenge folders (``.hea`` + ``.mat``; one subfolder per hospital)."""

    kind: Literal["challenge"] = "challenge"
    root: Path = Field(description="the folder of challenge records")
    label: ChallengeLabel = Field("mi", description="mi: any MI code; acute: acute MI codes")
    ingest: IngestConfig = IngestConfig()


DataSource = Annotated[SyntheticData | PtbxlData | ManifestData | ChallengeData, Field(discriminator="kind")]
DATA_KINDS: tuple[str, ...] = ("synthetic", "ptbxl", "manifest", "challenge")


# ------------------------------------------------------------------------------------------------ training


DEFAULT_CROP_S = 2.5
"""Training crop length. With conv_bilstm_attn on the default cohort, 2.5 s crops train the main job in about half
the time of whole 10 s records (README: the main job); the crop-trained model then scores a whole record in one
pass (``window_aggregate = "whole"``), which on PTB-XL's validation fold (3 seeds) scored as well as the mean over
7 half-overlapping windows at about a third of the cost (``benchmarks/bench_model.py``)."""


class TrainConfig(Frozen):
    """How a model is optimised: the same settings for the pooled, local-only and federated arms."""

    model: str = Field("conv_bilstm_attn", description="registered model name (the clinical study's by default)")
    batch_size: int = Field(64, ge=2, description="pooled batch size (a hospital's: see federated.local_batch_size)")
    lr: float = Field(2e-3, gt=0, description="AdamW learning rate at the start of the cosine schedule")
    weight_decay: float = Field(1e-2, ge=0, description="AdamW weight decay")
    target_fs: SamplingRate = Field(100, description="sampling rate the model reads, in Hz")
    seed: int = Field(0, ge=0, description="seeds initialisation and batch order")
    num_threads: int = Field(2, ge=1, description="torch intra-op threads of a centralised arm")
    loss: Literal["bce", "focal"] = Field("bce", description="class-weighted BCE or focal loss")
    pos_weight: Literal["auto", "none"] = Field("auto", description="auto: weight positives by negatives/positives")
    focal_gamma: float = Field(2.0, ge=0, description="focal loss gamma")
    crop_s: float | None = Field(
        DEFAULT_CROP_S,
        gt=0,
        description="train on random crops of this length in seconds (none: on whole records); window_aggregate "
        "says how a record is then scored",
    )
    window_aggregate: Literal["mean", "max", "whole"] = Field(
        "whole",
        description="with crop_s: a record's score is the mean or max over half-overlapping windows, or the "
        "whole record's in one pass",
    )
    auxiliary_targets: tuple[str, ...] = Field(
        (),
        description="metadata columns (0/1, empty if unknown) trained as auxiliary targets of the ECG features, "
        "e.g. PTB-XL's superclasses superclass_NORM,superclass_STTC,superclass_CD,superclass_HYP; the auxiliary "
        "head is dropped when the model scores",
    )
    auxiliary_weight: float = Field(1.0, gt=0, description="weight of the auxiliary targets' loss beside the AMI loss")
    augment_gain: float = Field(
        0.0, ge=0, le=1, description="training only: SD of a random log gain per record and lead (0: off)"
    )
    augment_noise: float = Field(
        0.0, ge=0, le=1, description="training only: white noise of this fraction of each lead's SD (0: off)"
    )
    augment_wander: float = Field(
        0.0,
        ge=0,
        le=1,
        description="training only: a 0.1-0.5 Hz baseline sway of this fraction of each lead's SD (0: off)",
    )
    progress: bool = Field(False, description="a progress bar over the batches of each epoch")

    @model_validator(mode="after")
    def _distinct_auxiliary_targets(self) -> TrainConfig:
        seen = [t for t in self.auxiliary_targets if t.strip()]
        if len(seen) != len(self.auxiliary_targets) or len(set(seen)) != len(seen):
            raise ValueError(f"auxiliary_targets must be distinct non-empty column names, got {self.auxiliary_targets}")
        if "label" in seen:
            raise ValueError("auxiliary_targets cannot include 'label': it is the AMI target itself")
        return self


DEFAULT_ROUNDS = 15
"""Federated rounds (and so pooled epochs): by 15 passes both arms' validation AUROC has levelled off
on the default cohort; after 5 they were still improving (benchmarks/bench_federation.py)."""


class FederatedConfig(Frozen):
    """The federated arm: strategy, rounds, local work per round."""

    strategy: str = Field("fedavg", description="registered strategy name")
    rounds: int = Field(DEFAULT_ROUNDS, ge=1, description="rounds of local_epochs each")
    local_epochs: int = Field(1, ge=1, description="epochs each hospital trains per round")
    local_batch_size: int | None = Field(
        None, ge=2, description="a hospital's batch size; None: the pooled batch size / the training hospitals"
    )
    hospital_threads: int = Field(
        1, ge=1, description="torch threads of a hospital's training (1: a simulated hospital has one CPU)"
    )
    proximal_mu: float = Field(0.01, ge=0, description="FedProx: the client adds mu/2 * ||w - w_global||^2")
    server_lr: float | None = Field(
        None, gt=0, description="FedAdam/FedYogi eta (default 0.01), FedAvgM server learning rate (default 1.0)"
    )
    server_momentum: float = Field(0.9, ge=0, lt=1, description="FedAvgM")
    trim_beta: float = Field(0.2, ge=0, lt=0.5, description="FedTrimmedAvg: fraction cut at each end")
    krum_malicious: int = Field(0, ge=0, description="Krum: nodes assumed malicious")
    hospital_wait_s: float = Field(
        120.0, gt=0, description="how long the server waits for hospitals to connect (before round 1, and after a loss)"
    )
    min_hospitals: int | None = Field(
        None,
        ge=1,
        description="the fewest hospitals a round may go on with after losing some (None: every training hospital)",
    )
    update_compression: UpdateCompression = Field(
        "none",
        description="how a hospital encodes its update (trained minus global weights) for the server: none (float32),"
        " float16, or int8 (one byte per value and a range per tensor); the global weights go down in full",
    )

    @property
    def passes(self) -> int:
        """Passes over each hospital's data: rounds x local epochs (the pooled arm trains as many epochs)."""
        return self.rounds * self.local_epochs

    def local_batch(self, pooled_batch: int, n_hospitals: int) -> int:
        """A hospital's batch size: ``local_batch_size`` if set, else ``pooled_batch / n_hospitals``.

        FedAvg averages the hospitals' updates. With the pooled batch size each of K hospitals takes
        about n / (K * B) optimiser steps per local epoch, so a round moves the global model about as
        far as 1/K of a pooled epoch, and at the same passes over the data the federated arm lags.
        With batch B / K a hospital takes, on average over the hospitals, as many steps per local
        epoch as pooled training takes per epoch.
        """
        if self.local_batch_size is not None:
            return self.local_batch_size
        return max(2, round(pooled_batch / n_hospitals))


# ------------------------------------------------------------------------------------------ the Flower app


class StoresConfig(Frozen):
    """Where a federated run's hospitals find their prepared data (nodes never ingest)."""

    dir: Path | None = Field(
        None, description="root of the prepared stores (default $FEDAMI_DATA_DIR or ~/.cache/fedami)"
    )
    stores: Path | None = Field(
        None, description="the prepared cohort folder, one store per hospital (default: the synthetic cohort under dir)"
    )
    hospitals: tuple[str, ...] = Field((), description="training hospitals in order (default: the cohort's)")

    @model_validator(mode="after")
    def _absolute(self) -> StoresConfig:
        for name in ("dir", "stores"):
            path = getattr(self, name)
            if path is not None and not path.is_absolute():
                raise ValueError(f"data.{name} = {str(path)!r} is relative: give an absolute path (nodes run apart)")
        return self


class OutputConfig(Frozen):
    """Where the server writes checkpoints and results, and what it resumes from (absolute paths)."""

    dir: Path | None = Field(
        None,
        description="the federated run's output folder (default: federated-<time> under $FEDAMI_RUNS_DIR, "
        "else ~/fedami/runs, on the machine that runs the ServerApp)",
    )
    resume: Path | None = Field(None, description="a federated output folder to continue from its last round")

    @model_validator(mode="after")
    def _absolute(self) -> OutputConfig:
        for name in ("dir", "resume"):
            path = getattr(self, name)
            if path is not None and not path.is_absolute():
                raise ValueError(
                    f"output.{name} = {str(path)!r} is relative: it would resolve against the working folder of "
                    "whatever runs the ServerApp (a SuperLink's); give an absolute path"
                )
        return self


class EvaluationConfig(Frozen):
    """How results are estimated."""

    n_boot: int = Field(
        1000,
        ge=10,
        description="patient-bootstrap replicates for CIs (in a federated run each hospital draws its own patients)",
    )


N_BOOT_FIELD = EvaluationConfig.model_fields["n_boot"]


class InferenceConfig(Frozen):
    """How ``fedami predict`` runs a trained network (never what it computes: both engines give the same scores)."""

    engine: Literal["onnx", "torch"] = Field(
        "onnx", description="ONNX Runtime (faster than torch on a CPU: benchmarks/bench_model.py) or torch"
    )
    threads: int | None = Field(None, ge=1, description="CPU threads for scoring (None: torch's default)")


class ExplainConfig(Frozen):
    """What ``fedami explain`` (and ``fedami predict --explain``) draws and checks (``common.explain``)."""

    methods: tuple[Literal["scorecam", "scorecam_delete", "attention", "integrated_gradients"], ...] = Field(
        ("scorecam", "scorecam_delete", "attention", "integrated_gradients"),
        min_length=1,
        description="relevance maps to compute (attention only for models with attention pooling)",
    )
    layer: str | None = Field(None, description="Score-CAM's layer by module name (None: the model's cam_layer)")
    top_k: int = Field(3, ge=1, description="figures of the top-k true positives, false positives, false negatives")
    check_records: int = Field(
        100, ge=5, description="true positives and true negatives (each, at most) whose maps the checks measure"
    )
    predict_max: int = Field(50, ge=1, description="fedami predict --explain: figures of at most this many records")
    dpi: int = Field(100, ge=50, le=600, description="figure resolution (PNG; the PDF is vector)")
    batch_size: int = Field(512, ge=1, description="masked or interpolated inputs scored together")


class AppConfig(Frozen):
    """The Flower ServerApp's and ClientApps' settings: ``[tool.flwr.app.config]`` as typed sections.

    Flattened to dotted kebab-case keys (``train.weight-decay``) by :mod:`common.config.flat`.
    """

    cohort: CohortConfig = CohortConfig()
    data: StoresConfig = StoresConfig()
    train: TrainConfig = TrainConfig()
    federated: FederatedConfig = FederatedConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    output: OutputConfig = OutputConfig()


# ---------------------------------------------------------------------------------------------- experiments


class RunConfig(Frozen):
    """Everything one ``fedami run`` does; saved as ``config.json`` beside its results."""

    data: DataSource = SyntheticData()
    data_dir: Path = Field(description="root of the prepared stores")
    train: TrainConfig = TrainConfig()
    federated: FederatedConfig = FederatedConfig()
    protocol: Literal["gah", "loho"] = Field("gah", description="gah: every hospital trains; loho: one held out")
    arms: tuple[Arm, ...] = Field(("federated", "pooled", "local"), min_length=1, description="arms to run")
    n_boot: int = Field(N_BOOT_FIELD.default, ge=10, description=N_BOOT_FIELD.description)
    out_dir: Path = Field(description="output folder")
    resume: Path | None = Field(None, description="a federated output folder to continue (GAH only)")

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.resume is not None and self.protocol != "gah":
            raise ValueError("--resume continues one federated run; use it with the GAH protocol")
        if self.resume is not None:
            missing = [f for f in ("last.json", "last.pt", "history.json") if not (self.resume / f).is_file()]
            if missing:
                raise ValueError(
                    f"resume: {self.resume} holds no federated checkpoint ({', '.join(missing)} missing); "
                    "give the federated run's folder (<out>/gah/federated)"
                )
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms repeat: {self.arms}")
        return self


class PrepareConfig(Frozen):
    """What one ``fedami ingest`` prepares: the data's stores, and every split at the models' rate."""

    data: DataSource = SyntheticData()
    data_dir: Path = Field(description="root of the prepared stores")
    model_fs: SamplingRate = Field(
        TrainConfig.model_fields["target_fs"].default,
        description="also preprocess every split at this rate (train.target-fs), so a node only maps files",
    )


class StudyConfig(Frozen):
    """Everything one ``fedami study`` does; saved as ``config.json`` beside its report."""

    data: DataSource = SyntheticData()
    data_dir: Path = Field(description="root of the prepared stores")
    train: TrainConfig = TrainConfig()
    models: tuple[str, ...] = Field((), description="models to train (default: every registered one and the baseline)")
    epochs: int = Field(20, ge=1, description="epochs at most per model")
    patience: int | None = Field(6, ge=1, description="stop after this many epochs without a better validation AUROC")
    seeds: int = Field(
        1,
        ge=1,
        description="training seeds per model (train.seed, train.seed + 1, ...): the table adds the mean and SD of "
        "the test AUROC over them and their ensemble (mean score)",
    )
    n_boot: int = Field(N_BOOT_FIELD.default, ge=10, description=N_BOOT_FIELD.description)
    out_dir: Path = Field(description="output folder")
