"""End-to-end: ``python sim/run.py`` on a tiny synthetic cohort, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "sim" / "run.py"), *args], capture_output=True, text=True, timeout=600, cwd="/"
    )


def test_smoke_run_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "run"

    proc = _run(
        "--clients",
        "3",
        "--n-ecgs",
        "300",
        "--epochs",
        "2",
        "--seed",
        "3",
        "--data-dir",
        str(tmp_path / "data"),
        "--out",
        str(out),
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test AUROC by hospital" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["cohort"]["n_ecgs"] == 300 and config["train"]["epochs"] == 2
    assert results["config"] == config
    assert [row["site"] for row in results["cohort"]] == ["hospital_a", "hospital_b", "hospital_c"]
    pooled = results["arms"]["pooled"]["test"]["pooled"]
    assert pooled["n"] == sum(r["n"] for k, r in results["arms"]["pooled"]["test"].items() if k != "pooled")
    assert 0.0 <= pooled["auroc"] <= 1.0
    assert len(results["arms"]["pooled"]["fit"]["history"]) == 2
    for name in ("results.md", "roc_pooled.png", "history_pooled.png", "model_pooled.pt"):
        assert (out / name).stat().st_size > 0, name


def test_bad_settings_are_clear_errors(tmp_path: Path) -> None:
    unknown = _run("--model", "nope", "--out", str(tmp_path / "a"))
    one_site = _run("--clients", "1", "--out", str(tmp_path / "b"))

    assert unknown.returncode == 2 and "known models:" in unknown.stderr and "cnn1d" in unknown.stderr
    assert one_site.returncode == 2 and "n_sites" in one_site.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
