"""``fedami deploy``: the keys, registrations and launches of a real per-hospital deployment.

    fedami deploy keys --hospitals hospital_a,hospital_b,hospital_c --san superlink --out secrets/
        a CA, the SuperLink's TLS certificate (with the SANs given) and one ECDSA key pair per hospital,
        in one folder per machine (secrets/superlink, secrets/coordinator, secrets/<hospital>)
    fedami deploy connect --superlink superlink.example.org:8000 --ca secrets/coordinator/ca.crt
        the coordinator's connection in $FLWR_HOME/config.toml (``[superlink.fedami]``)
    fedami deploy register --keys secrets/coordinator/public --hospitals hospital_a,hospital_b,hospital_c
        registers each hospital's public key under its name (SuperNode authentication)
    fedami deploy compose --hospitals hospital_a,hospital_b,hospital_c --superlink link.example.org:8000 --out hosts/
        one compose file per host: hosts/coordinator (the SuperLink and the run's job), hosts/<hospital>
    fedami deploy worker --socket /run/fedami/worker.sock
        a hospital's warm worker beside its SuperNode (node config ``worker-socket="/run/fedami/worker.sock"``):
        torch, the model and the hospital's store stay loaded across messages (``client/worker.py``)
    fedami deploy run --set federated.rounds=15 [--resume OUT]
        submits the run, streams its log, and exits 0 only if the run completed (``flwr run --stream``
        exits 0 even when the ServerApp fails; this reads the run's status from the SuperLink)

The run's settings are checked here, before anything is submitted. ``--resume`` continues a run
that stopped (a SuperLink or ServerApp killed, hospitals lost below ``federated.min-hospitals``)
from its last checkpoint; it ends with the run's full global round count.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

if __package__ in (None, ""):  # `python sim/deploy.py` from a checkout puts sim/ first on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONNECTION = "fedami"
FINISHED = "finished:"
COMPLETED = "finished:completed"
ALREADY_REGISTERED = "Public key already in use"  # the SuperLink's reply to a key it holds
ALWAYS_SANS = ("superlink", "localhost", "127.0.0.1")
PENDING = "pending"  # a submitted run whose ServerApp has not started
PENDING_LIMIT_S = 300.0
STATUS_POLL_S = 15.0
"""Seconds between status queries while the run's log still streams. Each query is a ``flwr ls`` process, which
imports Flower (about a CPU second): polled every second (as the deployment tests' harness once did), it took most
of a core from the hospitals of a one-machine deployment. The stream ends with the run, and the status is asked
for then."""
ENDED_POLL_S = 1.0
"""Seconds before the first status query after the log stream has ended (the run's status follows within
moments); doubled for each further one, up to :data:`STATUS_POLL_S`."""
UNAVAILABLE = "Connection to the SuperLink is unavailable"  # the flwr CLI's words while it is not (yet) up


def app_dir() -> Path:
    """The Flower app's folder (``pyproject.toml`` with ``[tool.flwr.app]``): ``$FEDAMI_APP_DIR`` (the image's
    ``/app``), else this checkout."""
    return Path(os.environ.get("FEDAMI_APP_DIR") or Path(__file__).resolve().parents[1])


def _flwr_home() -> Path:
    return Path(os.environ.get("FLWR_HOME", Path.home() / ".flwr")).expanduser()


# ------------------------------------------------------------------------------------------------------ keys


ROLES = ("ca", "superlink", "coordinator")


def make_keys(hospitals: Sequence[str], sans: Sequence[str], out: Path, days: int = 825) -> dict[str, Path]:
    """A CA, the SuperLink's certificate and key, and an ECDSA P-384 key pair per hospital (OpenSSH format).

    Written in one folder per role, so that each machine gets its folder and nothing more::

        ca/           ca.crt, ca.key            keep offline: it signs the SuperLink's certificate
        superlink/    ca.crt, superlink.crt, superlink.key
        coordinator/  ca.crt, public/<hospital>.pub   (registers the hospitals' public keys)
        <hospital>/   ca.crt, <hospital>.key    (only that hospital's private key)

    Nothing is overwritten: an existing folder is an error, so a key already registered is never replaced.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    reserved = sorted(set(hospitals) & set(ROLES))
    if reserved:
        raise ValueError(f"hospital names {reserved} are reserved for the key folders of {list(ROLES)}")
    clash = sorted(f for f in (*ROLES, *hospitals) if (out / f).exists())
    if clash:
        raise FileExistsError(f"{out} already holds {clash}: keys are never overwritten (choose another --out)")
    now = datetime.datetime.now(datetime.UTC)
    until = now + datetime.timedelta(days=days)

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    written: dict[str, Path] = {}

    def write(relative: str, data: bytes, private: bool = False) -> None:
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o600 if private else 0o644)
        written[relative] = path

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedami CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA384())
    )  # fmt: skip
    # The SuperLink's own ServerApp process connects to it on loopback, through the same TLS (without
    # these names in the certificate every run stays pending), and the coordinator's job beside it in
    # compose by its service name.
    sans = list(dict.fromkeys([*sans, *ALWAYS_SANS]))
    names: list[x509.GeneralName] = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    link_key = ec.generate_private_key(ec.SECP384R1())
    link = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0])]))
        .issuer_name(ca_name).public_key(link_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA384())
    )  # fmt: skip
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    write("ca/ca.crt", ca_pem)
    write("ca/ca.key", pem_key(ca_key), private=True)
    write("superlink/ca.crt", ca_pem)
    write("superlink/superlink.crt", link.public_bytes(serialization.Encoding.PEM))
    write("superlink/superlink.key", pem_key(link_key), private=True)
    write("coordinator/ca.crt", ca_pem)
    for hospital in hospitals:
        key = ec.generate_private_key(ec.SECP384R1())
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        write(f"{hospital}/ca.crt", ca_pem)
        write(f"{hospital}/{hospital}.key", private, private=True)
        write(f"coordinator/public/{hospital}.pub", public + f" {hospital}\n".encode())
    return written


