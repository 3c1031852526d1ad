"""docker-compose.yml really run: the image built, a TLS SuperLink with node authentication, one container per
hospital, the coordinator's run completed and its results written; while it runs, each hospital's container is
checked from inside (its own store and key only, the SuperLink reachable, the other hospitals not), and its warm
worker (its store only, no network), which answers every message.

``make test-compose`` prepares what this needs (the CPU torch wheel, keys, stores) and runs it. The compose
command is ``$COMPOSE`` (default ``podman-compose``; here: ``source /tmp/fedctr/env.sh`` after
``../shared/tools/container-env.sh``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.compose

REPO = Path(__file__).resolve().parents[1]
COMPOSE = shlex.split(os.environ.get("COMPOSE", "podman-compose"))
HOSPITALS = ["hospital_a", "hospital_b", "hospital_c"]
NODES = [f"supernode-{h}" for h in HOSPITALS]
WORKERS = [f"worker-{h}" for h in HOSPITALS]
NODE_PORT = 9094  # a SuperNode's own API (on its loopback only: a refusal still shows the address is reachable)

# Run inside a container: what it sees in /data and /secrets, which names resolve, which nodes it reaches.
PROBE = """
import json, os, socket, sys
names, addresses, port = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
def resolve(name):
    try:
        return socket.gethostbyname(name)
    except OSError:
        return None
def reach(address, port):
    # a refusal answers from the address, so it is reachable; unreachable networks time out or have no route
    try:
        socket.create_connection((address, port), 3).close()
        return True
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
print(json.dumps({
    "data": sorted(os.listdir("/data")) if os.path.isdir("/data") else None,
    "secrets": sorted(os.listdir("/secrets")) if os.path.isdir("/secrets") else None,
    "resolved": {n: resolve(n) for n in names},
    "reached": {a: reach(a, port) for a in addresses},
    "superlink": reach("superlink", 8000),
}))
"""


def compose(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMPOSE, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    if shutil.which(COMPOSE[0]) is None:
        pytest.skip(f"no {COMPOSE[0]}: prepare podman-compose with ../shared/tools/container-env.sh (or COMPOSE=...)")
    missing = [p for p in ("deploy/wheels", "deploy/secrets/superlink", "deploy/stores/hospital_a") if
               not (REPO / p).exists()]  # fmt: skip
    if missing:
        pytest.fail(f"{missing} missing: run `make test-compose`, which prepares them")
    return {**os.environ, "FEDAMI_RUN_NAME": f"test-{uuid.uuid4().hex[:8]}", "FEDAMI_ROUNDS": "2"}


def probe_when_up(service: str, names: list[str], addresses: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run PROBE in the service's container, waiting for it to be up (a node restarts until it is registered)."""
    deadline = time.monotonic() + 300
    while True:
        probe = compose(
            "exec",
            "-T",
            service,
            "python",
            "-c",
            PROBE,
            json.dumps(names),
            json.dumps(addresses),
            str(NODE_PORT),
            env=env,
        )
        if probe.returncode == 0:
            result: dict[str, Any] = json.loads(probe.stdout.strip().splitlines()[-1])
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{service} never answered the probe: {probe.stdout[-2000:]}{probe.stderr[-2000:]}")
        time.sleep(3)


def test_the_compose_deployment_completes_a_run_with_each_hospital_isolated(
    env: dict[str, str], tmp_path: Path
) -> None:
    build = compose("build", env=env, timeout=1800)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    up = compose("up", "-d", "superlink", *NODES, *WORKERS, env=env)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    try:
        with (tmp_path / "run.log").open("w") as out:  # a file, not a pipe: a full pipe would stall the run
            coordinator = subprocess.Popen([*COMPOSE, "run", "--rm", "coordinator"], cwd=REPO, env=env,
                                           stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        seen_by_link = probe_when_up("superlink", NODES, [], env)
        addresses = {n: seen_by_link["resolved"][n] for n in NODES}
        seen_by_link = probe_when_up("superlink", [], list(addresses.values()), env)
        seen = {
            h: probe_when_up(
                f"supernode-{h}",
                [*NODES, "coordinator"],
                [a for n, a in addresses.items() if n != f"supernode-{h}"],
                env,
            )
            for h in HOSPITALS
        }
        seen_by_worker = {
            h: probe_when_up(f"worker-{h}", [*NODES, "superlink"], list(addresses.values()), env) for h in HOSPITALS
        }
        coordinator.wait(timeout=1200)
        logs = {s: compose("logs", s, env=env).stdout for s in [*NODES, *WORKERS]}
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
        compose("down", "-t", "1", env=env)

    # the probe can tell: the SuperLink resolves and reaches every node
    assert all(addresses.values()) and all(seen_by_link["reached"].values()), seen_by_link
    for hospital, what in seen.items():
        assert what["data"] == [hospital]
        assert what["secrets"] == ["ca.crt", f"{hospital}.key"]
        assert what["superlink"] is True
        others = {n: a for n, a in what["resolved"].items() if n != f"supernode-{hospital}"}
        assert not any(others.values()), what  # no other hospital's or the coordinator's name resolves
        assert not any(what["reached"].values()), what  # nor are the other nodes reachable by address
    for hospital, what in seen_by_worker.items():  # the worker: its store, no key, no network at all
        assert what["data"] == [hospital] and what["secrets"] is None
        assert not any(what["resolved"].values()) and not any(what["reached"].values()) and not what["superlink"]
    log = (tmp_path / "run.log").read_text(errors="replace")
    assert coordinator.returncode == 0, log[-5000:]
    for hospital in HOSPITALS:  # every message went to the hospital's worker
        assert logs[f"worker-{hospital}"].count("message replied") == 4, logs[f"worker-{hospital}"][-3000:]
        assert "did not answer" not in logs[f"supernode-{hospital}"], logs[f"supernode-{hospital}"][-3000:]
    run = REPO / "deploy" / "results" / env["FEDAMI_RUN_NAME"]
    history = json.loads(next(run.rglob("history.json")).read_text())
    assert [h["round"] for h in history][-1] == 2
    assert sorted(history[-1]["trained"]) == HOSPITALS
    test = json.loads(next(run.rglob("test.json")).read_text())
    assert set(test["sites"]) == set(HOSPITALS) and test["all"]["auroc_ci"] is not None  # CIs from replicates
    assert (run / "results.md").is_file() and (run / "results.json").is_file()
    assert "completed" in log
