"""Typed, frozen configuration parsed once at the edge and saved beside every result."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SamplingRate = Literal[100, 250, 500]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SiteSpec(_Frozen):
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
    shift. For three sites the sizes are 45/35/20 % of the cohort.
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


class CohortConfig(_Frozen):
    """The built-in synthetic multi-hospital cohort.

    ``difficulty`` (0 = easy, 1 = hard) scales the ST-change amplitude of AMI positives, the share
    of subtle (non-ST-elevation) positives, the share of ST-T mimics among negatives and the noise.
    At the default 0.5 a simple ST-level feature model lands well between chance and perfection.
    """

    seed: int = 0
    n_sites: int = Field(3, ge=2)
    n_ecgs: int = Field(4000, ge=20, description="ECGs over all sites")
    difficulty: float = Field(0.5, ge=0.0, le=1.0)
    ecgs_per_patient: float = Field(
        1.5, ge=1.0, le=5.0, description="mean ECGs per patient (the study: 145,656/96,813)"
    )
    duration_s: float = Field(10.0, gt=2.0, le=60.0)
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    sites: tuple[SiteSpec, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> CohortConfig:
        if self.sites is not None and len(self.sites) != self.n_sites:
            raise ValueError(f"n_sites={self.n_sites} but {len(self.sites)} site specs given")
        if self.sites is not None and len({s.name for s in self.sites}) != len(self.sites):
            raise ValueError("site names must be unique")
        if abs(sum(self.split_fractions) - 1.0) > 1e-9 or min(self.split_fractions) <= 0:
            raise ValueError(f"split_fractions must be positive and sum to 1: {self.split_fractions}")
        return self

    def site_specs(self) -> tuple[SiteSpec, ...]:
        return self.sites if self.sites is not None else default_sites(self.n_sites)

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
        if min(sizes) < 10:
            raise ValueError(f"n_ecgs={self.n_ecgs} leaves a site with fewer than 10 ECGs: {sizes}")
        return tuple(sizes)

    def key(self) -> str:
        """Short content hash: same config, same key, same cohort on disk."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


class TrainConfig(_Frozen):
    """Centralised (pooled or local-only) training settings."""

    model: str = "cnn1d"
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    target_fs: SamplingRate = 100
    seed: int = 0
    num_threads: int = Field(2, ge=1, description="torch intra-op threads")
    loss: Literal["bce", "focal"] = Field("bce", description="class-weighted BCE or focal loss")
    pos_weight: Literal["auto", "none"] = Field("auto", description="auto: weight positives by negatives/positives")
    focal_gamma: float = Field(2.0, ge=0)
    patience: int | None = Field(None, ge=1, description="stop after this many epochs without a better val AUROC")
    crop_s: float | None = Field(
        None, gt=0, description="train on random crops of this length; evaluate on sliding windows (PTB-XL benchmark)"
    )
    window_aggregate: Literal["mean", "max"] = "mean"
    progress: bool = Field(False, description="a progress bar over the batches of each epoch")


DEFAULT_ROUNDS: Final[int] = 15
"""Federated rounds (and so pooled epochs) of ``sim/run.py``, the run config and the benchmark: by 15
passes both arms' validation AUROC has levelled off on the default cohort; after 5 they were still
improving (benchmarks/bench_federation.py)."""


class FederatedConfig(_Frozen):
    """The federated arm: strategy, rounds, local work per round."""

    strategy: str = "fedavg"
    rounds: int = Field(DEFAULT_ROUNDS, ge=1, description="rounds of local_epochs each")
    local_epochs: int = Field(1, ge=1)
    local_batch_size: int | None = Field(
        None, ge=2, description="a hospital's batch size; None: the pooled batch size / the training hospitals"
    )
    proximal_mu: float = Field(0.01, ge=0, description="FedProx: the client adds mu/2 * ||w - w_global||^2")
    server_lr: float | None = Field(
        None, gt=0, description="FedAdam/FedYogi eta (default 0.01), FedAvgM server learning rate (default 1.0)"
    )
    server_momentum: float = Field(0.9, ge=0, lt=1, description="FedAvgM")
    trim_beta: float = Field(0.2, ge=0, lt=0.5, description="FedTrimmedAvg: fraction cut at each end")
    krum_malicious: int = Field(0, ge=0, description="Krum: nodes assumed malicious")

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


class RunConfig(_Frozen):
    """Everything one ``sim/run.py`` invocation does; saved as ``config.json`` with its results."""

    cohort: CohortConfig = CohortConfig()
    real_data: dict[str, str] | None = Field(
        None,
        description="real data instead of the synthetic cohort: {'kind': 'ptbxl', 'root', 'filtered'} "
        "or {'kind': 'manifest', 'path'}",
    )
    train: TrainConfig = TrainConfig()
    federated: FederatedConfig = FederatedConfig()
    protocol: Literal["gah", "loho"] = "gah"
    arms: tuple[Literal["federated", "pooled", "local"], ...] = ("federated", "pooled", "local")
    n_boot: int = Field(1000, ge=10, description="patient-bootstrap replicates for AUROC CIs")
    data_dir: Path
    out_dir: Path
    resume: Path | None = Field(None, description="a federated output folder to continue (GAH only)")

    @model_validator(mode="after")
    def _resume_needs_one_fold(self) -> RunConfig:
        if self.resume is not None and self.protocol != "gah":
            raise ValueError("--resume continues one federated run; use it with the GAH protocol")
        return self

    def save(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n")
