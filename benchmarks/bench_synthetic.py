"""Synthetic cohort generation speed: records/s on one core, per sampling rate.

Usage: python benchmarks/bench_synthetic.py [--n 2048] [--full-cohort N]

Rendering is timed alone (chunks of the plan, kept in memory) and, with ``--full-cohort``, the
whole path into the cohort store (plan, render, write) for an N-ECG three-hospital cohort.
Pins numpy/BLAS to one thread so the figure is per core.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2048, help="ECGs rendered per sampling rate")
    p.add_argument("--full-cohort", type=int, default=0, help="also time a whole N-ECG cohort into the store")
    args = p.parse_args(argv)

    from common.config import CohortConfig
    from common.synthetic.cohort import ensure_synthetic_cohort
    from common.synthetic.generator import CHUNK, plan_site, render_chunk

    cfg = CohortConfig(n_ecgs=max(3 * args.n * 3, 3000))
    print(f"{'fs (Hz)':>8} {'ECGs':>6} {'seconds':>8} {'ECG/s':>8}")
    for site_index in (2, 1, 0):  # 100, 250, 500 Hz in the default cohort
        plan = plan_site(cfg, site_index)
        n = min(args.n, len(plan.metadata))
        render_chunk(plan, 0, min(CHUNK, n), seed=0)  # warm-up
        t0 = time.perf_counter()
        for start in range(0, n, CHUNK):
            render_chunk(plan, start, min(n, start + CHUNK), seed=0)
        dt = time.perf_counter() - t0
        print(f"{plan.site.fs:>8} {n:>6} {dt:>8.2f} {n / dt:>8.0f}")

    if args.full_cohort:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            ensure_synthetic_cohort(CohortConfig(n_ecgs=args.full_cohort), Path(tmp), progress=False)
            dt = time.perf_counter() - t0
        n = args.full_cohort
        print(f"full cohort into the store: {n} ECGs (500/250/100 Hz sites) in {dt:.1f} s = {n / dt:.0f} ECG/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
