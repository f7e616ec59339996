"""Enrolment and key release end to end on generated captures of identities never used in training."""

from __future__ import annotations

import dataclasses
import json
import stat
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from gateway.biometrics import profile as profiles
from gateway.biometrics.features import FeatureExtractor
from gateway.biometrics.keyrelease import (RELEASE_CAPTURES, enrol, enrol_features, k_enc, release_k_enc,
                                           release_private_key)
from gateway.crypto.recipients import RecipientCard, recipient_from_seed
from gateway.errors import InputError, OpenError
from gateway.otp import STEP_S, OtpVerifier, generate_secret, totp_at
from gateway.rng import SeededRandom
from models.synth import fingerprint, iris

ALICE, BOB = 3_000_001, 3_000_002  # outside every training/validation seed range
T0 = 1_800_000_000 * 1_000_000_000
STEP_NS = STEP_S * 1_000_000_000
PASS = b"correct horse battery staple"
DEVICE = "ws-radiology-07"


class Clock:
    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns


def _captures(seed: int, count: int, first: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return (fingerprint.impressions(seed, count, first_capture=first),
            iris.captures(seed, count, first_capture=first))


@pytest.fixture(scope="module")
def ext() -> FeatureExtractor:
    return FeatureExtractor()


@pytest.fixture(scope="module")
def feats(ext: FeatureExtractor) -> dict[str, np.ndarray]:
    return {"alice_enrol": ext.embed(*_captures(ALICE, 4)).key_features(),
            "alice_fresh": ext.embed(*_captures(ALICE, RELEASE_CAPTURES, first=20)).key_features(),
            "bob_fresh": ext.embed(*_captures(BOB, RELEASE_CAPTURES, first=20)).key_features()}


@pytest.fixture
def enrolled(feats: dict[str, np.ndarray], ext: FeatureExtractor, tmp_path: Path):  # type: ignore[no-untyped-def]
    secret = generate_secret(SeededRandom(b"alice-otp"))
    helper, key = enrol_features(feats["alice_enrol"], secret, DEVICE, rng=SeededRandom(b"alice-enrol"))
    card = recipient_from_seed("alice", key)[1]
    prof = profiles.Profile(name="alice", key_id=card.key_id, device_id=DEVICE, otp_secret=secret,
                            model_sha256=ext.sha256, helper=helper)
    clock = Clock(T0)
    verifier = OtpVerifier(secret, tmp_path / "otp.state", clock=clock)
    return prof, key, verifier, clock


def _code(prof: profiles.Profile, clock: Clock) -> str:
    return totp_at(prof.otp_secret, clock.ns // STEP_NS)


def test_fresh_capture_same_identity_releases_same_key(enrolled, feats, ext) -> None:  # type: ignore[no-untyped-def]
    prof, key, verifier, clock = enrolled
    got = release_k_enc(prof, feats["alice_fresh"], _code(prof, clock), DEVICE, verifier, ext.sha256)
    assert got == key and len(got) == 32


def test_other_identity_refused(enrolled, feats, ext) -> None:  # type: ignore[no-untyped-def]
    prof, _, verifier, clock = enrolled
    with pytest.raises(OpenError):
        release_k_enc(prof, feats["bob_fresh"], _code(prof, clock), DEVICE, verifier, ext.sha256)


def test_wrong_otp_refused(enrolled, feats, ext) -> None:  # type: ignore[no-untyped-def]
    prof, _, verifier, clock = enrolled
    good = _code(prof, clock)
    wrong = f"{(int(good) + 7) % 1_000_000:06d}"
    with pytest.raises(OpenError):
        release_k_enc(prof, feats["alice_fresh"], wrong, DEVICE, verifier, ext.sha256)


def test_replayed_otp_refused(enrolled, feats, ext) -> None:  # type: ignore[no-untyped-def]
    prof, key, verifier, clock = enrolled
    code = _code(prof, clock)
    assert release_k_enc(prof, feats["alice_fresh"], code, DEVICE, verifier, ext.sha256) == key
    clock.ns += 10 * 1_000_000_000  # same 30 s step: the code is still "current"
    with pytest.raises(OpenError):
        release_k_enc(prof, feats["alice_fresh"], code, DEVICE, verifier, ext.sha256)


def test_other_device_refused_and_changes_key(enrolled, feats, ext) -> None:  # type: ignore[no-untyped-def]
    prof, key, verifier, clock = enrolled
    with pytest.raises(OpenError):
        release_k_enc(prof, feats["alice_fresh"], _code(prof, clock), "ws-elsewhere", verifier, ext.sha256)
    # Even if the device check were bypassed, eq. 15 binds the id into the key.
    assert k_enc(b"\x01" * 16, prof.otp_secret, DEVICE) != k_enc(b"\x01" * 16, prof.otp_secret, "ws-elsewhere")


@pytest.mark.parametrize("field", ["offset", "commitment", "selected", "rotation_seed"])
def test_altered_helper_refused(enrolled, feats, ext, field: str) -> None:  # type: ignore[no-untyped-def]
    prof, _, verifier, clock = enrolled
    h = prof.helper
    if field == "offset":
        off = h.offset.copy()
        off[: 1 << h.params.m] ^= 1
        h = dataclasses.replace(h, offset=off)
    elif field == "commitment":
        h = dataclasses.replace(h, commitment=bytes(32))
    elif field == "selected":
        h = dataclasses.replace(h, selected=np.roll(h.selected, 7))
    else:
        h = dataclasses.replace(h, rotation_seed=bytes(32))
    bad = dataclasses.replace(prof, helper=h)
    with pytest.raises(OpenError):
        release_k_enc(bad, feats["alice_fresh"], _code(prof, clock), DEVICE, verifier, ext.sha256)


def test_other_model_refused(enrolled, feats) -> None:  # type: ignore[no-untyped-def]
    prof, _, verifier, clock = enrolled
    with pytest.raises(OpenError):
        release_k_enc(prof, feats["alice_fresh"], _code(prof, clock), DEVICE, verifier, "0" * 64)


def test_profile_encrypted_0600_without_clear_secrets(enrolled, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prof, _, _, _ = enrolled
    path = profiles.save(tmp_path / "alice.profile", prof, PASS, rng=SeededRandom(b"s"), scrypt_n=1 << 10)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    for needle in (prof.otp_secret, DEVICE, prof.helper.commitment.hex(), str(int(prof.helper.selected[0])) + ","):
        assert needle.encode() not in raw
    assert set(json.loads(raw)) == {"format", "version", "cipher", "kdf", "nonce", "ciphertext", "tag"}
    assert profiles.load(path, PASS).to_json() == prof.to_json()
    assert prof.otp_secret not in repr(prof)
    with pytest.raises(OpenError):
        profiles.load(path, b"wrong passphrase!")
    doc = json.loads(raw)
    doc["kdf"]["n"] = 1 << 11  # tampering with the header is detected (it is associated data)
    (tmp_path / "t.profile").write_text(json.dumps(doc))
    with pytest.raises(OpenError):
        profiles.load(tmp_path / "t.profile", PASS)
    with pytest.raises(InputError):
        profiles.seal(prof, b"short")


def test_enrol_and_release_private_key_files_logs_and_envelope(tmp_path: Path, ext: FeatureExtractor) -> None:
    secret = generate_secret(SeededRandom(b"carol-otp"))
    fps, eyes = _captures(ALICE, 4)
    with capture_logs() as logs:
        profile_path, card_path = enrol("alice", fps, eyes, secret, DEVICE, tmp_path, PASS, extractor=ext,
                                        rng=SeededRandom(b"carol"), scrypt_n=1 << 10)
    assert stat.S_IMODE(profile_path.stat().st_mode) == 0o600
    card_doc = json.loads(card_path.read_text())
    assert set(card_doc) == {"format", "version", "name", "key_id", "public_key"}
    card = RecipientCard.load(card_path)

    fresh_fp, fresh_eye = _captures(ALICE, RELEASE_CAPTURES, first=20)
    clock = Clock(T0)
    code = totp_at(secret, T0 // STEP_NS)
    with capture_logs() as logs2:
        key = release_private_key(profile_path, fresh_fp, fresh_eye, code, device_id=DEVICE,
                                  otp_state_dir=tmp_path / "state", passphrase=PASS, extractor=ext, clock=clock)
        with pytest.raises(OpenError):  # replay of the same code
            release_private_key(profile_path, fresh_fp, fresh_eye, code, device_id=DEVICE,
                                otp_state_dir=tmp_path / "state", passphrase=PASS, extractor=ext, clock=clock)
        clock.ns += STEP_NS
        with pytest.raises(OpenError):  # wrong passphrase
            release_private_key(profile_path, fresh_fp, fresh_eye, totp_at(secret, clock.ns // STEP_NS),
                                device_id=DEVICE, otp_state_dir=tmp_path / "state", passphrase=b"not the pass",
                                extractor=ext, clock=clock)
    assert key.card() == card
    text = repr(logs + logs2)
    for needle in (secret, code, PASS.decode(), key.secret.hex()):
        assert needle not in text
    for entry in logs + logs2:
        assert not any(isinstance(v, (list, tuple, np.ndarray, float, bytes)) for v in entry.values())

    from gateway.pipeline import open_, protect

    image = np.random.default_rng(1).integers(0, 4096, (64, 64), dtype=np.uint16)
    import io

    buf = io.BytesIO()
    np.save(buf, image)
    mask = np.zeros((64, 64), bool)
    mask[20:28, 20:28] = True
    env = protect(buf.getvalue(), card, mask=mask, rng=SeededRandom(b"env"))
    opened = open_(env.envelope, key, restore_original=True)
    assert opened.original == buf.getvalue()
    other = recipient_from_seed("alice", b"\x00" * 32)[0]
    with pytest.raises(OpenError):
        open_(env.envelope, other)
