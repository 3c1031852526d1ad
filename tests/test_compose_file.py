"""docker-compose.yml read as data: each hospital's node holds only its own store and key, on a network it
shares with the SuperLink alone; the SuperLink serves TLS with node authentication and keeps its state.
No container engine needed (the compose run itself: tests/test_compose.py, ``make test-compose``)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.config import AppConfig
from common.config import flat as F
from sim import compose as C
from sim import deploy as D

REPO = Path(__file__).resolve().parents[1]
HOSPITALS = ["hospital_a", "hospital_b", "hospital_c"]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def nodes(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if "flower-supernode" in s.get("command", "")}


def workers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if "deploy worker" in s.get("command", "")}


def option(command: str, name: str) -> str:
    words = shlex.split(command)
    return words[words.index(name) + 1]


def test_every_hospital_node_mounts_only_its_own_store_and_key_read_only(compose: dict[str, Any]) -> None:
    services = nodes(compose)

    assert sorted(services) == ["supernode-hospital_a", "supernode-hospital_b", "supernode-hospital_c"]
    for name, service in services.items():
        hospital = name.removeprefix("supernode-")
        assert sorted(service["volumes"]) == sorted(
            [
                f"./deploy/secrets/{hospital}:/secrets:ro",
                f"./deploy/stores/{hospital}:/data/{hospital}:ro",
                f"worker-{hospital}:/run/fedami",
            ]
        )
        config = option(service["command"], "--node-config")
        assert f"site='{hospital}'" in config and "data-dir='/data'" in config
        assert "worker-socket='/run/fedami/worker.sock'" in config
        assert option(service["command"], "--auth-supernode-private-key") == f"/secrets/{hospital}.key"
        assert option(service["command"], "--root-certificates") == "/secrets/ca.crt"


def test_hospitals_share_a_network_with_the_superlink_only_and_no_network_reaches_out(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    node_networks = {name: set(s["networks"]) for name, s in nodes(compose).items()}

    for name, networks in node_networks.items():
        assert networks == {name.removeprefix("supernode-")}
        assert compose["networks"][name.removeprefix("supernode-")]["internal"] is True
        sharing = {other for other, s in services.items() if networks & set(s.get("networks", [])) and other != name}
        assert sharing == {"superlink"}
        assert "ports" not in services[name]


def test_each_hospital_worker_has_no_network_its_own_store_and_a_socket_volume_shared_with_its_node_only(
    compose: dict[str, Any],
) -> None:
    services = workers(compose)

    assert sorted(services) == ["worker-hospital_a", "worker-hospital_b", "worker-hospital_c"]
    for name, service in services.items():
        hospital = name.removeprefix("worker-")
        assert service["network_mode"] == "none" and "networks" not in service and "ports" not in service
        assert sorted(service["volumes"]) == [f"./deploy/stores/{hospital}:/data/{hospital}:ro", f"{name}:/run/fedami"]
        assert option(service["command"], "--socket") == "/run/fedami/worker.sock"
        sharing = {other for other, s in compose["services"].items() if f"{name}:/run/fedami" in s.get("volumes", [])}
        assert sharing == {name, f"supernode-{hospital}"} and name in compose["volumes"]


def test_the_superlink_serves_tls_with_node_authentication_and_keeps_its_state_on_a_volume(
    compose: dict[str, Any],
) -> None:
    link = compose["services"]["superlink"]
    words = shlex.split(link["command"])

    for flag in ("--ssl-ca-certfile", "--ssl-certfile", "--ssl-keyfile", "--enable-supernode-auth", "--database"):
        assert flag in words
    assert "--insecure" not in words
    assert option(link["command"], "--database").startswith("/state/")
    assert "superlink-state:/state" in link["volumes"] and "superlink-state" in compose["volumes"]
    assert "./deploy/secrets/superlink:/secrets:ro" in link["volumes"]
    holding_stores = {
        name for name, s in compose["services"].items() if any("stores" in v for v in s.get("volumes", []))
    }
    assert holding_stores == set(nodes(compose)) | set(workers(compose))  # no ECG store outside its hospital


def coordinator_words(compose: dict[str, Any]) -> list[str]:
    """The coordinator's shell script, split into words."""
    shell, flag, script = compose["services"]["coordinator"]["command"]
    assert (shell, flag) == ("sh", "-c")
    return shlex.split(script)


