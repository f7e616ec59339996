"""The key-release service: a share only for a valid, unreplayed code plus a proof of R; lock-out that counts
biometric failures; durable state; an audit log without secrets; HTTPS with a pinned certificate."""

from __future__ import annotations

import json
import ssl
import stat
import urllib.error
from pathlib import Path

import pytest

from gateway.keyserver.http import KeyServer, KeyServerClient
from gateway.keyserver.service import KeyService, Policy, bio_key, release_proof, share_pad
from gateway.otp import STEP_S, totp_at
from gateway.rng import SeededRandom
from tests.biometrics.conftest import Clock

T0 = 1_800_000_000 * 1_000_000_000
STEP_NS = STEP_S * 1_000_000_000
R = b"\x11" * 32
SHARE = bytes(range(32))


def _service(tmp_path: Path, clock: Clock, **policy: int) -> tuple[KeyService, str]:
    svc = KeyService(tmp_path / "ks", policy=Policy(**policy), clock=clock, rng=SeededRandom(b"ks"))
    acct = svc.add_account("alice")
    assert svc.enrol("alice", acct.enrol_token, SHARE, bio_key(R))
    return svc, acct.totp_secret


def _ask(svc: KeyService, secret: str, clock: Clock, r: bytes = R, code: str | None = None,
         nonce: bytes = b"n" * 16) -> bytes | None:
    code = code if code is not None else totp_at(secret, clock.ns // STEP_NS)
    padded = svc.release("alice", code, nonce, release_proof(bio_key(r), "alice", code, nonce))
    if padded is None:
        return None
    return bytes(a ^ b for a, b in zip(padded, share_pad(bio_key(r), "alice", nonce), strict=False))


def test_share_released_only_for_fresh_code_and_proof(tmp_path: Path) -> None:
    clock = Clock(T0)
    svc, secret = _service(tmp_path, clock)
    code = totp_at(secret, T0 // STEP_NS)
    assert _ask(svc, secret, clock, code=code) == SHARE
    clock.ns += 5 * 10**9  # same step: the code is still current, but it was spent
    assert _ask(svc, secret, clock, code=code) is None
    clock.ns += STEP_NS
    wrong = f"{(int(totp_at(secret, clock.ns // STEP_NS)) + 1) % 10**6:06d}"
    assert _ask(svc, secret, clock, code=wrong) is None
    clock.ns += STEP_NS
    assert _ask(svc, secret, clock, r=b"\x12" * 32) is None  # valid code, wrong biometric
    clock.ns += STEP_NS
    assert _ask(svc, secret, clock) == SHARE


def test_enrolment_token_is_single_use(tmp_path: Path) -> None:
    svc = KeyService(tmp_path / "ks", rng=SeededRandom(b"t"))
    acct = svc.add_account("bob")
    assert not svc.enrol("bob", "0" * 40, SHARE, bio_key(R))
    assert svc.enrol("bob", acct.enrol_token, SHARE, bio_key(R))
    assert not svc.enrol("bob", acct.enrol_token, b"\0" * 32, bio_key(b"\0" * 32))  # no overwrite by a replay


def test_biometric_failures_lock_out_and_lock_out_survives_restart(tmp_path: Path) -> None:
    clock = Clock(T0)
    svc, secret = _service(tmp_path, clock, max_failures=3, lockout_s=600)
    for _ in range(3):  # valid, fresh codes each time: only the biometric is wrong
        assert _ask(svc, secret, clock, r=b"\x99" * 32) is None
        clock.ns += STEP_NS
    assert _ask(svc, secret, clock) is None  # the genuine user is locked out too
    assert svc.status("alice")["lockouts"] == 1
    clock.ns += STEP_NS
    restarted = KeyService(tmp_path / "ks", policy=Policy(max_failures=3, lockout_s=600), clock=clock)
    assert _ask(restarted, secret, clock) is None
    clock.ns += 600 * 10**9
    # Without a success in between, the next lock-out lasts twice as long.
    for _ in range(3):
        clock.ns += STEP_NS
        assert _ask(restarted, secret, clock, r=b"\x99" * 32) is None
    clock.ns += 601 * 10**9
    assert _ask(restarted, secret, clock) is None
    clock.ns += 600 * 10**9
    assert _ask(restarted, secret, clock) == SHARE
    assert restarted.status("alice") == {"failures": 0, "lockouts": 0, "locked_until_ns": 0, "enrolled": 1}


def test_replay_state_is_durable(tmp_path: Path) -> None:
    clock = Clock(T0)
    svc, secret = _service(tmp_path, clock)
    code = totp_at(secret, T0 // STEP_NS)
    assert _ask(svc, secret, clock, code=code) == SHARE
    again = KeyService(tmp_path / "ks", clock=clock)
    assert _ask(again, secret, clock, code=code) is None


def test_rate_limit_per_account(tmp_path: Path) -> None:
    clock = Clock(T0)
    svc, secret = _service(tmp_path, clock, per_account_per_min=2, max_failures=100)
    assert _ask(svc, secret, clock, code="000000") is None
    assert _ask(svc, secret, clock, code="000001") is None
    clock.ns += STEP_NS
    assert _ask(svc, secret, clock) is None  # third request within the minute: refused before any check
    clock.ns += 61 * 10**9
    assert _ask(svc, secret, clock) == SHARE


def test_audit_log_records_decisions_without_secrets(tmp_path: Path) -> None:
    clock = Clock(T0)
    svc, secret = _service(tmp_path, clock)
    code = totp_at(secret, T0 // STEP_NS)
    _ask(svc, secret, clock, code=code)
    _ask(svc, secret, clock, code=code)
    clock.ns += STEP_NS
    _ask(svc, secret, clock, r=b"\x99" * 32)
    path = tmp_path / "ks" / "audit.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ks" / "keyserver.db").stat().st_mode) == 0o600
    raw = path.read_text()
    recs = [json.loads(line) for line in raw.splitlines()]
    assert [(r["event"], r["outcome"], r["reason"]) for r in recs[-3:]] == [
        ("release", "ok", ""), ("release", "refused", "replayed_code"), ("release", "refused", "biometric_mismatch")]
    for needle in (secret, code, SHARE.hex(), bio_key(R).hex(), "ESIR"):  # ESIR: b32 of the share's start
        assert needle not in raw


def test_https_service_with_pinned_certificate(tmp_path: Path, tls_cert: tuple[Path, Path]) -> None:
    cert, key = tls_cert
    clock = Clock(T0)
    svc = KeyService(tmp_path / "ks", clock=clock, rng=SeededRandom(b"h"))
    acct = svc.add_account("alice")
    server = KeyServer(svc, cert, key).start()
    try:
        client = KeyServerClient(server.url, cert.read_text())
        assert client.enrol("alice", acct.enrol_token, SHARE, bio_key(R))
        code = totp_at(acct.totp_secret, T0 // STEP_NS)
        nonce = b"m" * 16
        padded = client.release("alice", code, nonce, release_proof(bio_key(R), "alice", code, nonce))
        assert padded is not None
        assert bytes(a ^ b for a, b in zip(padded, share_pad(bio_key(R), "alice", nonce), strict=False)) == SHARE
        assert client.release("alice", code, nonce, release_proof(bio_key(R), "alice", code, nonce)) is None
        # A client that pins another certificate refuses to talk to this server.
        other = tmp_path / "other.pem"
        import subprocess

        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(tmp_path / "k2"), "-out", str(other), "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                       capture_output=True)
        with pytest.raises(urllib.error.URLError) as exc:
            KeyServerClient(server.url, other.read_text()).release("alice", "123456", nonce, b"\0" * 32)
        assert isinstance(exc.value.reason, ssl.SSLCertVerificationError)
        with pytest.raises(ValueError):
            KeyServerClient(server.url.replace("https", "http"), cert.read_text())
    finally:
        server.stop()
