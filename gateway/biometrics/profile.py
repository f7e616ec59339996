"""The recipient's biometric profile and its protection at rest.

A profile holds what key release needs besides the person: the fuzzy extractor's helper data and commitment,
the TOTP secret K_secret, the device id, the MSE-Net model it was enrolled with (sha256), and the KDF
parameters of eq. 15. It is the recipient's own file (never given to a gateway).

At rest it is sealed with AES-256-SIV under a 64-byte key from scrypt(passphrase, random salt; N=2^15, r=8,
p=1 by default), with the cleartext outer header (format, KDF parameters, salt) as associated data, a fresh
random nonce per write, and file mode 0600. Why a passphrase and not a key derived from the biometric or OTP
secret: the helper data must be readable before the biometric secret is known, and the OTP secret is inside
the profile; only something the person knows and the file does not contain can protect it. scrypt makes each
passphrase guess cost ~32 MiB and tens of milliseconds; SIV stays safe even if a nonce were ever repeated.
Any failure to read or authenticate a profile raises OpenError.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from Crypto.Cipher import AES
from Crypto.Protocol.KDF import scrypt

from gateway.biometrics.fuzzy import CodeParams, Helper
from gateway.encoding import b64url_decode, b64url_encode
from gateway.errors import InputError, OpenError
from gateway.files import write_atomic
from gateway.rng import RandomSource, system_random

FORMAT = "medshield-biometric-profile"
VERSION = 1
DEFAULT_SCRYPT_N = 1 << 15
MAX_SCRYPT_N = 1 << 20
MAX_PROFILE_BYTES = 256 * 1024
MIN_PASSPHRASE = 8
PASS_ENV = "MEDSHIELD_PROFILE_PASS"


@dataclass(frozen=True)
class Profile:
    """Decrypted profile content (secret: never log or print it)."""

    name: str
    key_id: str
    device_id: str
    otp_secret: str = field(repr=False)
    model_sha256: str
    helper: Helper = field(repr=False)

    def to_json(self) -> bytes:
        h = self.helper
        doc = {
            "name": self.name, "key_id": self.key_id, "device_id": self.device_id, "otp_secret": self.otp_secret,
            "model_sha256": self.model_sha256,
            "features": "msenet fingerprint||iris embeddings, orthogonal rotation, sign bits",
            "k_enc": "SHA-256((HKDF(R,'medshield/v1/k_enc/bio') xor HKDF(K_secret,'medshield/v1/k_enc/otp')) || device_id)",
            "helper": {
                "code": "rm1-concat-soft", "m": h.params.m, "blocks": h.params.blocks,
                "rotation_seed": b64url_encode(h.rotation_seed), "selected": [int(i) for i in h.selected],
                "offset": b64url_encode(np.packbits(h.offset).tobytes()), "commit_salt": b64url_encode(h.commit_salt),
                "commitment": b64url_encode(h.commitment),
            },
        }
        return json.dumps(doc, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Profile:
        d = json.loads(data)
        h = d["helper"]
        params = CodeParams(m=int(h["m"]), blocks=int(h["blocks"]))
        params.check()
        offset = np.unpackbits(np.frombuffer(b64url_decode(h["offset"]), np.uint8))[: params.n]
        helper = Helper(params=params, rotation_seed=b64url_decode(h["rotation_seed"]),
                        selected=np.asarray(h["selected"], np.int64), offset=offset.astype(np.uint8),
                        commit_salt=b64url_decode(h["commit_salt"]), commitment=b64url_decode(h["commitment"]))
        return cls(name=str(d["name"]), key_id=str(d["key_id"]), device_id=str(d["device_id"]),
                   otp_secret=str(d["otp_secret"]), model_sha256=str(d["model_sha256"]), helper=helper)


def _key(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return scrypt(passphrase, salt, 64, N=n, r=r, p=p)  # type: ignore[arg-type]


def seal(profile: Profile, passphrase: bytes, *, rng: RandomSource = system_random,
         scrypt_n: int = DEFAULT_SCRYPT_N) -> bytes:
    """The encrypted profile file's bytes."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise InputError("weak_passphrase", f"profile passphrase must be at least {MIN_PASSPHRASE} bytes")
    if scrypt_n < 2 or scrypt_n & (scrypt_n - 1) or scrypt_n > MAX_SCRYPT_N:
        raise InputError("bad_kdf", "scrypt N must be a power of two up to 2^20")
    header = {"format": FORMAT, "version": VERSION, "cipher": "aes-256-siv",
              "kdf": {"name": "scrypt", "n": scrypt_n, "r": 8, "p": 1, "salt": b64url_encode(rng(16))}}
    aad = json.dumps(header, sort_keys=True).encode()
    key = _key(passphrase, b64url_decode(header["kdf"]["salt"]), scrypt_n, 8, 1)
    nonce = rng(16)
    cipher = AES.new(key, AES.MODE_SIV, nonce=nonce)
    cipher.update(aad)
    ct, tag = cipher.encrypt_and_digest(profile.to_json())
    doc = dict(header, nonce=b64url_encode(nonce), ciphertext=b64url_encode(ct), tag=b64url_encode(tag))
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()


