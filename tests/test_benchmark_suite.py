"""The benchmark suite's quick mode writes every stage into its report (slow target)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_suite_lists_its_stages_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "benchmarks/suite.py", "--only", "nonsense", "--out", str(tmp_path / "b.md")],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "known: generation, ingest, default-model, models" in proc.stderr
    assert not (tmp_path / "b.md").exists()


@pytest.mark.slow
def test_the_quick_suite_runs_every_stage(tmp_path: Path) -> None:
    from benchmarks.suite import stages

    out = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, "benchmarks/suite.py", "--quick", "--out", str(out)], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "Quick mode" in text and "Machine: " in text and "FAILED" not in text
    for stage in stages():
        assert f"## {stage.title}" in text
        for script, *_ in stage.quick:
            assert f"python benchmarks/{script}" in text
