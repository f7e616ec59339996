"""Recipient directory with admin-OTP gate, and the otp / enroll / recipients CLI commands."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import cv2
import pytest

from gateway.biometrics.keyrelease import RELEASE_CAPTURES
from gateway.cli import main
from gateway.crypto.recipients import generate_recipient
from gateway.errors import AdminError, ConfigError
from gateway.files import write_atomic
from gateway.otp import STEP_S, generate_secret, totp_at
from gateway.recipients_store import ADMIN_SECRET, AdminOtpRefused, add_card, list_cards
from gateway.rng import SeededRandom, system_clock
from models.synth import fingerprint, iris

T0 = 1_800_000_000 * 1_000_000_000
STEP_NS = STEP_S * 1_000_000_000


def _card(tmp_path: Path, name: str, seed: bytes) -> Path:
    _, card = generate_recipient(name, SeededRandom(seed))
    return card.save(tmp_path / f"{name}-{seed.hex()}.card")


def test_add_requires_valid_fresh_admin_code(tmp_path: Path, admin_state: tuple[Path, str]) -> None:
    state, secret = admin_state
    card = _card(tmp_path, "dr.bob", b"1")
    clock = lambda: T0  # noqa: E731
    code = totp_at(secret, T0 // STEP_NS)
    with pytest.raises(AdminOtpRefused):
        add_card(state, card, f"{(int(code) + 1) % 1_000_000:06d}", clock=clock)
    assert list_cards(state) == []
    dest = add_card(state, card, code, clock=clock)
    assert dest == state / "recipients" / "dr.bob.card"
    with pytest.raises(AdminOtpRefused):  # the same code cannot add a second card
        add_card(state, _card(tmp_path, "dr.eve", b"2"), code, clock=clock)
    names = [n for n, _ in list_cards(state)]
    assert names == ["dr.bob"]


def test_different_card_same_name_is_not_replaced(tmp_path: Path, admin_state: tuple[Path, str]) -> None:
    state, secret = admin_state
    add_card(state, _card(tmp_path, "dr.bob", b"1"), totp_at(secret, T0 // STEP_NS), clock=lambda: T0)
    t1 = T0 + STEP_NS
    with pytest.raises(AdminError):
        add_card(state, _card(tmp_path, "dr.bob", b"9"), totp_at(secret, t1 // STEP_NS), clock=lambda: t1)


def test_admin_secret_must_be_private_and_card_valid(tmp_path: Path, admin_state: tuple[Path, str]) -> None:
    state, secret = admin_state
    bad = tmp_path / "bad.card"
    bad.write_text(
        '{"format": "medshield-recipient-card", "version": 1, "name": "x", "key_id": "00", "public_key": "AA"}'
    )
    with pytest.raises(ConfigError):
        add_card(state, bad, totp_at(secret, T0 // STEP_NS), clock=lambda: T0)
    os.chmod(state / ADMIN_SECRET, 0o644)
    with pytest.raises(ConfigError):
        add_card(state, _card(tmp_path, "dr.bob", b"1"), "123456", clock=lambda: T0)
    with pytest.raises(ConfigError):
        add_card(tmp_path / "nowhere", _card(tmp_path, "dr.bob", b"1"), "123456")


@pytest.fixture
def keyserver(tmp_path: Path, tls_cert: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    """A key-release service over HTTPS on loopback, state in tmp_path/ks (shared with the CLI)."""
    from gateway.keyserver.http import KeyServer
    from gateway.keyserver.service import KeyService

    server = KeyServer(KeyService(tmp_path / "ks"), *tls_cert).start()
    yield server, tls_cert[0]
    server.stop()


def _totp_secret(uri_file: Path) -> str:
    """What the authenticator app learns from the QR code."""
    import pyotp

    return pyotp.parse_uri(uri_file.read_text().strip()).secret


def _ks_args(tmp_path: Path, name: str, keyserver) -> list[str]:  # type: ignore[no-untyped-def]
    server, cert = keyserver
    assert main(["keyserver", "add", name, "--state", str(tmp_path / "ks"), "--out", str(tmp_path / "admin")]) == 0
    return ["--keyserver", server.url, "--keyserver-ca", str(cert), "--enrol-token",
            str(tmp_path / "admin" / f"{name}.enrol-token")]


def test_cli_provision_enroll_and_recipients(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch, keyserver) -> None:  # type: ignore[no-untyped-def]
    ks = _ks_args(tmp_path, "alice", keyserver)
    for f in ("alice.otp.uri", "alice.otp.png", "alice.enrol-token"):
        assert stat.S_IMODE((tmp_path / "admin" / f).stat().st_mode) == 0o600
    secret = _totp_secret(tmp_path / "admin" / "alice.otp.uri")
    assert secret not in capsys.readouterr().out
    out = tmp_path / "alice"
    fps, eyes = [], []
    for i, (f, e) in enumerate(zip(fingerprint.impressions(3_000_005, 3), iris.captures(3_000_005, 3), strict=False)):
        fps.append(tmp_path / f"fp{i}.png")
        eyes.append(tmp_path / f"eye{i}.png")
        cv2.imwrite(str(fps[-1]), f)
        cv2.imwrite(str(eyes[-1]), e)
    pass_file = tmp_path / "pass"
    pass_file.write_text("a long profile passphrase\n")
    common = ["--fingerprint", *map(str, fps), "--iris", *map(str, eyes), "--device-id", "ws-1", "--out", str(out)]
    weak = tmp_path / "weak"
    weak.write_text("password1234\n")
    assert main(["enroll", "alice", *common, *ks, "--profile-pass-file", str(weak)]) == 1
    assert "passphrase" in capsys.readouterr().err
    assert main(["enroll", "alice", *common, *ks, "--profile-pass-file", str(pass_file)]) == 0
    assert stat.S_IMODE((out / "alice.profile").stat().st_mode) == 0o600
    card_doc = json.loads((out / "alice.card").read_text())
    assert set(card_doc) == {"format", "version", "name", "key_id", "public_key"}
    # Nowhere beside the profile is the TOTP secret.
    for f in out.iterdir():
        assert secret.encode() not in f.read_bytes()
    # The enrolment token was spent: enrolling again with it is refused, with a clear message.
    assert main(["enroll", "alice", *common, *ks[:4], "--enrol-token", ks[5], "--profile-pass-file",
                 str(pass_file)]) == 1
    assert "refused" in capsys.readouterr().err

    # Without a passphrase, enrolment is a usage error with a clear message, not a crash.
    monkeypatch.delenv("MEDSHIELD_PROFILE_PASS", raising=False)
    assert main(["enroll", "bob", *common, *ks]) == 2  # usage error (gateway.cli exit codes)
    assert "passphrase" in capsys.readouterr().err

    state = tmp_path / "gw"
    state.mkdir()
    admin = generate_secret(SeededRandom(b"adm"))
    write_atomic(state / ADMIN_SECRET, (admin + "\n").encode())
    code = totp_at(admin, system_clock() // STEP_NS)
    assert main(["recipients", "add", str(out / "alice.card"), "--admin-otp", code, "--state-dir", str(state)]) == 0
    capsys.readouterr()
    assert main(["recipients", "list", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().out.startswith(f"alice\t{card_doc['key_id']}")


def test_cli_clinician_opens_envelope_with_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], keyserver) -> None:  # type: ignore[no-untyped-def]
    """keyserver add → enroll → protect to the card → open with fresh captures + OTP + profile (the real CLI),
    then with the printed recovery key instead of the service."""
    import numpy as np

    out = tmp_path / "dr"
    ks = _ks_args(tmp_path, "dr", keyserver)
    secret = _totp_secret(tmp_path / "admin" / "dr.otp.uri")
    seed = 3_000_001
    caps = []
    for i, (f, e) in enumerate(zip(fingerprint.impressions(seed, 4), iris.captures(seed, 4), strict=False)):
        fp_path, eye_path = tmp_path / f"fp{i}.png", tmp_path / f"eye{i}.png"
        cv2.imwrite(str(fp_path), f)
        cv2.imwrite(str(eye_path), e)
        caps.append((fp_path, eye_path))
    # Fresh captures for opening: not among the enrolment captures.
    fresh: list[str] = []
    for i, (f_new, e_new) in enumerate(zip(fingerprint.impressions(seed, RELEASE_CAPTURES, first_capture=20),
                                           iris.captures(seed, RELEASE_CAPTURES, first_capture=20), strict=False)):
        cv2.imwrite(str(tmp_path / f"fresh_fp{i}.png"), f_new)
        cv2.imwrite(str(tmp_path / f"fresh_eye{i}.png"), e_new)
        fresh += ["--fingerprint", str(tmp_path / f"fresh_fp{i}.png"), "--iris", str(tmp_path / f"fresh_eye{i}.png")]
    monkeypatch.setenv("MEDSHIELD_PROFILE_PASS", "clinician passphrase, long enough")
    monkeypatch.setenv("MEDSHIELD_DEVICE_ID", "ws-cardiology-2")
    assert main(["enroll", "dr", "--fingerprint", *[str(c[0]) for c in caps], "--iris", *[str(c[1]) for c in caps],
                 *ks, "--device-id", "ws-cardiology-2", "--out", str(out)]) == 0
    image = np.random.default_rng(3).integers(0, 256, (96, 96), dtype=np.uint8)
    np.save(tmp_path / "scan.npy", image)
    mask = np.zeros((96, 96), np.uint8)
    mask[40:50, 40:50] = 1
    np.save(tmp_path / "mask.npy", mask)
    # Random pixels have no air around a body: only the paper's carrier rule finds room in them.
    assert main(["gateway-key", "--device-id", "gw-1", "--key", str(tmp_path / "gw.key")]) == 0
    assert main(["protect", str(tmp_path / "scan.npy"), "-r", str(out / "dr.card"), "-o", str(tmp_path / "s.msh"),
                 "--mask", str(tmp_path / "mask.npy"), "--device-key", str(tmp_path / "gw.key"),
                 "--device-id", "gw-1", "--carriers", "non-lesion"]) == 0
    opened = tmp_path / "opened.npy"
    base = ["open", str(tmp_path / "s.msh"), "--profile", str(out / "dr.profile"), *fresh, "-o", str(opened),
            "--restore-original", "--gateways", str(tmp_path / "gw-1.gateway-card")]
    code = totp_at(secret, system_clock() // STEP_NS)
    capsys.readouterr()
    assert main([*base, "--otp", code]) == 0
    assert np.array_equal(np.load(opened), image)
    opened.unlink()
    assert main([*base, "--otp", code]) == 1  # the same code again: replay refused, one opaque message
    assert capsys.readouterr().err.strip() == "medshield: could not open envelope"
    assert main([*base, "--recovery-key", str(out / "dr.recovery.txt")]) == 0
    assert np.array_equal(np.load(opened), image)
