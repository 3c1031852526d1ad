"""What a hospital's process imports: the prepared-data reader, the models and training, nothing of ingestion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CLIENT_APP_MODULES = ["client", "client.app", "common", "common.federation", "common.federation.protocol"]
"""What the ClientApp module itself loads: a process that forwards to the hospital's worker needs no more."""

HANDLER_MODULES = [
    "client", "client.handlers",
    "common", "common.config", "common.config.flat", "common.config.paths", "common.config.sections",
    "common.data", "common.data.arrays", "common.data.leads", "common.data.npyfile", "common.data.preprocess",
    "common.data.splits",
    "common.data.store",
    "common.evaluation", "common.evaluation.bootstrap", "common.evaluation.metrics",  # a node resamples its patients
    "common.evaluation.calibration", "common.evaluation.subgroups",  # and sums its calibration and subgroups
    "common.federation", "common.federation.compression", "common.federation.histograms", "common.federation.hospital",
    "common.federation.protocol",
    "common.models", "common.models.bilstm", "common.models.blocks", "common.models.card", "common.models.cnn",
    "common.models.conv_bilstm_attn", "common.models.inception", "common.models.registry", "common.models.resnet",
    "common.synthetic", "common.synthetic.key",
    "common.training", "common.training.engine",
]  # fmt: skip
"""Every project module the hospital's handlers load (in a ClientApp process or its worker): a new import here
must be a deliberate choice."""


def _imported_by(statement: str) -> tuple[list[str], list[str]]:
    code = (
        f"import json, sys; {statement}; "
        "ours = sorted(m for m in sys.modules if m.split('.')[0] in ('common', 'client', 'server', 'sim')); "
        "heavy = [m for m in ('wfdb', 'scipy', 'sklearn', 'matplotlib', 'ray') if m in sys.modules]; "
        "print(json.dumps([ours, heavy]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    ours, heavy = json.loads(proc.stdout)
    return ours, heavy


def test_the_client_app_module_loads_neither_torch_nor_the_data_code() -> None:
    # Execute: a fresh interpreter, as a SuperNode's ClientApp process is
    ours, heavy = _imported_by("import client.app; assert 'torch' not in sys.modules, 'torch imported'")

    # Assert: a ClientApp that forwards to the hospital's worker starts without torch, models or data
    assert ours == sorted(CLIENT_APP_MODULES)
    assert heavy == []


def test_the_handlers_import_exactly_these_modules_and_no_ingestion_or_statistics_stack() -> None:
    # Execute: a fresh interpreter, as a Ray worker, a ClientApp process handling a message or a worker is
    ours, heavy = _imported_by("import client.app, client.handlers, client.worker")

    # Assert: no reader, ingest, generator or downloader; none of wfdb, scipy, scikit-learn, matplotlib, Ray
    assert ours == sorted([*HANDLER_MODULES, "client.app", "client.worker"])
    assert not any(".readers" in m or m.endswith((".ingest", ".generator", ".cohort", ".sources")) for m in ours)
    assert heavy == []


def test_the_server_app_imports_no_data_pipeline() -> None:
    ours, heavy = _imported_by("import server.app")

    assert not any(".readers" in m or m.endswith((".ingest", ".generator", ".sources")) for m in ours)
    assert heavy == []
