"""Enrolment and key release: eq. 15 of paper 000 with a fuzzy-extracted secret in place of raw features.

    K_enc = SHA-256( (HKDF(R, "medshield/v1/k_enc/bio") ⊕ HKDF(K_secret, "medshield/v1/k_enc/otp")) ‖ D_addr )

R is the fuzzy extractor's stable secret, K_secret the recipient's TOTP secret, D_addr the device id (UTF-8).
Both XOR operands are stretched to 32 bytes by HKDF-SHA256 so that the XOR is defined whatever their lengths
and neither can cancel structure in the other. K_enc seeds the recipient's X25519 key pair through
`gateway.crypto.recipients.recipient_from_seed`; the private key is never stored, only re-derived.

Release checks four factors and fails with the one opaque OpenError whatever failed: the profile passphrase
(decrypts the profile), a valid fresh TOTP code (replay and lock-out enforced), the device id, and the
biometric (fuzzy-extractor commitment, compared in constant time). All checks run before the verdict.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import structlog
from gateway.biometrics import fuzzy
from gateway.biometrics import profile as profiles
from gateway.biometrics.features import Capture, FeatureExtractor
from gateway.crypto.kdf import hkdf
from gateway.crypto.recipients import PrivateKey, recipient_from_seed
from gateway.errors import InputError, MedShieldError, OpenError
from gateway.otp import OtpVerifier, secret_bytes
from gateway.rng import Clock, RandomSource, system_clock, system_random

log = structlog.get_logger("gateway.biometrics")

# Chosen from measured genuine/impostor bit-error rates (models/msenet/results/eval.json, MODEL_CARD.md):
# security first. RM(1,5)x8 with RELEASE_CAPTURES capture pairs averaged at release had FRR 2.5 % and 4 false
# releases in 14,280 impostor attempts (0.03 %), against 2.2 % / 8.5 % for the previous model and RM(1,7)x2
# with one capture. Presenting fewer captures only raises the FRR (one capture: 38 %), never an attacker's chance.
DEFAULT_CODE = fuzzy.CodeParams(m=5, blocks=8)
MIN_ENROL_CAPTURES = 3
RELEASE_CAPTURES = 3  # capture pairs a clinician should present at release (averaged by fuzzy.reproduce)
DEVICE_ENV = "MEDSHIELD_DEVICE_ID"


def k_enc(secret_r: bytes, otp_secret: str, device_id: str) -> bytes:
    """Paper eq. 15 with R in place of raw features (see module doc)."""
    if not device_id:
        raise InputError("bad_device_id", "device id must not be empty")
    a = hkdf(secret_r, salt=b"", info=b"medshield/v1/k_enc/bio")
    b = hkdf(secret_bytes(otp_secret), salt=b"", info=b"medshield/v1/k_enc/otp")
    mixed = bytes(x ^ y for x, y in zip(a, b))
    return hashlib.sha256(mixed + device_id.encode("utf-8")).digest()


def local_device_id() -> str:
    """This workstation's device id: $MEDSHIELD_DEVICE_ID, else the systemd machine id."""
    env = os.environ.get(DEVICE_ENV)
    if env:
        return env
    try:
        mid = Path("/etc/machine-id").read_text("ascii").strip()
    except OSError as exc:
        raise InputError("bad_device_id", f"no device id: set ${DEVICE_ENV} or pass one") from exc
    if not mid:
        raise InputError("bad_device_id", f"no device id: set ${DEVICE_ENV} or pass one")
    return mid


def enrol_features(features: np.ndarray, otp_secret: str, device_id: str, *,
                   code: fuzzy.CodeParams = DEFAULT_CODE, rng: RandomSource = system_random) -> tuple[fuzzy.Helper, bytes]:
    """Pure core of enrolment: feature rows of several captures → (public helper data, K_enc)."""
    if features.ndim != 2 or features.shape[0] < MIN_ENROL_CAPTURES:
        raise InputError("bad_capture", f"enrolment needs at least {MIN_ENROL_CAPTURES} capture pairs")
    if not device_id:
        raise InputError("bad_device_id", "device id must not be empty")
    secret_bytes(otp_secret)
    r, helper = fuzzy.generate(features, code, rng)
    return helper, k_enc(r, otp_secret, device_id)


