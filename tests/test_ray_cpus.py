"""How many client processes the simulation asks Ray for."""

from __future__ import annotations

import os

import pytest

from sim.simulation import ray_cpus


@pytest.mark.parametrize(("cores", "hospitals", "expected"), [(2, 3, 2), (16, 3, 3), (2, 2, 2), (1, 5, 1)])
def test_ray_gets_the_real_cores_at_most_one_per_hospital(
    monkeypatch: pytest.MonkeyPatch, cores: int, hospitals: int, expected: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)

    assert ray_cpus(hospitals) == expected
