"""Enrolment and key release: eq. 15 of paper 000 with every factor real (DESIGN §3).

    K_enc    = SHA-256( (R ⊕ K_secret) ‖ D_addr )
    R        = Argon2id( r_fingerprint ‖ r_iris, r_salt )          (32 bytes)
    K_secret = client_share ⊕ service_share                         (32 random bytes made at enrolment)

- r_fingerprint and r_iris come from two fuzzy extractors, one per modality, so each modality must match on its
  own: a wrong r of either gives a wrong R. There is no per-modality (or any) check in the profile: one would
  let a thief attack each modality alone, or the biometric offline at all.
- client_share sits in the profile (sealed with Argon2id under the passphrase). service_share is held by the
  key-release service (`gateway.keyserver`), which hands it out only for a valid, unreplayed TOTP code together
  with a proof that the client reproduced R, counting failures of either towards its lock-out. The TOTP secret
  exists only in the service and the authenticator app. service_share is also in the profile, wrapped under
  the printed recovery key: the only way to open without the service.
- D_addr is the workstation's device id (UTF-8). K_enc seeds the recipient's X25519 key pair through
  `gateway.crypto.recipients.recipient_from_seed`; the private key is never stored, only re-derived, and
  release succeeds only when the re-derived key id equals the enrolled one.

Every failure to release is the one opaque OpenError.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from gateway.biometrics import fuzzy, slowkdf
from gateway.biometrics import profile as profiles
from gateway.biometrics.features import Capture, FeatureExtractor, KeyFeatures
from gateway.crypto.kdf import hkdf
from gateway.crypto.recipients import PrivateKey, RecipientCard, recipient_from_seed
from gateway.errors import BiometricError, MedShieldError, OpenError
from gateway.files import write_atomic
from gateway.keyserver.service import NONCE_BYTES, SHARE_BYTES, bio_key, release_proof, share_pad
from gateway.rng import RandomSource, system_random

log = structlog.get_logger("gateway.biometrics")

# One code per modality, chosen on validation identities (models/msenet/evaluate.py, MODEL_CARD.md): among
# pairs whose joint FRR at 3 capture pairs is <= 5 % at the upper end of its 95 % interval, the one whose
# weaker modality refuses impostors best.
DEFAULT_CODES: dict[str, fuzzy.Code] = {"fingerprint": fuzzy.BchCode(t=2, flips=4), "iris": fuzzy.BchCode(t=5, flips=4)}
MIN_ENROL_CAPTURES = 3
RELEASE_CAPTURES = 3  # capture pairs a clinician should present at release (averaged by fuzzy.reproduce)
DEVICE_ENV = "MEDSHIELD_DEVICE_ID"
RECOVERY_BYTES = 20  # 160 bits, printed as 32 base32 characters


def k_enc(r: bytes, k_secret: bytes, device_id: str) -> bytes:
    """Paper eq. 15: SHA-256((R ⊕ K_secret) ‖ D_addr), R and K_secret 32 bytes each."""
    if not device_id:
        raise BiometricError("bad_device_id", "device id must not be empty")
    if len(r) != 32 or len(k_secret) != 32:
        raise ValueError("R and K_secret must be 32 bytes")
    return hashlib.sha256(bytes(a ^ b for a, b in zip(r, k_secret, strict=True)) + device_id.encode("utf-8")).digest()


def stretch(r_fingerprint: bytes, r_iris: bytes, salt: bytes, params: slowkdf.Argon2Params) -> bytes:
    """R = Argon2id(r_fingerprint ‖ r_iris): every guess of the biometric costs one Argon2id."""
    ikm = len(r_fingerprint).to_bytes(2, "big") + r_fingerprint + len(r_iris).to_bytes(2, "big") + r_iris
    return slowkdf.derive(b"medshield/v2/biometric-r" + ikm, salt, params)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def local_device_id() -> str:
    """This workstation's device id: $MEDSHIELD_DEVICE_ID, else the systemd machine id."""
    env = os.environ.get(DEVICE_ENV)
    if env:
        return env
    try:
        mid = Path("/etc/machine-id").read_text("ascii").strip()
    except OSError as exc:
        raise BiometricError("bad_device_id", f"no device id: set ${DEVICE_ENV} or pass one") from exc
    if not mid:
        raise BiometricError("bad_device_id", f"no device id: set ${DEVICE_ENV} or pass one")
    return mid