def test_the_coordinators_run_settings_are_known_settings(compose: dict[str, Any]) -> None:
    words = coordinator_words(compose)
    settings = dict(w.split("=", 1) for w, flag in zip(words[1:], words, strict=False) if flag == "--set")
    # compose substitutes ${VAR:-default}: check the defaults it would use
    values = {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", v) for k, v in settings.items()}

    F.parse(AppConfig, values)  # an unknown key or a bad value raises
    assert {"data.hospitals", "federated.rounds", "output.dir"} <= set(values)


def test_the_coordinator_registers_every_hospital_node_and_then_runs(compose: dict[str, Any]) -> None:
    words = coordinator_words(compose)
    steps = [words[i + 2] for i, w in enumerate(words) if w == "fedami"]

    assert steps == ["connect", "register", "run"]  # joined by && : a failed step stops the chain
    assert words.count("&&") == 2
    registered = words[words.index("--hospitals") + 1].split(",")
    assert sorted(registered) == sorted(n.removeprefix("supernode-") for n in nodes(compose))
    assert "./deploy/secrets/coordinator:/secrets:ro" in compose["services"]["coordinator"]["volumes"]


def compose_command() -> list[str]:
    """$COMPOSE, else the test environment's podman-compose (the test extra installs it)."""
    if "COMPOSE" in os.environ:
        return shlex.split(os.environ["COMPOSE"])
    beside = Path(sys.executable).with_name("podman-compose")
    return [str(beside) if beside.exists() else "podman-compose"]


def test_the_compose_command_accepts_every_file(compose: dict[str, Any], tmp_path: Path) -> None:
    command = compose_command()
    if shutil.which(command[0]) is None:
        pytest.skip(f"no {command[0]}: `pip install -e .[test]` installs podman-compose")
    if Path(command[0]).name == "podman-compose" and shutil.which("podman") is None:
        pytest.skip("podman-compose needs podman to check a file, and there is no podman here")

    C.write_multi_host(["north", "south"], "link.example.org:8000", tmp_path)
    files = [REPO / "docker-compose.yml", *sorted(tmp_path.glob("*/docker-compose.yml"))]

    checked = {
        f: subprocess.run([*command, "-f", str(f), "config"], cwd=f.parent, capture_output=True, text=True, timeout=120)
        for f in files
    }

    assert {f: c.stderr[-2000:] for f, c in checked.items() if c.returncode != 0} == {}
    services = {f.parent.name: set(yaml.safe_load(c.stdout)["services"]) for f, c in checked.items()}
    assert services[REPO.name] == {"superlink", "coordinator", *nodes(compose), *workers(compose)}
    assert services["coordinator"] == {"superlink", "coordinator"}
    assert services["north"] == {"supernode-north", "worker-north"}


def test_the_top_level_file_is_the_generated_one() -> None:
    assert (REPO / "docker-compose.yml").read_text() == C.one_machine_text(HOSPITALS), (
        "regenerate it: rm docker-compose.yml && fedami deploy compose --one-machine "
        f"--hospitals {','.join(HOSPITALS)} --out docker-compose.yml"
    )


def test_one_file_per_host_each_hospital_holding_only_its_own_key_and_store(tmp_path: Path) -> None:
    hospitals = ["north", "south-2", "east_3"]

    assert D.main(["compose", "--hospitals", ",".join(hospitals), "--superlink", "link.example.org:8000",
                   "--out", str(tmp_path)]) == 0  # fmt: skip

    files = {p.parent.name: yaml.safe_load(p.read_text()) for p in tmp_path.glob("*/docker-compose.yml")}
    assert sorted(files) == sorted(["coordinator", *hospitals])
    coordinator = files["coordinator"]["services"]
    assert sorted(coordinator) == ["coordinator", "superlink"]
    assert coordinator["superlink"]["ports"] == ["8000:8000"]
    assert not any("stores" in v or "secrets/north" in v for s in coordinator.values() for v in s["volumes"])
    registered = coordinator_words(files["coordinator"])
    assert registered[registered.index("--hospitals") + 1] == ",".join(hospitals)
    for hospital in hospitals:
        services = files[hospital]["services"]
        assert sorted(services) == [f"supernode-{hospital}", f"worker-{hospital}"]
        node, worker = services[f"supernode-{hospital}"], services[f"worker-{hospital}"]
        assert "ports" not in node and worker["network_mode"] == "none"
        own = [f"./secrets/{hospital}:/secrets:ro", f"./stores/{hospital}:/data/{hospital}:ro"]
        assert sorted(node["volumes"]) == [*own, f"worker-{hospital}:/run/fedami"]
        assert sorted(worker["volumes"]) == [own[1], f"worker-{hospital}:/run/fedami"]
        assert option(node["command"], "--superlink") == "link.example.org:8000"
        text = (tmp_path / hospital / "docker-compose.yml").read_text()
        assert not any(other in text for other in hospitals if other != hospital)  # no other hospital named


def test_compose_files_are_never_overwritten_and_names_must_suit_compose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["compose", "--superlink", "link:8000", "--out", str(tmp_path)]
    assert D.main([*args, "--hospitals", "north"]) == 0

    assert D.main([*args, "--hospitals", "north"]) == 2
    assert "never overwritten" in capsys.readouterr().err
    for bad in ("North", "coordinator", "a b", "north,north"):
        assert D.main(["compose", "--superlink", "link:8000", "--out", str(tmp_path / "x"), "--hospitals", bad]) == 2
    assert D.main(["compose", "--hospitals", "north", "--out", str(tmp_path / "y")]) == 2  # neither layout named
