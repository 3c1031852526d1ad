"""A non-editable install of the package runs `fedami run` from any folder, with no path inside site-packages."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_a_non_editable_install_runs_the_main_job_from_any_folder(tmp_path: Path) -> None:
    # Prepare: a fresh venv with the package installed from a built wheel (not editable); its dependencies
    # come from this environment through a .pth line, so nothing is downloaded and the checkout is not on the path
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    (purelib / "deps.pth").write_text("\n".join([sysconfig.get_paths()["purelib"], *site.getsitepackages()]) + "\n")
    source = tmp_path / "source"  # a copy, so building leaves no build/ folder in the checkout
    skip = shutil.ignore_patterns(".git", ".venv", "runs", ".cache", "build", "*.egg-info", "__pycache__", ".*_cache")
    shutil.copytree(REPO, source, ignore=skip)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
    )
    subprocess.run(
        [py, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(purelib), *wheels.glob("*.whl")],
        check=True,
    )
    fedami = purelib / "bin" / "fedami"  # the console script pip wrote from [project.scripts]
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FEDAMI_RUNS_DIR")}
    env.update({"FLWR_TELEMETRY_ENABLED": "0", "FEDAMI_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)})

    # Execute
    where = subprocess.run([py, "-c", "import common; print(common.__file__)"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, check=True)  # fmt: skip
    run = subprocess.run(
        [str(fedami), "run", "--clients", "3", "--n-ecgs", "300", "--rounds", "1", "--boot", "20"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip

    # Assert: the installed copy ran, and wrote under the folder it was started from
    assert Path(where.stdout.strip()).is_relative_to(purelib)
    assert run.returncode == 0, run.stderr[-3000:]
    (out,) = (elsewhere / "runs").iterdir()
    config = json.loads((out / "config.json").read_text())
    for path in (config["out_dir"], config["data_dir"]):
        assert "site-packages" not in path
    assert config["data_dir"] == str(tmp_path / "data")
    results = json.loads((out / "results.json").read_text())
    assert {s["arm"] for s in results["scores"]} >= {"federated", "pooled", "local:hospital_a"}
