"""Issue 14's acceptance on a synthetic run large enough to test it: where Score-CAM puts the relevance of the
true positives whose injured territory is known (slow: a 12,000-ECG federated run, then ``fedami explain``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def explained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from sim.explain import main as explain_main
    from sim.run import main as run_main

    root = tmp_path_factory.mktemp("acceptance")
    run = root / "run"
    argv = ["--clients", "3", "--n-ecgs", "12000", "--arms", "federated", "--boot", "50"]
    assert run_main([*argv, "--data-dir", str(root / "data"), "--out", str(run)]) == 0
    methods = "scorecam,scorecam_delete"
    assert explain_main(["--run", str(run), "--top-k", "1", "--check-records", "150", "--methods", methods]) == 0
    summary: dict[str, Any] = json.loads(Path(run / "explanations" / "gah-federated" / "explain.json").read_text())
    return summary


def test_the_model_reads_the_territory_leads_st_t_not_their_qrs(explained: dict[str, Any]) -> None:
    occ = explained["occlusion"]
    assert occ["n"] >= 50
    assert occ["STT_drop_per_s"] > occ["QRS_drop_per_s"] and occ["p_STT_vs_QRS_drop_per_s"] < 0.01


def test_score_cam_with_deletion_masks_puts_more_on_the_territory_st_t_than_chance_and_than_qrs(
    explained: dict[str, Any],
) -> None:
    deleting, keeping = explained["checks"]["scorecam_delete"], explained["checks"]["scorecam"]
    territory = deleting["territory"]
    assert territory["n"] >= 50
    assert territory["STT_enrichment"] > 1 and territory["p_STT_vs_chance"] < 0.01
    assert territory["p_STT_vs_QRS"] < 0.05
    # the more faithful map of the two: removing its most relevant cells first lowers the score faster
    assert deleting["deletion"]["area_relevance"] < keeping["deletion"]["area_relevance"]
