from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from common.config import CohortConfig, FederatedConfig, SiteSpec, default_sites


@pytest.mark.parametrize("n", [2, 3, 4, 7])
def test_default_sites_are_distinct_hospitals(n: int) -> None:
    sites = default_sites(n)

    assert len(sites) == n
    assert len({s.name for s in sites}) == n
    assert all(0.06 <= s.prevalence <= 0.10 for s in sites)
    assert sites[0].weight > sites[-1].weight
    assert {s.fs for s in sites} <= {100, 250, 500}


def test_three_default_sites_follow_the_plan() -> None:
    sizes = CohortConfig(n_ecgs=1000).site_sizes()

    # weights 1, 1/1.55, 1/2.1 of 1000 ECGs, largest remainders rounded up
    assert sizes == (471, 304, 225)
    assert [s.fs for s in default_sites(3)] == [500, 250, 100]


def test_cohort_needs_two_sites_and_consistent_specs() -> None:
    with pytest.raises(ValidationError):
        CohortConfig(n_sites=1)
    with pytest.raises(ValidationError, match="site specs"):
        CohortConfig(n_sites=3, sites=default_sites(2))
    with pytest.raises(ValidationError, match="leaves one with 2 ECGs; each needs at least 10"):
        CohortConfig(n_sites=10, n_ecgs=40)  # refused when made, before any generation


def test_lowpass_must_be_below_nyquist() -> None:
    with pytest.raises(ValidationError, match="Nyquist"):
        SiteSpec(name="x", weight=1, prevalence=0.1, fs=100, age_mean=60, age_sd=10, male_fraction=0.5, lowpass_hz=60)


def test_key_changes_with_content_and_generator_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from common.synthetic import key

    assert key.cohort_key(CohortConfig(seed=1)) == key.cohort_key(CohortConfig(seed=1))
    assert key.cohort_key(CohortConfig(seed=1)) != key.cohort_key(CohortConfig(seed=2))
    assert key.cohort_key(CohortConfig(difficulty=0.4)) != key.cohort_key(CohortConfig(difficulty=0.5))
    before = key.synthetic_cohort_dir(CohortConfig(), Path("/d"))
    monkeypatch.setattr(key, "GENERATOR_VERSION", key.GENERATOR_VERSION + 1)
    assert key.synthetic_cohort_dir(CohortConfig(), Path("/d")) != before


def test_config_is_frozen() -> None:
    cfg = CohortConfig()
    with pytest.raises(ValidationError):
        cfg.seed = 3  # type: ignore[misc]


def test_a_hospital_batch_is_the_pooled_batch_shared_among_the_hospitals() -> None:
    auto, fixed = FederatedConfig(), FederatedConfig(local_batch_size=16)

    assert [auto.local_batch(64, k) for k in (1, 2, 3, 5)] == [64, 32, 21, 13]
    assert auto.local_batch(4, 3) == 2  # BatchNorm needs two records
    assert fixed.local_batch(64, 3) == 16
    with pytest.raises(ValidationError):
        FederatedConfig(local_batch_size=1)
