"""What a hospital's training process imports: torch and flwr, not the ingestion or statistics stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_client_app_imports_neither_wfdb_nor_scipy_nor_sklearn() -> None:
    # Prepare: a fresh interpreter, as a Ray worker or supernode is
    code = (
        "import sys; import client.app; "
        "print(','.join(sorted(m for m in ('wfdb', 'scipy', 'sklearn') if m in sys.modules)))"
    )

    # Execute
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)

    # Assert: each of these costs start-up time in every client process (and wfdb warns on import)
    assert proc.stdout.strip() == ""
