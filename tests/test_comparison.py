"""The federated model against the other arms on the same test ECGs (simulation's paired comparisons)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from common.config import RunConfig, TrainConfig
from common.data.arrays import EcgArrays
from common.experiments.comparison import (
    ArmResult,
    ArmTraining,
    FoldResult,
    compare_with_federated,
    paired_table,
)
from common.federation.outputs import ALL_SITES


def _site(n: int, positives: int, first_patient: int) -> EcgArrays:
    y = np.zeros(n, dtype=np.int64)
    y[:positives] = 1
    meta = pd.DataFrame({"patient_id": [f"p{first_patient + i // 2}" for i in range(n)]})
    return EcgArrays(x=np.zeros((n, 12, 4), np.float32), demo=np.zeros((n, 5), np.float32), y=y, meta=meta)


def _cfg(n_boot: int = 100) -> RunConfig:
    return RunConfig(data_dir=Path("/nonexistent/data"), out_dir=Path("/nonexistent/out"), n_boot=n_boot)


def _arm(name: str, scores: Mapping[str, np.ndarray]) -> ArmResult:
    training = ArmTraining(
        hospitals=("a",), train_ecgs={"a": 1}, train=TrainConfig(), passes=1, lr_schedule="", seeds="", kept=""
    )
    return ArmResult(name, training, 1.0, (), None, (), dict(scores))


def test_the_federated_model_is_compared_with_every_other_arm_per_site_and_at_all() -> None:
    # Prepare: two test sites; the federated model separates the classes better than pooled, local copies it
    rng = np.random.default_rng(0)
    tests = {"a": _site(300, 40, 0), "b": _site(200, 30, 1000), "c": _site(50, 0, 2000), "d": _site(20, 1, 3000)}
    fed = {s: d.y * 2.0 + rng.normal(size=len(d)) for s, d in tests.items()}
    pooled = {s: v + 3 * rng.normal(size=len(v)) for s, v in fed.items()}
    arms = [_arm("federated", fed), _arm("pooled", pooled), _arm("local:a", {s: v.copy() for s, v in fed.items()})]

    # Execute
    rows = compare_with_federated("gah", tests, arms, _cfg(200))

    # Assert: sites a, b, d and all (c has no MI: no AUROC) against both arms; exact AUROCs; copies tie exactly;
    # d's one MI has an AUROC and a bootstrap but no DeLong variance
    assert [(r.test_site, r.other) for r in rows] == [
        (s, o) for s in ("a", "b", "d", ALL_SITES) for o in ("pooled", "local:a")
    ]
    every = {r.test_site: r for r in rows if r.other == "pooled"}
    assert every.pop("d").p_delong is None
    y_all = np.concatenate([tests[s].y for s in tests])
    assert every[ALL_SITES].n == 570 and every[ALL_SITES].positives == 71
    assert every[ALL_SITES].federated == pytest.approx(roc_auc_score(y_all, np.concatenate(list(fed.values()))))
    assert every["b"].other_auroc == pytest.approx(roc_auc_score(tests["b"].y, pooled["b"]))
    for r in every.values():
        assert r.lower is not None and r.lower > 0 and r.p_bootstrap < 0.05 and r.p_delong < 0.05
        assert r.ratio_lower is not None and 1 < r.ratio_lower < r.ratio == pytest.approx(r.federated / r.other_auroc)
    for r in (r for r in rows if r.other == "local:a" and r.test_site != "d"):
        assert (r.difference, r.ratio, r.p_bootstrap, r.p_delong) == (0.0, 1.0, 1.0, 1.0)


def test_no_federated_arm_or_no_scores_means_no_comparison() -> None:
    # Prepare
    tests = {"a": _site(100, 20, 0)}
    scores = {"a": np.linspace(0, 1, 100)}

    # Execute / Assert: a run without the federated arm, and a federated arm whose scores were not kept
    assert compare_with_federated("gah", tests, [_arm("pooled", scores)], _cfg()) == ()
    assert compare_with_federated("gah", tests, [_arm("federated", {}), _arm("pooled", scores)], _cfg()) == ()


def test_the_comparisons_are_written_and_tabled() -> None:
    # Prepare
    rng = np.random.default_rng(1)
    tests = {"a": _site(200, 30, 0)}
    fed = {"a": tests["a"].y + rng.normal(size=200)}
    rows = compare_with_federated("gah", tests, [_arm("federated", fed), _arm("pooled", {"a": -fed["a"]})], _cfg())

    # Execute
    written = FoldResult("gah", ("a",), {"a": ("test",)}, (), None, rows).to_dict()["comparisons"]
    table = paired_table(rows)

    # Assert: every field in results.json; the table reads both AUROCs, a signed difference and the ratio
    assert written[0]["other"] == "pooled" and written[0]["federated"] == pytest.approx(1 - written[0]["other_auroc"])
    assert list(table.columns) == [
        "fold", "test site", "against", "n (AMI)", "federated", "other", "difference [95% CI]", "ratio [95% CI]",
        "p (bootstrap)", "p (DeLong)",
    ]  # fmt: skip
    row = table.iloc[0]
    assert row["n (AMI)"] == "200 (30)" and row["difference [95% CI]"].startswith("+0.")
    assert row["ratio [95% CI]"].count("[") == 1
