"""``fedami deploy`` without a SuperLink: the key folders, the coordinator's connection, the store export."""

from __future__ import annotations

import itertools
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from common.data.sources import export_stores
from common.data.store import SiteStore, StoreError
from sim import deploy as D

HOSPITALS = ["hospital_a", "hospital_b"]


def test_keys_come_in_one_folder_per_machine_each_hospital_holding_only_its_own_key(tmp_path: Path) -> None:
    D.make_keys(HOSPITALS, ["superlink", "10.0.0.5"], tmp_path)

    listing = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert listing == {
        "ca/ca.crt", "ca/ca.key",
        "superlink/ca.crt", "superlink/superlink.crt", "superlink/superlink.key",
        "coordinator/ca.crt", "coordinator/public/hospital_a.pub", "coordinator/public/hospital_b.pub",
        "hospital_a/ca.crt", "hospital_a/hospital_a.key", "hospital_b/ca.crt", "hospital_b/hospital_b.key",
    }  # fmt: skip
    for private in ("ca/ca.key", "superlink/superlink.key", "hospital_a/hospital_a.key"):
        assert stat.S_IMODE((tmp_path / private).stat().st_mode) == 0o600


def test_the_superlink_certificate_is_signed_by_the_ca_for_its_names_and_the_key_pairs_match(tmp_path: Path) -> None:
    D.make_keys(HOSPITALS, ["superlink", "10.0.0.5"], tmp_path)

    ca = x509.load_pem_x509_certificate((tmp_path / "ca/ca.crt").read_bytes())
    link = x509.load_pem_x509_certificate((tmp_path / "superlink/superlink.crt").read_bytes())
    link.verify_directly_issued_by(ca)
    sans = link.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # loopback always: the SuperLink's own ServerApp connects to it there (without it runs stay pending)
    assert sans.get_values_for_type(x509.DNSName) == ["superlink", "localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.5", "127.0.0.1"]
    private = serialization.load_ssh_private_key((tmp_path / "hospital_b/hospital_b.key").read_bytes(), None)
    public = serialization.load_ssh_public_key((tmp_path / "coordinator/public/hospital_b.pub").read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp384r1"
    assert private.public_key().public_numbers() == public.public_numbers()  # type: ignore[union-attr]


def test_keys_are_never_overwritten_and_role_names_are_not_hospital_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    D.make_keys(HOSPITALS, ["superlink"], tmp_path)
    before = (tmp_path / "hospital_a/hospital_a.key").read_bytes()

    again = D.main(["keys", "--hospitals", "hospital_a", "--out", str(tmp_path)])
    reserved = D.main(["keys", "--hospitals", "coordinator,hospital_c", "--out", str(tmp_path / "other")])

    err = capsys.readouterr().err
    assert again == 2 and "never overwritten" in err
    assert reserved == 2 and "reserved" in err and not (tmp_path / "other").exists()
    assert (tmp_path / "hospital_a/hospital_a.key").read_bytes() == before


def test_the_connection_is_added_beside_other_entries_and_replaced_when_written_again(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[superlink]\ndefault = "local"\n\n[superlink.local]\noptions.num-supernodes = 3\n'
    )

    D.write_connection("fedami", "link:8000", tmp_path / "ca.crt", home=tmp_path)
    D.write_connection("fedami", "other:9000", None, home=tmp_path)

    text = (tmp_path / "config.toml").read_text()
    assert text.count("[superlink.fedami]") == 1 and 'address = "other:9000"' in text and "insecure = true" in text
    assert "link:8000" not in text and "root-certificates" not in text
    assert "[superlink.local]" in text and "options.num-supernodes = 3" in text and 'default = "local"' in text


def test_connect_needs_a_ca_or_an_explicit_insecure(capsys: pytest.CaptureFixture[str]) -> None:
    assert D.main(["connect", "--superlink", "link:8000"]) == 2
    assert "--ca" in capsys.readouterr().err


def test_register_names_the_missing_public_key_and_the_command_that_makes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert D.main(["register", "--keys", str(tmp_path), "--hospitals", "hospital_a"]) == 2
    assert "fedami deploy keys" in capsys.readouterr().err


def fake_flwr(replies: list[tuple[int, str]], calls: list[tuple[str, ...]]) -> Any:
    """A stand-in for ``flwr``: hands out the replies in turn (the last one repeats)."""

    def flwr(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        rc, text = replies[min(len(calls), len(replies)) - 1]
        return subprocess.CompletedProcess(list(args), rc, stdout="", stderr=text)

    return flwr


def test_register_waits_for_a_superlink_that_is_starting_and_passes_a_held_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    D.make_keys(HOSPITALS, [], tmp_path)
    calls: list[tuple[str, ...]] = []
    replies = [(1, D.UNAVAILABLE), (1, D.UNAVAILABLE), (0, ""), (1, f"{D.ALREADY_REGISTERED} (code 2)")]
    monkeypatch.setattr(D, "flwr", fake_flwr(replies, calls))
    monkeypatch.setattr(D.time, "sleep", lambda s: None)

    D.register(tmp_path / "coordinator/public", HOSPITALS, "fedami", wait_s=60)

    assert [c[-1] for c in calls] == ["hospital_a", "hospital_a", "hospital_a", "hospital_b"]
    assert capsys.readouterr().out.splitlines() == ["registered hospital_a", "hospital_b already registered"]


def test_register_gives_up_on_an_unavailable_superlink_after_its_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    D.make_keys(HOSPITALS, [], tmp_path)
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(D, "flwr", fake_flwr([(1, D.UNAVAILABLE)], calls))
    clock = iter(range(0, 10_000, 10))  # every look at the clock: 10 s later
    monkeypatch.setattr(D.time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(D.time, "sleep", lambda s: None)

    with pytest.raises(RuntimeError, match="unavailable"):
        D.register(tmp_path / "coordinator/public", HOSPITALS, "fedami", wait_s=30)
    assert 2 <= len(calls) <= 5  # retried within the wait, then stopped


def test_a_run_whose_serverapp_never_starts_is_stopped_and_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(D, "flwr", fake_flwr([(0, "")], calls))
    monkeypatch.setattr(D, "run_status", lambda run_id, connection: {"status": D.PENDING})
    monkeypatch.setattr(D, "stream_log", lambda run_id, connection, out=None: subprocess.Popen(["sleep", "30"]))
    monkeypatch.setattr(D, "submit", lambda overrides, connection, app: "42")
    monkeypatch.setattr(D.time, "sleep", lambda s: None)
    clock = iter(range(0, 10_000, 50))
    monkeypatch.setattr(D.time, "monotonic", lambda: float(next(clock)))

    rc = D.main(["run", "--pending-timeout", "120"])

    assert rc == 1
    assert calls == [("stop", "42", D.CONNECTION)]
    err = capsys.readouterr().err
    assert "still pending" in err and "never started its ServerApp" in err and "127.0.0.1" in err


def test_each_store_is_exported_to_a_folder_of_its_own_and_never_overwrites_another(
    tiny_cohort: list[SiteStore], tmp_path: Path
) -> None:
    out = tmp_path / "stores"

    first = export_stores(tiny_cohort, out)
    again = export_stores(tiny_cohort, out)  # the same stores: nothing to do

    assert first == again == [out / s.site for s in tiny_cohort]
    assert sorted(p.name for p in out.iterdir()) == sorted(s.site for s in tiny_cohort)
    for store in tiny_cohort:
        copied = {p.relative_to(out / store.site) for p in (out / store.site).rglob("*")}
        assert copied == {p.relative_to(store.path) for p in store.path.rglob("*")}
    foreign = tmp_path / "foreign"
    (foreign / tiny_cohort[0].site).mkdir(parents=True)
    (foreign / tiny_cohort[0].site / "manifest.json").write_text("{}")
    with pytest.raises(StoreError, match="holds another store"):
        export_stores(tiny_cohort, foreign)
    assert (foreign / tiny_cohort[0].site / "manifest.json").read_text() == "{}"


class _Stream:
    """A log stream that ends after ``checks`` looks at it."""

    def __init__(self, checks: int) -> None:
        self.left = checks

    def poll(self) -> int | None:
        self.left -= 1
        return 0 if self.left < 0 else None

    def terminate(self) -> None:
        pass

    def wait(self, timeout: float | None = None) -> int:
        return 0


def test_the_launcher_asks_for_the_status_every_poll_while_the_log_streams_and_soon_after_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: the clock moves 1 s at every look; the stream ends after about 120 s, the run is finished then
    stream = _Stream(checks=60)
    asked: list[float] = []

    def status(run_id: str, connection: str) -> dict[str, object]:
        asked.append(D.time.monotonic())
        return {"status": "finished:completed" if stream.left < 0 else "running"}

    clock = iter(range(100_000))
    monkeypatch.setattr(D.time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(D.time, "sleep", lambda s: None)
    monkeypatch.setattr(D, "run_status", status)
    monkeypatch.setattr(D, "stream_log", lambda run_id, connection, out=None: stream)

    # Execute
    final = D.follow("42", D.CONNECTION, poll_s=15.0)

    # Assert: one status query per 15 s of streaming (not one a second), then one as the stream ended
    assert final == {"status": "finished:completed"}
    assert 4 <= len(asked) <= 7
    assert all(b - a >= 15 for a, b in itertools.pairwise(asked[:-1]))
