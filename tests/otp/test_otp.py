"""TOTP provisioning and verification: window, replay refusal, lock-out, persisted state (injected clock)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gateway.errors import AdminError
from gateway.otp import STEP_S, OtpVerifier, generate_secret, provision, read_secret_file, totp_at
from gateway.rng import SeededRandom

T0 = 1_800_000_000 * 1_000_000_000  # a fixed instant (ns), on a step boundary
STEP_NS = STEP_S * 1_000_000_000


class Clock:
    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def secret() -> str:
    return generate_secret(SeededRandom(b"otp-test"))


def _verifier(secret: str, tmp_path: Path, clock: Clock, **kw: int) -> OtpVerifier:
    return OtpVerifier(secret, tmp_path / "state.json", clock=clock, **kw)


def test_provision_writes_private_files(tmp_path: Path) -> None:
    res = provision("dr.alice", tmp_path / "otp", rng=SeededRandom(b"p"))
    for p in (res.secret_path, res.uri_path, res.qr_path):
        assert _mode(p) == 0o600
    secret = read_secret_file(res.secret_path)
    uri = res.uri_path.read_text().strip()
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri and "issuer=MedShield" in uri
    assert res.qr_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_secret_is_160_bits_and_bad_secret_refused(tmp_path: Path) -> None:
    assert len(generate_secret()) == 32
    with pytest.raises(AdminError):
        OtpVerifier("not base32!!", tmp_path / "s")
    bad = tmp_path / "bad.secret"
    bad.write_text("AAAA")
    with pytest.raises(AdminError):
        read_secret_file(bad)


def test_current_and_adjacent_steps_accepted_two_away_refused(secret: str, tmp_path: Path) -> None:
    step = T0 // STEP_NS
    clock = Clock(T0 + 5 * 1_000_000_000)
    assert _verifier(secret, tmp_path / "a", clock).verify(totp_at(secret, step))
    assert _verifier(secret, tmp_path / "b", clock).verify(totp_at(secret, step - 1))
    assert _verifier(secret, tmp_path / "c", clock).verify(totp_at(secret, step + 1))
    assert not _verifier(secret, tmp_path / "d", clock).verify(totp_at(secret, step - 2))
    assert not _verifier(secret, tmp_path / "e", clock).verify(totp_at(secret, step + 2))


def test_replay_refused_even_by_a_new_verifier(secret: str, tmp_path: Path) -> None:
    clock = Clock(T0)
    code = totp_at(secret, T0 // STEP_NS)
    assert _verifier(secret, tmp_path, clock).verify(code)
    assert not _verifier(secret, tmp_path, clock).verify(code)
    # An older step's code is refused once a newer one was used.
    clock.ns += STEP_NS
    assert _verifier(secret, tmp_path, clock).verify(totp_at(secret, T0 // STEP_NS + 1))
    assert not _verifier(secret, tmp_path, clock).verify(totp_at(secret, T0 // STEP_NS))
    assert _mode(tmp_path / "state.json") == 0o600


def test_lockout_after_repeated_failures_then_recovers(secret: str, tmp_path: Path) -> None:
    clock = Clock(T0)
    v = _verifier(secret, tmp_path, clock, max_failures=3, lockout_s=120)
    good = totp_at(secret, T0 // STEP_NS)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    for _ in range(3):
        assert not v.verify(wrong)
    assert not v.verify(good)  # locked: even the right code is refused
    clock.ns += 119 * 1_000_000_000
    assert not v.verify(totp_at(secret, clock.ns // STEP_NS))
    clock.ns += 2 * 1_000_000_000
    assert v.verify(totp_at(secret, clock.ns // STEP_NS))


def test_success_resets_failure_counter(secret: str, tmp_path: Path) -> None:
    clock = Clock(T0)
    v = _verifier(secret, tmp_path, clock, max_failures=3)
    assert not v.verify("garbage")
    assert v.verify(totp_at(secret, T0 // STEP_NS))
    clock.ns += STEP_NS
    assert not v.verify("garbage")
    assert not v.verify("garbage")
    assert v.verify(totp_at(secret, clock.ns // STEP_NS))


def test_corrupt_state_fails_closed(secret: str, tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    assert not _verifier(secret, tmp_path, Clock(T0)).verify(totp_at(secret, T0 // STEP_NS))


def test_state_file_name_does_not_reveal_secret(secret: str) -> None:
    name = OtpVerifier.state_name(secret)
    assert secret not in name and secret.lower() not in name
    assert os.sep not in name