# -------------------------------------------------------------------------------------------------- connect


def write_connection(name: str, superlink: str, ca: Path | None, home: Path | None = None) -> Path:
    """Add (or replace) ``[superlink.<name>]`` in ``$FLWR_HOME/config.toml``, keeping every other entry."""
    home = home or _flwr_home()
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    lines = path.read_text().splitlines() if path.is_file() else []
    kept, skipping = [], False
    for line in lines:
        if line.strip().startswith("["):
            skipping = line.strip() == f"[superlink.{name}]"
        if not skipping:
            kept.append(line)
    if not any(line.strip() == "[superlink]" for line in kept):
        kept = ["[superlink]", f'default = "{name}"', "", *kept]
    entry = [f"[superlink.{name}]", f'address = "{superlink}"']
    entry.append(f'root-certificates = "{ca.resolve()}"' if ca is not None else "insecure = true")
    path.write_text("\n".join([*kept, "", *entry]).strip() + "\n")
    return path


# ------------------------------------------------------------------------------------------------ the flwr CLI


def _flwr_command(*args: str) -> tuple[list[str], dict[str, str]]:
    """The ``flwr`` command beside this interpreter (the same environment) with ``args``, and its environment."""
    exe = Path(sys.executable).with_name("flwr")
    return [str(exe if exe.exists() else "flwr"), *args], {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}


