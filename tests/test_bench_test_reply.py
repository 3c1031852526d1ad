"""benchmarks/bench_test_reply.py: the reply it sizes is the one the ClientApp sends, and it grows with the data."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import bench_test_reply as B
from client.handlers import evaluation_content
from common.federation import protocol as P
from common.federation.hospital import score_summary


def test_the_reply_holds_every_part_of_a_test_round_and_no_per_record_value() -> None:
    # Prepare
    y, scores, meta = B.synthetic_test_split(500, seed=3)

    # Execute
    reply = evaluation_content(score_summary(y, scores, meta, 0.5, n_boot=20, boot_seed=1), 4)

    # Assert: counts and histograms only; replicates of the bins the ECGs fill, one row per replicate
    metrics, reps = reply.metric_records[P.METRICS], reply.array_records[P.REPLICATES]
    assert metrics[P.NUM_EXAMPLES] == 500 and metrics[P.SITE_INDEX] == 4
    assert sum(metrics[P.POS_HIST]) == y.sum() and sum(metrics[P.NEG_HIST]) == 500 - y.sum()  # type: ignore[arg-type]
    assert reps[P.REP_POS].numpy().shape == (20, len(metrics[P.REP_BINS]))  # type: ignore[arg-type]
    assert metrics[P.TP] + metrics[P.FN] == y.sum()  # type: ignore[operator]
    assert not any(isinstance(v, list) and len(v) == 500 for v in metrics.values())
    assert not any(500 in a.numpy().shape for a in reps.values())


def test_the_benchmark_prints_a_size_that_grows_with_the_test_split(capsys: pytest.CaptureFixture[str]) -> None:
    assert B.main(["--n-ecgs", "200", "2000", "--n-boot", "20"]) == 0

    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    sizes = np.array([float(r[2]) for r in rows])
    assert [r[0] for r in rows] == ["200", "2,000"] and sizes[0] > 0 and sizes[1] > sizes[0]
