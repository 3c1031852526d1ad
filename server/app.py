"""Flower ServerApp: FedAvg over the hospitals (the full strategy registry comes later)."""

from __future__ import annotations

import time

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from common import protocol as P
from common.engine import seed_everything
from common.models import create_model
from common.protocol import settings_from_run_config

app = ServerApp()


def wait_for_hospitals(grid: Grid, n_sites: int, timeout_s: float = P.NODE_WAIT_S) -> list[int]:
    """Node ids once ``n_sites`` hospitals are connected; a clear error instead of waiting forever."""
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) >= n_sites:
            return nodes
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{len(nodes)} of {n_sites} hospitals connected after {timeout_s:.0f} s: start {n_sites} "
                f"supernodes (options.num-supernodes = {n_sites}) or run with {P.NUM_SITES}={len(nodes)}"
            )
        time.sleep(1.0)


@app.main()
def main(grid: Grid, context: Context) -> None:
    cohort, cfg, _ = settings_from_run_config(context.run_config)
    n = cohort.n_sites
    wait_for_hospitals(grid, n)
    seed_everything(cfg.seed)
    model = create_model(cfg.model)
    strategy = FedAvg(min_train_nodes=n, min_evaluate_nodes=n, min_available_nodes=n)
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(model.state_dict()),
        train_config=ConfigRecord({}),
        num_rounds=int(context.run_config[P.NUM_SERVER_ROUNDS]),
    )
    model.load_state_dict(result.arrays.to_torch_state_dict())
