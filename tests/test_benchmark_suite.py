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


OLD_REPORT = """# fedami benchmarks

Written by `python benchmarks/suite.py --only generation,ingest` on 2026-12-01 10:00 UTC at commit abc1234, in 1 min.

Machine: somewhere.

## Synthetic cohort generation (one core)

`python benchmarks/bench_synthetic.py --n 2048`: 22 s, ok

```
old generation figures
```

## WFDB ingest and store reads

`python benchmarks/bench_ingest.py --n 600`: 22 s, ok

```
old ingest figures
```
"""


def test_an_update_reruns_only_the_stages_named_and_keeps_the_others_with_their_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a report from an earlier run of two stages; the ingest stage "reruns" without measuring anything
    from benchmarks import suite

    out = tmp_path / "BENCHMARKS.md"
    out.write_text(OLD_REPORT)
    ran: list[str] = []

    def fake_stage(stage: suite.Stage, quick: bool, run_line: str = "") -> tuple[str, bool]:
        ran.append(stage.name)
        return f"## {stage.title}\n\n{run_line}\n\nnew {stage.name} figures\n", True

    monkeypatch.setattr(suite, "run_stage", fake_stage)

    # Execute
    code = suite.main(["--only", "ingest", "--update", "--out", str(out)])

    # Assert: ingest replaced and stamped with this run, generation kept and stamped with its own run, in stage order
    text = out.read_text()
    assert code == 0 and ran == ["ingest"]
    assert "old generation figures" in text and "old ingest figures" not in text and "new ingest figures" in text
    assert text.index("## Synthetic cohort generation") < text.index("## WFDB ingest")
    gen = suite.sections_of(text)["Synthetic cohort generation (one core)"]
    stamps = [m.groupdict() for m in suite.STAMP.finditer(text)]
    assert suite.STAMP.search(gen)["commit"] == "abc1234"  # type: ignore[index]
    assert [s["command"] for s in stamps] == [
        "python benchmarks/suite.py --only generation,ingest",
        "python benchmarks/suite.py --only ingest --update --out " + str(out),
    ]
    assert "Stages not in this report: default-model" in text


def test_an_update_needs_the_stages_and_an_existing_report(tmp_path: Path) -> None:
    from benchmarks import suite

    with pytest.raises(SystemExit):
        suite.main(["--update", "--only", "ingest", "--out", str(tmp_path / "missing.md")])
