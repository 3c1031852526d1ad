"""A real deployment on loopback for the tests: a ``flower-superlink`` and one ``flower-supernode`` per hospital.

Every process is started in its own session so that stopping it also stops what it spawned (the
SuperExec and the ClientApp or ServerApp processes); only processes started here are stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from sim import compose as C
from sim import deploy as D

T = TypeVar("T")

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Deployment:
    root: Path
    secrets: Path
    stores: Path
    tls: bool = True
    auth: bool = True
    port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    sockets: Path | None = None

    @property
    def home(self) -> Path:
        return self.root / "flwr-home"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "FLWR_HOME": str(self.home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": C.SUPEREXEC_POLL_S,  # as the compose files set it
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **extra,
        }

    def _start(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env(**env), cwd=self.root,
                                start_new_session=True)  # fmt: skip
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def start_superlink(self, database: Path | None = None) -> None:
        args = [str(BIN / "flower-superlink"), "--port", str(self.port), "--disable-runtime-dependency-installation"]
        if self.tls:
            sec = self.secrets / "superlink"
            args += ["--ssl-ca-certfile", str(sec / "ca.crt"), "--ssl-certfile", str(sec / "superlink.crt"),
                     "--ssl-keyfile", str(sec / "superlink.key")]  # fmt: skip
        else:
            args += ["--insecure"]
        if self.auth:
            args += ["--enable-supernode-auth"]
        if database is not None:
            args += ["--database", str(database)]
        ready = "Application startup complete"
        # the log is appended to across restarts: wait for this start's line, not the last one's
        before = self.log("superlink").count(ready) if (self.root / "superlink.log").exists() else 0
        self._start("superlink", args)
        self.wait_for(lambda: self.log("superlink").count(ready) > before, 60, "the SuperLink to start")
        self.connect()

    def connect(self) -> None:
        ca = self.secrets / "coordinator" / "ca.crt"
        D.write_connection("fedami", f"127.0.0.1:{self.port}", ca if self.tls else None, self.home)

    def register(self, hospitals: list[str]) -> None:
        self.flwr_env(lambda: D.register(self.secrets / "coordinator" / "public", hospitals, "fedami"))

    def flwr_env(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` with this deployment's ``FLWR_HOME`` (the flwr CLI reads its connections there)."""
        old = os.environ.get("FLWR_HOME")
        os.environ["FLWR_HOME"] = str(self.home)
        try:
            return fn()
        finally:
            if old is None:
                os.environ.pop("FLWR_HOME", None)
            else:
                os.environ["FLWR_HOME"] = old

    def start_worker(self, name: str, **env: str) -> Path:
        """The hospital's warm worker (``fedami deploy worker``); returns its socket once it accepts."""
        if self.sockets is None:  # a short private folder: a socket's path is limited to about 100 bytes
            self.sockets = Path(tempfile.mkdtemp(prefix="fedami-", dir="/tmp"))
        sock = self.sockets / f"{name}.sock"
        self._start(f"{name}-worker", [str(BIN / "fedami"), "deploy", "worker", "--socket", str(sock)], **env)
        self.wait_for(sock.exists, 60, f"{name}'s worker to listen")
        return sock

    def start_node(
        self, name: str, site: str, *, key: Path | None = None, worker: Path | None = None, **env: str
    ) -> subprocess.Popen[bytes]:
        node_config = f'site="{site}" data-dir="{self.stores}"'
        if worker is not None:
            node_config += f' worker-socket="{worker}"'
        args = [str(BIN / "flower-supernode"), "--superlink", f"127.0.0.1:{self.port}", "--port", str(free_port()),
                "--node-config", node_config]  # fmt: skip
        args += ["--root-certificates", str(self.secrets / site / "ca.crt")] if self.tls else ["--insecure"]
        if self.auth:
            args += ["--auth-supernode-private-key", str(key or self.secrets / site / f"{site}.key")]
        return self._start(name, args, **env)

    def stop(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            proc.wait(30)

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        if self.sockets is not None:
            shutil.rmtree(self.sockets, ignore_errors=True)

    def submit(self, overrides: dict[str, object]) -> str:
        return self.flwr_env(lambda: D.submit(overrides, "fedami", REPO))

    def status(self, run_id: str) -> dict[str, object]:
        return self.flwr_env(lambda: D.run_status(run_id, "fedami"))

    def wait_finished(self, run_id: str, timeout: float) -> str:
        """Follow the run as ``fedami deploy run`` does (its log into ``run-<id>.log``); its final status."""
        try:
            with (self.root / f"run-{run_id}.log").open("ab") as out:
                status = self.flwr_env(lambda: D.follow(run_id, "fedami", timeout_s=timeout, out=out))
        except TimeoutError as err:
            logs = {n: self.log(n)[-1500:] for n in self.procs}
            raise TimeoutError(f"{err}; logs: {json.dumps(logs, indent=1)}") from None
        return str(status["status"])

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str, every: float = 1.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                logs = {n: self.log(n)[-1500:] for n in self.procs}
                raise TimeoutError(f"waited {timeout:.0f} s for {what}; logs: {json.dumps(logs, indent=1)}")
            time.sleep(every)