# --- recovery key ----------------------------------------------------------------------------------------------

def format_recovery_key(raw: bytes) -> str:
    """160 bits as 8 groups of 4 base32 characters, for printing."""
    text = base64.b32encode(raw).decode("ascii").rstrip("=")
    return "-".join(text[i:i + 4] for i in range(0, len(text), 4))


def parse_recovery_key(text: str) -> bytes:
    """Inverse of `format_recovery_key` (case ignored; the key may stand inside other text, such as the
    NAME.recovery.txt enrolment writes); BiometricError when there is no valid key."""
    found = re.search(r"\b[A-Z2-7]{4}(?:-[A-Z2-7]{4}){7}\b", text.upper())
    s = found.group(0).replace("-", "") if found else "".join(text.split()).replace("-", "").upper()
    try:
        raw = base64.b32decode(s + "=" * (-len(s) % 8))
    except ValueError:
        raise BiometricError("bad_recovery_key", "recovery key is not valid") from None
    if len(raw) != RECOVERY_BYTES:
        raise BiometricError("bad_recovery_key", "recovery key is not valid")
    return raw


def _recovery_key_bytes(raw: bytes) -> bytes:
    return hkdf(raw, salt=b"", info=b"medshield/v2/recovery-wrap", length=64)


def _recovery_aad(name: str) -> bytes:
    return b"medshield/v2/recovery-wrap/" + name.encode("utf-8")


# --- enrolment -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Enrolment:
    """Everything enrolment makes. Only `profile` (sealed) and `card` are kept on the workstation;
    `service_share` and `service_bio_key` go to the service, `recovery_key` to paper."""

    profile: profiles.Profile
    card: RecipientCard
    recovery_key: str
    service_share: bytes
    service_bio_key: bytes


def enrol_features(name: str, feats: KeyFeatures, device_id: str, keyserver: profiles.KeyServerRef, model_sha256: str,
                   *, codes: dict[str, fuzzy.Code] = DEFAULT_CODES, rng: RandomSource = system_random,
                   r_kdf: slowkdf.Argon2Params = slowkdf.DEFAULT) -> Enrolment:
    """Pure core of enrolment: key features of several capture pairs → profile, card and the shares."""
    if feats.fingerprint.ndim != 2 or feats.fingerprint.shape[0] < MIN_ENROL_CAPTURES:
        raise BiometricError("bad_capture", f"enrolment needs at least {MIN_ENROL_CAPTURES} capture pairs")
    if not device_id:
        raise BiometricError("bad_device_id", "device id must not be empty")
    r_fp, helper_fp = fuzzy.generate(feats.fingerprint, codes["fingerprint"], rng)
    r_ir, helper_ir = fuzzy.generate(feats.iris, codes["iris"], rng)
    r_salt = rng(slowkdf.SALT_BYTES)
    r = stretch(r_fp, r_ir, r_salt, r_kdf)
    k_secret = rng(SHARE_BYTES)
    client_share = rng(SHARE_BYTES)
    service_share = _xor(k_secret, client_share)
    recovery_raw = rng(RECOVERY_BYTES)
    wrap = profiles.siv_seal(_recovery_key_bytes(recovery_raw), service_share, _recovery_aad(name), rng)
    try:
        _, card = recipient_from_seed(name, k_enc(r, k_secret, device_id))
    except ValueError as exc:
        raise BiometricError("bad_name", str(exc)) from None
    prof = profiles.Profile(name=name, key_id=card.key_id, device_id=device_id, model_sha256=model_sha256,
                            helper_fingerprint=helper_fp, helper_iris=helper_ir, r_salt=r_salt, r_kdf=r_kdf,
                            client_share=client_share, recovery_wrap=wrap, keyserver=keyserver)
    return Enrolment(prof, card, format_recovery_key(recovery_raw), service_share, bio_key(r))


