"""The model benchmark runs end to end and prints every variant it promises (its figures are not tested)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_model.py"


@pytest.mark.slow
def test_bench_model_prints_every_inference_variant_and_the_profile() -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--model", "cnn1d", "--steps", "1", "--ecgs", "64"],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for row in ("torch no_grad, windows one by one", "torch inference_mode, whole record",
                "ONNX Runtime, whole record", "ONNX Runtime int8 (dynamic), whole record",
                "ONNX Runtime's time by operator"):  # fmt: skip
        assert row in proc.stdout, proc.stdout


@pytest.mark.slow
def test_bench_model_brief_prints_only_what_training_and_predict_run() -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--model", "cnn1d", "--steps", "1", "--ecgs", "64", "--brief"],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for row in ("train, whole 10 s", "torch inference_mode, whole record", "ONNX Runtime, whole record"):
        assert row in proc.stdout, proc.stdout
    assert "batch 256" in proc.stdout and "batch 1024" not in proc.stdout, proc.stdout
    for row in ("windows", "int8", "by operator"):
        assert row not in proc.stdout.split("fedami predict scores")[1].split("\n", 1)[1], proc.stdout
