"""The one place that calls Flower's simulation runtime (``run_simulation`` is deprecated in 1.42)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

from client.handlers import make_client_app
from common.federation.outputs import FederatedOutputs
from server.app import make_server_app


def ray_cpus(n_nodes: int) -> int:
    """CPUs to tell Ray about: the cores this process may use, at most one per hospital.

    Each client asks for one CPU, so this is the number of client processes. Claiming more CPUs
    than there are cores makes every hospital's process time-slice the cores: the largest hospital
    then finishes each round last, on one core, while the other cores idle. With the true count a
    process that finishes takes the next hospital instead (per-round time 1.08 -> 1.01 of a pooled
    epoch on 2 cores with 3 hospitals, ``benchmarks/bench_federation.py``).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n_nodes, cores))


def run_federation(
    run_config: Mapping[str, str | int | float | bool], n_nodes: int, *, verbose: bool = False
) -> FederatedOutputs:
    """Run the ServerApp and one ClientApp per training hospital (Ray backend, one CPU each).

    ``run_config`` is the fold's flat :class:`common.config.AppConfig` (it must set ``output.dir``);
    returns the run's outputs read back from there.
    """
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault(
        "PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning,ignore:::wfdb.io.annotation"
    )  # Ray workers inherit it
    from flwr.simulation import run_simulation

    out = run_config.get("output.dir")
    if not out:
        raise ValueError("run_federation needs output.dir in the run config for its results")
    backend = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": ray_cpus(n_nodes), "include_dashboard": False},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"ray\.")  # a tip about GPU env vars
        run_simulation(
            server_app=make_server_app(run_config),
            client_app=make_client_app(run_config),
            num_supernodes=n_nodes,
            backend_config=backend,  # type: ignore[arg-type]
            verbose_logging=verbose,
        )
    try:
        return FederatedOutputs.read(Path(str(out)))
    except FileNotFoundError as err:
        raise RuntimeError(str(err)) from None