def enrol(name: str, fingerprints: Sequence[Capture], irises: Sequence[Capture], device_id: str, out_dir: Path,
          passphrase: bytes, keyserver: profiles.KeyServerRef, enrol_token: str, *,
          extractor: FeatureExtractor | None = None, codes: dict[str, fuzzy.Code] = DEFAULT_CODES,
          rng: RandomSource = system_random, kdf: slowkdf.Argon2Params = slowkdf.DEFAULT,
          timeout_s: float = 10.0) -> tuple[Path, Path, Path]:
    """Enrol from captures and register with the service; writes NAME.profile (sealed, 0600), NAME.card
    (public) and NAME.recovery.txt (0600: print it, then delete the file). Returns the three paths."""
    from gateway.keyserver.http import KeyServerClient

    profiles.check_passphrase(passphrase, (name, device_id))  # before anything is registered anywhere
    ext = extractor or FeatureExtractor()
    feats = ext.key_features(fingerprints, irises)
    e = enrol_features(name, feats, device_id, keyserver, ext.sha256, codes=codes, rng=rng, r_kdf=kdf)
    client = KeyServerClient(keyserver.url, keyserver.ca_pem, timeout_s=timeout_s)
    try:
        accepted = client.enrol(keyserver.account, enrol_token, e.service_share, e.service_bio_key)
    except OSError as exc:
        raise BiometricError("keyserver_unreachable", f"key-release service unreachable: {keyserver.url}") from exc
    if not accepted:
        raise BiometricError("enrolment_refused", "the key-release service refused the enrolment token")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    profile_path = profiles.save(out / f"{name}.profile", e.profile, passphrase, rng=rng, kdf=kdf)
    card_path = out / f"{name}.card"
    card_path.unlink(missing_ok=True)
    e.card.save(card_path)
    recovery_path = out / f"{name}.recovery.txt"
    write_atomic(recovery_path, (f"MedShield recovery key for {name} (key id {e.card.key_id}):\n\n"
                                 f"    {e.recovery_key}\n\nPrint it, keep it offline, delete this file.\n").encode())
    log.info("biometric enrolment complete", recipient=name, key_id=e.card.key_id,
             captures=int(feats.fingerprint.shape[0]))
    return profile_path, card_path, recovery_path


# --- release ---------------------------------------------------------------------------------------------------

ShareSource = Callable[[profiles.Profile, bytes], bytes | None]
"""Given the profile and the stretched R, the service's share (or None when refused)."""


def service_share_source(otp_code: str, *, rng: RandomSource = system_random, timeout_s: float = 10.0) -> ShareSource:
    """Ask the profile's key-release service, with `otp_code` and a proof of R."""
    from gateway.keyserver.http import KeyServerClient

    def get(prof: profiles.Profile, r: bytes) -> bytes | None:
        ks = prof.keyserver
        key = bio_key(r)
        nonce = rng(NONCE_BYTES)
        padded = KeyServerClient(ks.url, ks.ca_pem, timeout_s=timeout_s).release(
            ks.account, otp_code, nonce, release_proof(key, ks.account, otp_code, nonce))
        if padded is None or len(padded) != SHARE_BYTES:
            return None
        return _xor(padded, share_pad(key, ks.account, nonce))

    return get


def recovery_share_source(recovery_key: str) -> ShareSource:
    """Unwrap the service's share from the profile with the printed recovery key."""
    raw = parse_recovery_key(recovery_key)

    def get(prof: profiles.Profile, r: bytes) -> bytes | None:
        try:
            return profiles.siv_open(_recovery_key_bytes(raw), prof.recovery_wrap, _recovery_aad(prof.name))
        except ValueError:
            return None

    return get