def flwr(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``flwr`` with ``args``, telemetry off; a failure is an error unless ``check`` is False."""
    argv, env = _flwr_command(*args)
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise RuntimeError(f"flwr {' '.join(args[:2])} failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


def register(keys: Path, hospitals: Sequence[str], connection: str, wait_s: float = 0.0) -> None:
    """Register each hospital's public key under its name; wait up to ``wait_s`` for the SuperLink to answer."""
    deadline = time.monotonic() + wait_s
    for hospital in hospitals:
        pub = keys / f"{hospital}.pub"
        if not pub.is_file():
            raise FileNotFoundError(
                f"no public key {pub}: make the keys with `fedami deploy keys` first "
                "(--keys is their coordinator/public folder)"
            )
        while True:
            proc = flwr("supernode", "register", str(pub), connection, "--name", hospital, check=False)
            if proc.returncode == 0 or UNAVAILABLE not in proc.stdout + proc.stderr or time.monotonic() > deadline:
                break
            time.sleep(1.0)  # a SuperLink starting with the coordinator (compose) answers within seconds
        if proc.returncode == 0:
            print(f"registered {hospital}")
        elif ALREADY_REGISTERED in proc.stdout + proc.stderr:
            # A SuperLink whose state survived (its database volume) keeps its registrations: registering
            # again is a no-op, so the compose file's coordinator can register on every start.
            print(f"{hospital} already registered")
        else:
            raise RuntimeError(
                f"flwr supernode register {hospital} failed: {(proc.stderr or proc.stdout).strip()[-2000:]}"
            )


def run_status(run_id: str, connection: str) -> dict[str, object]:
    listing = json.loads(flwr("ls", connection, "--run-id", run_id, "--format", "json").stdout)
    runs = [r for r in listing.get("runs", []) if str(r.get("run-id")) == run_id]
    if not runs:
        raise RuntimeError(f"the SuperLink knows no run {run_id}")
    run: dict[str, object] = runs[0]
    return run


def submit(overrides: dict[str, object], connection: str, app: Path) -> str:
    """Submit a run with the flat overrides (checked against the typed settings first); returns its id."""
    from common.config import AppConfig
    from common.config import flat as F

    F.parse(AppConfig, overrides)  # an unknown key or a bad value is an error here, before any submission
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(F.toml_table({k: v for k, v in overrides.items()}))  # type: ignore[misc]
        config = f.name
    try:
        proc = flwr("run", str(app), connection, "--run-config", config, "--format", "json")
    finally:
        os.unlink(config)
    reply = json.loads(proc.stdout)
    if not reply.get("success", False):
        raise RuntimeError(f"the SuperLink refused the run: {reply}")
    return str(reply["run-id"])


def stream_log(run_id: str, connection: str, out: IO[bytes] | None = None) -> subprocess.Popen[bytes]:
    """``flwr log --stream`` of the run, to ``out`` (default this process's output); it ends when the run does
    (its exit code means nothing)."""
    argv, env = _flwr_command("log", run_id, connection, "--stream")
    return subprocess.Popen(argv, env=env, stdout=out, stderr=out)


def _await_end(streamer: subprocess.Popen[bytes], seconds: float) -> None:
    """Up to ``seconds`` for ``streamer`` to end; at once if it has."""
    deadline = time.monotonic() + seconds
    while streamer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)


def follow(
    run_id: str,
    connection: str,
    *,
    poll_s: float = STATUS_POLL_S,
    timeout_s: float | None = None,
    pending_s: float = PENDING_LIMIT_S,
    out: IO[bytes] | None = None,
) -> dict[str, object]:
    """Stream the run's log (to ``out``, default this process's output) until it finishes; returns its final
    status entry.

    A run still ``pending`` after ``pending_s`` (its ServerApp never started) or unfinished after ``timeout_s``
    is stopped and raises ``TimeoutError``: the coordinator never waits forever. The status is asked for every
    ``poll_s`` while the log streams and, once the stream has ended with the run, after :data:`ENDED_POLL_S`,
    then twice as long each time up to ``poll_s``.
    """
    streamer = stream_log(run_id, connection, out)
    start, after_end = time.monotonic(), 0
    try:
        while True:
            status = run_status(run_id, connection)
            state = str(status.get("status", ""))
            if state.startswith(FINISHED):
                return status
            waited = time.monotonic() - start
            if state == PENDING and waited > pending_s:
                flwr("stop", run_id, connection, check=False)
                raise TimeoutError(
                    f"run {run_id} still pending after {waited:.0f} s, stopped: the SuperLink never started its "
                    "ServerApp (read the SuperLink's log; its certificate must also name localhost and 127.0.0.1, "
                    "as `fedami deploy keys` writes it)"
                )
            if timeout_s is not None and waited > timeout_s:
                flwr("stop", run_id, connection, check=False)
                raise TimeoutError(f"run {run_id} did not finish within {timeout_s:.0f} s: stopped")
            if streamer.poll() is None:
                _await_end(streamer, poll_s)
            else:
                time.sleep(min(poll_s, ENDED_POLL_S * 2**after_end))
                after_end += 1
    finally:
        streamer.terminate()
        try:
            streamer.wait(5)
        except subprocess.TimeoutExpired:
            streamer.kill()


# ------------------------------------------------------------------------------------------------------ main


def _hospitals(text: str) -> list[str]:
    names = [h.strip() for h in text.split(",") if h.strip()]
    if not names:
        raise SystemExit("error: --hospitals names no hospital")
    return names


