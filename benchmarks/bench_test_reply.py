"""The size of one hospital's test-round reply, and the time to build it, at the study's scale.

Usage: python benchmarks/bench_test_reply.py [--n-ecgs 600 7300 48600] [--n-boot N] [--seed 0]

In the final test round a hospital sends no per-record value: its test split's score histogram, counts at the
threshold, patient-bootstrap replicates as histograms over the bins its ECGs fill, the same per age band and
sex, and calibration sums (``common.federation.hospital.score_summary`` and
``client.handlers.evaluation_content``, as the ClientApp builds them; the replicates as arrays). This builds that
reply from synthetic scores (8 % positives, 1.5 ECGs per patient, ages 18-95, both sexes) for each ``--n-ecgs``
and prints the bins filled, the reply's size as Flower serialises it (protobuf), the seconds to build it and the
seconds Flower takes to serialise it into the objects a node stores and sends (each hop does that once). The
study's 145,656 ECGs over three hospitals with a 15 % test split are about 7,300 test ECGs per hospital
(``--n-ecgs 7300``); 48,600 is a hospital's whole share.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_N = (600, 7300, 48600)


def synthetic_test_split(n: int, seed: int):  # type: ignore[no-untyped-def]
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.08).astype(np.int64)
    scores = 1 / (1 + np.exp(-(rng.normal(-1.5, 1.2, n) + 2.0 * y)))
    meta = pd.DataFrame(
        {
            "patient_id": rng.integers(0, max(1, int(n / 1.5)), n).astype(str),
            "age": rng.uniform(18, 95, n).round(),
            "sex": rng.choice(["M", "F"], n),
        }
    )
    return y, scores, meta


def main(argv: list[str] | None = None) -> int:
    from flwr.common.serde import recorddict_to_proto
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    from client.handlers import evaluation_content
    from common.config import EvaluationConfig
    from common.federation.hospital import score_summary

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-ecgs", type=int, nargs="+", default=list(DEFAULT_N))
    p.add_argument("--n-boot", type=int, default=EvaluationConfig.model_fields["n_boot"].default)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(f"one hospital's test reply, {args.n_boot} patient-bootstrap replicates (evaluation.n-boot)")
    print(f"{'test ECGs':>10}{'bins filled':>13}{'reply (MB)':>12}{'build (s)':>11}{'serialise (s)':>15}")
    for n in args.n_ecgs:
        y, scores, meta = synthetic_test_split(n, args.seed)
        t0 = time.perf_counter()
        res = score_summary(y, scores, meta, threshold=0.5, n_boot=args.n_boot, boot_seed=args.seed)
        reply = evaluation_content(res, 0)
        size = recorddict_to_proto(reply).ByteSize()
        took = time.perf_counter() - t0
        t0 = time.perf_counter()
        for obj in get_all_nested_objects(reply).values():
            obj.deflate()
        serialise = time.perf_counter() - t0
        bins = len(res.replicates.bins) if res.replicates is not None else 0
        print(f"{n:>10,}{bins:>13,}{size / 1e6:>12.2f}{took:>11.2f}{serialise:>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