def enrol(name: str, fingerprints: Sequence[Capture], irises: Sequence[Capture], otp_secret: str,
          device_id: str, out_dir: Path, passphrase: bytes, *, extractor: FeatureExtractor | None = None,
          code: fuzzy.CodeParams = DEFAULT_CODE, rng: RandomSource = system_random,
          scrypt_n: int = profiles.DEFAULT_SCRYPT_N) -> tuple[Path, Path]:
    """Enrol from captures: writes NAME.profile (encrypted, 0600) and NAME.card (public); returns both paths."""
    ext = extractor or FeatureExtractor()
    feats = ext.embed(fingerprints, irises).key_features()
    helper, key = enrol_features(feats, otp_secret, device_id, code=code, rng=rng)
    try:
        _, card = recipient_from_seed(name, key)
    except ValueError as exc:
        raise InputError("bad_name", str(exc)) from None
    prof = profiles.Profile(name=name, key_id=card.key_id, device_id=device_id, otp_secret=otp_secret,
                            model_sha256=ext.sha256, helper=helper)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    profile_path = profiles.save(out / f"{name}.profile", prof, passphrase, rng=rng, scrypt_n=scrypt_n)
    card_path = out / f"{name}.card"
    if card_path.exists():
        card_path.unlink()
    card.save(card_path)
    log.info("biometric enrolment complete", recipient=name, key_id=card.key_id,
             captures=int(feats.shape[0]), code_bits=code.n, secret_bits=code.k)
    return profile_path, card_path


def release_k_enc(prof: profiles.Profile, features: np.ndarray, otp_code: str, device_id: str,
                  verifier: OtpVerifier, model_sha256: str) -> bytes:
    """Pure-ish core of release (the OTP verifier persists its state): all factors → K_enc, else OpenError."""
    otp_ok = verifier.verify(otp_code)
    r = fuzzy.reproduce(features, prof.helper)
    dev_ok = hmac.compare_digest(device_id.encode("utf-8"), prof.device_id.encode("utf-8"))
    model_ok = hmac.compare_digest(model_sha256.encode(), prof.model_sha256.encode())
    if not (otp_ok and dev_ok and model_ok and r is not None):
        raise OpenError()
    return k_enc(r, prof.otp_secret, device_id)


def release_private_key(profile_path: Path, fingerprints: Sequence[Capture], irises: Sequence[Capture],
                        otp_code: str, *, device_id: str | None = None, otp_state_dir: Path | None = None,
                        passphrase: bytes | None = None, extractor: FeatureExtractor | None = None,
                        clock: Clock = system_clock) -> PrivateKey:
    """Re-derive the recipient's X25519 private key from a fresh capture; any failure raises OpenError.

    `passphrase` defaults to $MEDSHIELD_PROFILE_PASS; `device_id` to `local_device_id()`; OTP replay and
    lock-out state lives in `otp_state_dir` (default: the profile's directory).
    """
    try:
        pw = passphrase if passphrase is not None else profiles.passphrase_from(None)
        prof = profiles.load(Path(profile_path), pw)
        dev = device_id if device_id is not None else local_device_id()
        state_dir = Path(otp_state_dir) if otp_state_dir is not None else Path(profile_path).parent
        verifier = OtpVerifier(prof.otp_secret, state_dir / OtpVerifier.state_name(prof.otp_secret), clock=clock)
        ext = extractor or FeatureExtractor()
        feats = ext.embed(fingerprints, irises).key_features()
        key = release_k_enc(prof, feats, otp_code, dev, verifier, ext.sha256)
        private, card = recipient_from_seed(prof.name, key)
        if not hmac.compare_digest(card.key_id.encode(), prof.key_id.encode()):
            raise OpenError()
    except (MedShieldError, ValueError, OSError):
        log.info("biometric key release refused")
        raise OpenError() from None
    log.info("biometric key release granted", recipient=prof.name, key_id=prof.key_id)
    return private

