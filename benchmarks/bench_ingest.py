"""Ingest and store-read speed: records/s for WFDB ingest (1 and 2 workers) and for reading a store.

Usage: python benchmarks/bench_ingest.py [--n 600]

Builds a synthetic hospital at 500 Hz, exports it as WFDB (PTB-XL layout), then times
PTB-XL-reader ingest (read, quality control, resample to 100 Hz, band-pass, store) and reading the
resulting store back (memory map, and model-ready arrays).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=600, help="records to export and ingest")
    args = p.parse_args(argv)

    import numpy as np

    from common.config import CohortConfig, IngestConfig
    from common.data.arrays import load_split
    from common.data.ingest import ingest
    from common.data.readers.ptbxl import PtbxlSource
    from common.data.wfdb_export import export_wfdb
    from common.synthetic.cohort import ensure_synthetic_site

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cohort = CohortConfig(n_ecgs=int(args.n / 0.45) + 10)
        site = ensure_synthetic_site(cohort, 0, tmp / "synthetic", progress=False)  # the 500 Hz hospital
        export_wfdb(site, tmp / "ptbxl", records=np.arange(min(args.n, len(site.metadata))))
        source = PtbxlSource(root=tmp / "ptbxl", rate=500)
        n = len(source.index())
        print(f"{n} WFDB records at 500 Hz, 10 s, 12 leads")
        print(f"{'step':<34} {'seconds':>8} {'records/s':>10}")
        for workers in (1, 2):
            t0 = time.perf_counter()
            result = ingest(
                source, IngestConfig(), tmp / f"data{workers}", workers=workers, progress=False, echo=lambda *_: None
            )
            dt = time.perf_counter() - t0
            print(f"{f'ingest, {workers} worker(s)':<34} {dt:>8.2f} {n / dt:>10.0f}")
        t0 = time.perf_counter()
        again = ingest(source, IngestConfig(), tmp / "data2", workers=2, progress=False, echo=lambda *_: None)
        dt = time.perf_counter() - t0
        print(f"{'second ingest (cached)':<34} {dt:>8.2f} {n / dt:>10.0f}   cached={again.cached}")
        (store,) = result.stores
        t0 = time.perf_counter()
        total = float(np.asarray(store.signals()).sum())
        dt = time.perf_counter() - t0
        print(f"{'read store (by rows, all)':<34} {dt:>8.4f} {n / dt:>10.0f}   checksum={total:.1f}")
        sig, rng = store.signals(), np.random.default_rng(0)
        size = min(64, len(sig))
        batches = [rng.choice(len(sig), size=size, replace=False) for _ in range(50)]
        t0 = time.perf_counter()
        for b in batches:
            sig[b]
        dt = time.perf_counter() - t0
        print(f"{f'read store (random batches of {size})':<34} {dt:>8.4f} {50 * size / dt:>10.0f}")
        fd = os.open(sig.path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # the file dropped from the page cache first
        os.close(fd)
        t0 = time.perf_counter()
        for b in batches:
            sig[b]
        dt = time.perf_counter() - t0
        print(f"{'  the same, evicted from the cache':<34} {dt:>8.4f} {50 * size / dt:>10.0f}")
        t0 = time.perf_counter()
        arrays = load_split(store, None, 100)
        dt = time.perf_counter() - t0
        print(f"{'load model-ready arrays':<34} {dt:>8.3f} {len(arrays) / dt:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