def raw_secrets(feats: KeyFeatures, prof: profiles.Profile) -> tuple[bytes, bytes] | None:
    """Both fuzzy extractors' decodings of fresh captures (averaged over the rows), or None if malformed."""
    r_fp = fuzzy.reproduce(feats.fingerprint, prof.helper_fingerprint)
    r_ir = fuzzy.reproduce(feats.iris, prof.helper_iris)
    return None if r_fp is None or r_ir is None else (r_fp, r_ir)


def release_k_enc(prof: profiles.Profile, feats: KeyFeatures, device_id: str, model_sha256: str,
                  share_source: ShareSource) -> bytes:
    """All factors → K_enc, checked against the enrolled key id; OpenError on any failure."""
    dev_ok = hmac.compare_digest(device_id.encode("utf-8"), prof.device_id.encode("utf-8"))
    model_ok = hmac.compare_digest(model_sha256.encode(), prof.model_sha256.encode())
    raw = raw_secrets(feats, prof)
    if not (dev_ok and model_ok and raw is not None):
        raise OpenError()
    r = stretch(raw[0], raw[1], prof.r_salt, prof.r_kdf)
    share = share_source(prof, r)
    if share is None or len(share) != SHARE_BYTES:
        raise OpenError()
    key = k_enc(r, _xor(prof.client_share, share), device_id)
    _, card = recipient_from_seed(prof.name, key)
    if not hmac.compare_digest(card.key_id.encode(), prof.key_id.encode()):
        raise OpenError()
    return key


def release_private_key(profile_path: Path, fingerprints: Sequence[Capture], irises: Sequence[Capture], *,
                        otp_code: str | None = None, recovery_key: str | None = None, device_id: str | None = None,
                        passphrase: bytes | None = None, extractor: FeatureExtractor | None = None,
                        rng: RandomSource = system_random) -> PrivateKey:
    """Re-derive the recipient's X25519 private key from fresh captures; any failure raises OpenError, except a
    profile (opened with the right passphrase) enrolled with another model: BiometricError
    `enrolled_with_another_model`, since its user must enrol again.

    Exactly one of `otp_code` (asks the key-release service) and `recovery_key` (the printed key) is given.
    `passphrase` defaults to $MEDSHIELD_PROFILE_PASS; `device_id` to `local_device_id()`.
    """
    if (otp_code is None) == (recovery_key is None):
        raise BiometricError("bad_credentials", "give an OTP code or the recovery key")
    try:
        pw = passphrase if passphrase is not None else profiles.passphrase_from(None)
        prof = profiles.load(Path(profile_path), pw)
        ext = extractor or FeatureExtractor()
    except (MedShieldError, ValueError, OSError):
        log.info("biometric key release refused")
        raise OpenError() from None
    if not hmac.compare_digest(prof.model_sha256.encode(), ext.sha256.encode()):
        # Said plainly, before any capture is matched: the holder of the passphrase can read the model identity
        # in the profile anyway, and another model's bits can never match, so the user must enrol again.
        log.info("biometric key release refused: profile enrolled with another model", recipient=prof.name)
        raise BiometricError("enrolled_with_another_model",
                             "this biometric profile was enrolled with another MSE-Net model (weights, whitening or "
                             "views); enrol again with the gateway's current model")
    try:
        dev = device_id if device_id is not None else local_device_id()
        feats = ext.key_features(fingerprints, irises)
        source = (service_share_source(otp_code, rng=rng) if otp_code is not None
                  else recovery_share_source(recovery_key or ""))
        key = release_k_enc(prof, feats, dev, ext.sha256, source)
        private, _ = recipient_from_seed(prof.name, key)
    except (MedShieldError, ValueError, OSError):
        log.info("biometric key release refused")
        raise OpenError() from None
    log.info("biometric key release granted", recipient=prof.name, key_id=prof.key_id,
             via="service" if otp_code is not None else "recovery key")
    return private