def unseal(data: bytes, passphrase: bytes) -> Profile:
    """Decrypt and parse a profile; every failure (format, KDF bounds, wrong passphrase, tamper) → OpenError."""
    try:
        if len(data) > MAX_PROFILE_BYTES:
            raise ValueError("too large")
        doc = json.loads(data)
        header = {k: doc[k] for k in ("format", "version", "cipher", "kdf")}
        kdf = header["kdf"]
        if header["format"] != FORMAT or header["version"] != VERSION or header["cipher"] != "aes-256-siv":
            raise ValueError("format")
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        if kdf["name"] != "scrypt" or not (2 <= n <= MAX_SCRYPT_N) or n & (n - 1) or r != 8 or p != 1:
            raise ValueError("kdf")
        key = _key(passphrase, b64url_decode(kdf["salt"]), n, r, p)
        cipher = AES.new(key, AES.MODE_SIV, nonce=b64url_decode(doc["nonce"]))
        cipher.update(json.dumps(header, sort_keys=True).encode())
        plain = cipher.decrypt_and_verify(b64url_decode(doc["ciphertext"]), b64url_decode(doc["tag"]))
        return Profile.from_json(plain)
    except (ValueError, KeyError, TypeError, InputError):
        raise OpenError() from None


def save(path: Path, profile: Profile, passphrase: bytes, *, rng: RandomSource = system_random,
         scrypt_n: int = DEFAULT_SCRYPT_N) -> Path:
    """Write the encrypted profile with mode 0600."""
    write_atomic(Path(path), seal(profile, passphrase, rng=rng, scrypt_n=scrypt_n))
    return Path(path)


def load(path: Path, passphrase: bytes) -> Profile:
    """Read and decrypt a profile file (OpenError on any failure)."""
    try:
        with Path(path).open("rb") as fh:
            data = fh.read(MAX_PROFILE_BYTES + 1)
    except OSError:
        raise OpenError() from None
    return unseal(data, passphrase)


def passphrase_from(pass_file: Path | None = None) -> bytes:
    """The profile passphrase: first line of `pass_file`, else $MEDSHIELD_PROFILE_PASS; InputError if neither."""
    if pass_file is not None:
        try:
            text = Path(pass_file).read_bytes().splitlines()
        except OSError as exc:
            raise InputError("no_passphrase", f"cannot read passphrase file {Path(pass_file).name}") from exc
        if text and text[0]:
            return text[0]
        raise InputError("no_passphrase", "passphrase file is empty")
    env = os.environb.get(PASS_ENV.encode())
    if env:
        return env
    raise InputError("no_passphrase", f"give --profile-pass-file or set ${PASS_ENV}")
