"""Enrolment and key release end to end on generated captures of identities never used in training, with the
key-release service: a stolen profile plus its passphrase plus genuine captures opens nothing."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import stat
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from gateway.biometrics import fuzzy, slowkdf
from gateway.biometrics import profile as profiles
from gateway.biometrics.features import FeatureExtractor, KeyFeatures, views_id
from gateway.biometrics.keyrelease import (
    DEFAULT_CODES,
    RELEASE_CAPTURES,
    Enrolment,
    enrol,
    enrol_features,
    k_enc,
    parse_recovery_key,
    raw_secrets,
    recovery_share_source,
    release_k_enc,
    release_private_key,
    stretch,
)
from gateway.crypto.recipients import RecipientCard, recipient_from_seed
from gateway.errors import BiometricError, OpenError
from gateway.keyserver.http import KeyServer
from gateway.keyserver.service import KeyService, Policy, bio_key, release_proof, share_pad
from gateway.otp import STEP_S, totp_at
from gateway.rng import SeededRandom
from models.synth import fingerprint, iris
from tests.biometrics.conftest import Clock

ALICE, BOB = 3_000_001, 3_000_002  # outside every training/validation/test seed range
T0 = 1_800_000_000 * 1_000_000_000
STEP_NS = STEP_S * 1_000_000_000
PASS = b"correct horse battery staple"
DEVICE = "ws-radiology-07"
KS = profiles.KeyServerRef(url="https://127.0.0.1:1", account="alice", ca_pem="")


def _captures(seed: int, count: int, first: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return (fingerprint.impressions(seed, count, first_capture=first),
            iris.captures(seed, count, first_capture=first))


@pytest.fixture(scope="module")
def ext() -> FeatureExtractor:
    return FeatureExtractor()


@pytest.fixture(scope="module")
def feats(ext: FeatureExtractor) -> dict[str, KeyFeatures]:
    return {"alice_enrol": ext.key_features(*_captures(ALICE, 4)),
            "alice_fresh": ext.key_features(*_captures(ALICE, RELEASE_CAPTURES, first=20)),
            "bob_fresh": ext.key_features(*_captures(BOB, RELEASE_CAPTURES, first=20))}


class Service:
    """The key-release service in process (the HTTPS shell has its own test below)."""

    def __init__(self, state: Path, e: Enrolment, clock: Clock) -> None:
        self.clock = clock
        self.svc = KeyService(state, clock=clock, policy=Policy(max_failures=3), rng=SeededRandom(b"svc"))
        acct = self.svc.add_account("alice")
        self.secret = acct.totp_secret
        assert self.svc.enrol("alice", acct.enrol_token, e.service_share, e.service_bio_key)

    def code(self) -> str:
        return totp_at(self.secret, self.clock.ns // STEP_NS)

    def source(self, code: str | None = None):  # type: ignore[no-untyped-def]
        def get(prof: profiles.Profile, r: bytes) -> bytes | None:
            c = code if code is not None else self.code()
            nonce = b"\x05" * 16
            padded = self.svc.release("alice", c, nonce, release_proof(bio_key(r), "alice", c, nonce))
            if padded is None:
                return None
            return bytes(a ^ b for a, b in zip(padded, share_pad(bio_key(r), "alice", nonce), strict=False))
        return get


@pytest.fixture
def enrolled(feats, ext, tmp_path: Path):  # type: ignore[no-untyped-def]
    e = enrol_features("alice", feats["alice_enrol"], DEVICE, KS, ext.sha256, rng=SeededRandom(b"alice-enrol"),
                       r_kdf=slowkdf.TEST_PARAMS)
    return e, Service(tmp_path / "ks", e, Clock(T0))


def test_genuine_captures_and_service_release_the_enrolled_key(enrolled, feats, ext) -> None:  # type: ignore[no-untyped-def]
    e, service = enrolled
    key = release_k_enc(e.profile, feats["alice_fresh"], DEVICE, ext.sha256, service.source())
    assert recipient_from_seed("alice", key)[1] == e.card


def test_other_person_refused_and_counted_by_the_service(enrolled, feats, ext) -> None:  # type: ignore[no-untyped-def]
    e, service = enrolled
    with pytest.raises(OpenError):
        release_k_enc(e.profile, feats["bob_fresh"], DEVICE, ext.sha256, service.source())
    assert service.svc.status("alice")["failures"] == 1  # a biometric failure, with a valid code


@pytest.mark.parametrize("swap", ["fingerprint", "iris"])
def test_each_modality_must_match_on_its_own(enrolled, feats, ext, swap: str) -> None:  # type: ignore[no-untyped-def]
    e, service = enrolled
    a, b = feats["alice_fresh"], feats["bob_fresh"]
    mixed = dataclasses.replace(a, **{swap: getattr(b, swap)})  # the victim's other modality is genuine
    with pytest.raises(OpenError):
        release_k_enc(e.profile, mixed, DEVICE, ext.sha256, service.source())


def test_stolen_profile_passphrase_and_genuine_captures_open_nothing(enrolled, feats, ext, tmp_path) -> None:  # type: ignore[no-untyped-def]
    e, service = enrolled
    path = profiles.save(tmp_path / "alice.profile", e.profile, PASS, rng=SeededRandom(b"s"), kdf=slowkdf.TEST_PARAMS)
    stolen = profiles.load(path, PASS)  # the thief has the file and the passphrase
    plain = stolen.to_json()
    # Nothing in it is the service's share, K_secret or a TOTP secret, in any encoding.
    k_secret = bytes(x ^ y for x, y in zip(e.service_share, stolen.client_share, strict=False))
    for secret in (e.service_share, k_secret, base64.b32decode(service.secret)):
        for enc in (secret.hex(), base64.urlsafe_b64encode(secret).rstrip(b"=").decode(),
                    base64.b32encode(secret).decode().rstrip("=")):
            assert enc[:16].encode() not in plain
    # ... and genuine captures: R is right, but without the share no key id matches.
    raw = raw_secrets(feats["alice_fresh"], stolen)
    assert raw is not None
    r = stretch(raw[0], raw[1], stolen.r_salt, stolen.r_kdf)
    assert bio_key(r) == e.service_bio_key  # the thief does reproduce R ...
    for guess in (bytes(32), stolen.client_share, SeededRandom(b"guess")(32)):
        key = k_enc(r, bytes(x ^ y for x, y in zip(stolen.client_share, guess, strict=False)), DEVICE)
        assert recipient_from_seed("alice", key)[1].key_id != e.card.key_id
    with pytest.raises(OpenError):  # ... the service refuses without a valid code
        release_k_enc(stolen, feats["alice_fresh"], DEVICE, ext.sha256, service.source(code="123456"))
    with pytest.raises(OpenError):  # ... and a wrong recovery key unwraps nothing
        release_k_enc(stolen, feats["alice_fresh"], DEVICE, ext.sha256,
                      recovery_share_source("AAAA-" * 7 + "AAAA"))
    # The printed recovery key is the one way around the service.
    key = release_k_enc(stolen, feats["alice_fresh"], DEVICE, ext.sha256, recovery_share_source(e.recovery_key))
    assert recipient_from_seed("alice", key)[1] == e.card


def test_service_refuses_replayed_code_and_locks_out(enrolled, feats, ext) -> None:  # type: ignore[no-untyped-def]
    e, service = enrolled
    code = service.code()
    release_k_enc(e.profile, feats["alice_fresh"], DEVICE, ext.sha256, service.source(code))
    with pytest.raises(OpenError):
        release_k_enc(e.profile, feats["alice_fresh"], DEVICE, ext.sha256, service.source(code))
    for _ in range(2):  # with the replay: three failures, the policy's limit
        service.clock.ns += STEP_NS
        with pytest.raises(OpenError):
            release_k_enc(e.profile, feats["bob_fresh"], DEVICE, ext.sha256, service.source())
    service.clock.ns += STEP_NS
    with pytest.raises(OpenError):  # now even the genuine user with a fresh code is locked out
        release_k_enc(e.profile, feats["alice_fresh"], DEVICE, ext.sha256, service.source())


def test_device_model_and_helper_are_bound(enrolled, feats, ext) -> None:  # type: ignore[no-untyped-def]
    e, service = enrolled
    with pytest.raises(OpenError):
        release_k_enc(e.profile, feats["alice_fresh"], "ws-elsewhere", ext.sha256, service.source())
    with pytest.raises(OpenError):
        release_k_enc(e.profile, feats["alice_fresh"], DEVICE, "0" * 64, service.source())
    h = e.profile.helper_iris
    off = h.offset.copy()
    off[:16] ^= 1  # more errors than any of the codes corrects
    bad = dataclasses.replace(e.profile, helper_iris=dataclasses.replace(h, offset=off))
    service.clock.ns += STEP_NS
    with pytest.raises(OpenError):
        release_k_enc(bad, feats["alice_fresh"], DEVICE, ext.sha256, recovery_share_source(e.recovery_key))
    assert k_enc(b"\x01" * 32, b"\x02" * 32, DEVICE) != k_enc(b"\x01" * 32, b"\x02" * 32, "ws-elsewhere")


def test_profile_enrolled_with_the_reed_muller_code_still_releases(feats, ext, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Profiles enrolled before the BCH codes became the default carry RM(1, m) helpers: they load and release.
    codes: dict[str, fuzzy.Code] = {"fingerprint": fuzzy.RmCode(m=3, blocks=8), "iris": fuzzy.RmCode(m=3, blocks=6)}
    e = enrol_features("alice", feats["alice_enrol"], DEVICE, KS, ext.sha256, codes=codes,
                       rng=SeededRandom(b"alice-rm"), r_kdf=slowkdf.TEST_PARAMS)
    path = profiles.save(tmp_path / "alice.profile", e.profile, PASS, rng=SeededRandom(b"s"), kdf=slowkdf.TEST_PARAMS)
    loaded = profiles.load(path, PASS)
    assert loaded.helper_fingerprint.params == codes["fingerprint"] and loaded.helper_iris.params == codes["iris"]
    service = Service(tmp_path / "ks", e, Clock(T0))
    key = release_k_enc(loaded, feats["alice_fresh"], DEVICE, ext.sha256, service.source())
    assert recipient_from_seed("alice", key)[1] == e.card


def test_profile_round_trips_the_default_codes(enrolled, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    e, _ = enrolled
    path = profiles.save(tmp_path / "alice.profile", e.profile, PASS, rng=SeededRandom(b"s"), kdf=slowkdf.TEST_PARAMS)
    loaded = profiles.load(path, PASS)
    for modality in ("fingerprint", "iris"):
        h, back = getattr(e.profile, f"helper_{modality}"), getattr(loaded, f"helper_{modality}")
        assert back.params == DEFAULT_CODES[modality]
        assert np.array_equal(back.offset, h.offset) and np.array_equal(back.selected, h.selected)


# The identity of the model every profile enrolled before the retrain carries (the step-1 550 weights trained on
# the earlier generator, their whitening, the same views of a 96-px input): sha256(model sha256 + whitening
# sha256 + views id).
PREVIOUS_MODEL = hashlib.sha256(
    ("68bd39d7ff5b293e3a46626c324443439d609f9b36d5f7e915ae3ea4f7e604f6"
     "530f824bb064e896228ffe1cc00fc84a752ef6589eafa0543ba5d35ccabe9b20" + views_id(96)).encode()).hexdigest()


def test_profile_of_the_previous_model_is_refused_plainly(enrolled, feats, ext, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    e, _ = enrolled
    assert ext.sha256 != PREVIOUS_MODEL
    old = dataclasses.replace(e.profile, model_sha256=PREVIOUS_MODEL)
    path = profiles.save(tmp_path / "old.profile", old, PASS, rng=SeededRandom(b"o"), kdf=slowkdf.TEST_PARAMS)
    fps, eyes = _captures(ALICE, RELEASE_CAPTURES, first=20)
    with pytest.raises(BiometricError) as info:  # genuine captures and the recovery key: still another model
        release_private_key(path, fps, eyes, recovery_key=e.recovery_key, device_id=DEVICE, passphrase=PASS,
                            extractor=ext)
    assert info.value.reason == "enrolled_with_another_model"
    assert "enrol again" in str(info.value)
    with pytest.raises(OpenError):  # without the passphrase nothing is said about the profile
        release_private_key(path, fps, eyes, recovery_key=e.recovery_key, device_id=DEVICE,
                            passphrase=b"wrong passphrase!", extractor=ext)
    # The same profile under the current model opens with the recovery key.
    current = profiles.save(tmp_path / "cur.profile", e.profile, PASS, rng=SeededRandom(b"c"), kdf=slowkdf.TEST_PARAMS)
    key = release_private_key(current, fps, eyes, recovery_key=e.recovery_key, device_id=DEVICE, passphrase=PASS,
                              extractor=ext)
    assert key.card() == e.card


def test_profile_sealed_with_argon2id_0600_and_strong_passphrase(enrolled, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    e, _ = enrolled
    path = profiles.save(tmp_path / "alice.profile", e.profile, PASS, rng=SeededRandom(b"s"), kdf=slowkdf.TEST_PARAMS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    doc = json.loads(raw)
    assert set(doc) == {"format", "version", "cipher", "kdf", "nonce", "ciphertext", "tag"}
    assert doc["kdf"]["name"] == "argon2id"
    for needle in (DEVICE, e.profile.client_share.hex(), str(int(e.profile.helper_iris.selected[0])) + ","):
        assert needle.encode() not in raw
    assert profiles.load(path, PASS).to_json() == e.profile.to_json()
    assert e.profile.client_share.hex() not in repr(e.profile)
    with pytest.raises(OpenError):
        profiles.load(path, b"wrong passphrase!")
    for field, value in (("t", 2), ("m_kib", 1 << 21), ("name", "scrypt")):
        bad = dict(doc, kdf=dict(doc["kdf"], **{field: value}))
        (tmp_path / "t.profile").write_text(json.dumps(bad))
        with pytest.raises(OpenError):  # header is associated data; out-of-range costs refused before use
            profiles.load(tmp_path / "t.profile", PASS)
    for weak in (b"short pass", b"password1234", b"alicealice12", b"qwertyuiop123"):
        with pytest.raises(BiometricError):
            profiles.seal(e.profile, weak, kdf=slowkdf.TEST_PARAMS)
    assert slowkdf.DEFAULT == slowkdf.Argon2Params(t=3, m_kib=65536, p=4)


def test_recovery_key_round_trip() -> None:
    from gateway.biometrics.keyrelease import format_recovery_key

    raw = bytes(range(20))
    text = format_recovery_key(raw)
    assert len(text) == 39 and parse_recovery_key(text.lower()) == raw
    assert parse_recovery_key(f"MedShield recovery key for x:\n\n    {text}\n") == raw
    with pytest.raises(BiometricError):
        parse_recovery_key("AAAA-BBBB")


def test_enrol_and_open_over_https(tmp_path: Path, ext: FeatureExtractor, tls_cert) -> None:  # type: ignore[no-untyped-def]
    cert, tls_key = tls_cert
    clock = Clock(T0)
    svc = KeyService(tmp_path / "ks", clock=clock, rng=SeededRandom(b"https"))
    acct = svc.add_account("alice")
    server = KeyServer(svc, cert, tls_key).start()
    try:
        ref = profiles.KeyServerRef(url=server.url, account="alice", ca_pem=cert.read_text())
        fps, eyes = _captures(ALICE, 4)
        with capture_logs() as logs:
            profile_path, card_path, recovery_path = enrol(
                "alice", fps, eyes, DEVICE, tmp_path / "out", PASS, ref, acct.enrol_token, extractor=ext,
                rng=SeededRandom(b"carol"), kdf=slowkdf.TEST_PARAMS)
        for p in (profile_path, recovery_path):
            assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert sorted(x.name for x in (tmp_path / "out").iterdir()) == ["alice.card", "alice.profile",
                                                                        "alice.recovery.txt"]
        card = RecipientCard.load(card_path)
        fresh_fp, fresh_eye = _captures(ALICE, RELEASE_CAPTURES, first=20)
        code = totp_at(acct.totp_secret, T0 // STEP_NS)
        with capture_logs() as logs2:
            key = release_private_key(profile_path, fresh_fp, fresh_eye, otp_code=code, device_id=DEVICE,
                                      passphrase=PASS, extractor=ext)
            with pytest.raises(OpenError):  # replay of the same code
                release_private_key(profile_path, fresh_fp, fresh_eye, otp_code=code, device_id=DEVICE,
                                    passphrase=PASS, extractor=ext)
        assert key.card() == card
        server.stop()
        # The service is gone: only the printed recovery key still opens.
        with pytest.raises(OpenError):
            release_private_key(
                profile_path,
                fresh_fp,
                fresh_eye,
                otp_code=totp_at(acct.totp_secret, T0 // STEP_NS + 1),
                device_id=DEVICE,
                passphrase=PASS,
                extractor=ext,
            )
        rkey = release_private_key(profile_path, fresh_fp, fresh_eye, recovery_key=recovery_path.read_text(),
                                   device_id=DEVICE, passphrase=PASS, extractor=ext)
        assert rkey.card() == card
    finally:
        server.stop()
    text = repr(logs + logs2)
    for needle in (acct.totp_secret, code, PASS.decode(), key.secret.hex(), acct.enrol_token):
        assert needle not in text
    for entry in logs + logs2:
        assert not any(isinstance(v, (list, tuple, np.ndarray, float, bytes)) for v in entry.values())

    from gateway.pipeline import open_, protect

    image = np.random.default_rng(1).integers(0, 4096, (64, 64), dtype=np.uint16)
    buf = io.BytesIO()
    np.save(buf, image)
    mask = np.zeros((64, 64), bool)
    mask[20:28, 20:28] = True
    from gateway.crypto.origin import GatewayKey, TrustedGateways

    gateway = GatewayKey.generate("gw-1", SeededRandom(b"gateway"))
    pinned = TrustedGateways([gateway.card])
    env = protect(buf.getvalue(), card, signer=gateway, mask=mask, rng=SeededRandom(b"env"), carrier_rule="non-lesion")
    opened = open_(env.envelope, key, gateways=pinned, restore_original=True)
    assert opened.original == buf.getvalue()