def build_parser() -> argparse.ArgumentParser:
    from common.config import options as O

    p = argparse.ArgumentParser(
        prog="fedami deploy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    keys = sub.add_parser("keys", help="a CA, the SuperLink's certificate and one key pair per hospital")
    keys.add_argument("--hospitals", required=True, help="comma-separated hospital names")
    keys.add_argument(
        "--san",
        action="append",
        default=None,
        help="a DNS name or IP of the SuperLink (repeatable; superlink, localhost and 127.0.0.1 always)",
    )
    keys.add_argument("--out", type=Path, required=True)
    con = sub.add_parser("connect", help="the coordinator's connection to the SuperLink")
    con.add_argument("--superlink", required=True, help="host:port of the SuperLink")
    con.add_argument("--ca", type=Path, default=None, help="the CA certificate (omit with --insecure)")
    con.add_argument("--insecure", action="store_true", help="no TLS: tests on one machine only")
    con.add_argument("--name", default=CONNECTION)
    reg = sub.add_parser("register", help="register each hospital's public key under its name")
    reg.add_argument("--keys", type=Path, required=True, help="the public keys: <keys out>/coordinator/public")
    reg.add_argument("--hospitals", required=True)
    reg.add_argument("--connection", default=CONNECTION)
    reg.add_argument("--wait-s", type=float, default=0.0, help="wait this long for a SuperLink that is still starting")
    com = sub.add_parser("compose", help="the compose files: one per host, or the one-machine file")
    com.add_argument("--hospitals", required=True)
    com.add_argument("--superlink", default=None, help="host:port the hospitals reach the SuperLink at")
    com.add_argument("--out", type=Path, required=True, help="a folder (one per host), or the one-machine file")
    com.add_argument("--one-machine", action="store_true", help="every site on this machine, in one file")
    wrk = sub.add_parser("worker", help="a hospital's warm worker: its handlers in one long-lived process")
    wrk.add_argument("--socket", type=Path, required=True, help="the Unix socket the SuperNode's node config names")
    run = sub.add_parser("run", help="submit a run, stream it, exit with its real status")
    run.add_argument("--connection", default=CONNECTION)
    O.add_set_option(run)
    run.add_argument("--resume", type=Path, default=None, help="continue the run saved in this output folder")
    run.add_argument(
        "--app", type=Path, default=None, help="the Flower app's folder (default: $FEDAMI_APP_DIR or the checkout)"
    )
    run.add_argument("--timeout", type=float, default=None, help="stop the run after this many seconds")
    run.add_argument(
        "--pending-timeout",
        type=float,
        default=PENDING_LIMIT_S,
        help="stop a run whose ServerApp has not started after this many seconds",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from common.config import options as O

    try:
        if args.command == "keys":
            written = make_keys(_hospitals(args.hospitals), args.san or [], args.out)
            for name, path in written.items():
                print(f"{name:<24} {path}")
            print(
                "each machine gets its folder: the SuperLink superlink/, the coordinator coordinator/, a hospital "
                "its own folder; keep ca/ offline"
            )
        elif args.command == "connect":
            if (args.ca is None) != args.insecure:
                raise O.SettingsError("give --ca CA.crt, or --insecure for a test on one machine")
            print(f"wrote [superlink.{args.name}] into {write_connection(args.name, args.superlink, args.ca)}")
        elif args.command == "compose":
            from sim import compose as C

            hospitals = C.checked_hospitals(_hospitals(args.hospitals))
            if args.one_machine == (args.superlink is not None):
                raise O.SettingsError("give --superlink HOST:PORT (one file per host), or --one-machine")
            if args.one_machine:
                if args.out.exists():
                    raise FileExistsError(f"{args.out} exists: compose files are never overwritten")
                args.out.write_text(C.one_machine_text(hospitals))
                print(f"wrote {args.out}")
            else:
                for path in C.write_multi_host(hospitals, args.superlink, args.out):
                    print(f"wrote {path}")
                print("each host gets its folder, with its secrets/ (and a hospital its stores/) beside the file")
        elif args.command == "register":
            register(args.keys, _hospitals(args.hospitals), args.connection, args.wait_s)
        elif args.command == "worker":
            import logging

            from client import worker

            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
            worker.serve(args.socket.expanduser().resolve())
        else:
            overrides: dict[str, object] = dict(O.assignments(args.set_))
            if args.resume is not None:
                overrides["output.resume"] = str(args.resume.expanduser().resolve())
            run_id = submit(overrides, args.connection, args.app or app_dir())
            print(f"run {run_id} submitted to {args.connection}")
            status = follow(run_id, args.connection, timeout_s=args.timeout, pending_s=args.pending_timeout)
            print(f"run {run_id}: {status.get('status')} {status.get('status-details') or ''}".rstrip())
            return 0 if status.get("status") == COMPLETED else 1
    except TimeoutError as err:  # the run was stopped: a failed run
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (O.SettingsError, ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
