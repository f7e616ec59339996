"""The recipient's biometric profile and its protection at rest.

A profile holds what key release needs besides the person and the key-release service: the two fuzzy
extractors' helper data (fingerprint, iris), the Argon2id salt and cost that stretch their raw secrets into R,
the profile's share of K_secret, the service's share wrapped under the printed recovery key, where the
service is (URL, account, its pinned TLS certificate), the device id and the MSE-Net model it was enrolled
with (sha256). It holds no TOTP secret (that lives only in the service and the authenticator app) and nothing
that tells a correct biometric from a wrong one.

At rest it is sealed with AES-256-SIV under a 64-byte key from Argon2id(passphrase, random salt;
`slowkdf.DEFAULT` = RFC 9106's t=3, m=64 MiB, p=4), with the cleartext outer header (format, KDF parameters,
salt) as associated data, a fresh random nonce per write, and file mode 0600. A passphrase must pass a
strength check (zxcvbn: at least 10^10 estimated guesses, i.e. about 33 bits, and 12 characters) when a
profile is sealed. Any failure to read or authenticate a profile raises OpenError.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from Crypto.Cipher import AES

from gateway.biometrics import slowkdf
from gateway.biometrics.fuzzy import BchCode, Code, Helper, RmCode
from gateway.encoding import b64url_decode, b64url_encode
from gateway.errors import BiometricError, OpenError
from gateway.files import write_atomic
from gateway.rng import RandomSource, system_random

FORMAT = "medshield-biometric-profile"
VERSION = 2
MAX_PROFILE_BYTES = 256 * 1024
MIN_PASSPHRASE_CHARS = 12
MIN_PASSPHRASE_GUESSES = 1e10
PASS_ENV = "MEDSHIELD_PROFILE_PASS"


@dataclass(frozen=True)
class KeyServerRef:
    """Where the service's share is released: its URL, this recipient's account, its certificate (PEM)."""

    url: str
    account: str
    ca_pem: str


@dataclass(frozen=True)
class Wrapped:
    """AES-256-SIV ciphertext (nonce, ciphertext, tag)."""

    nonce: bytes
    ciphertext: bytes
    tag: bytes

    def to_doc(self) -> dict[str, str]:
        return {"nonce": b64url_encode(self.nonce), "ciphertext": b64url_encode(self.ciphertext),
                "tag": b64url_encode(self.tag)}

    @classmethod
    def from_doc(cls, d: dict) -> Wrapped:  # type: ignore[type-arg]
        return cls(b64url_decode(d["nonce"]), b64url_decode(d["ciphertext"]), b64url_decode(d["tag"]))


def siv_seal(key: bytes, plaintext: bytes, aad: bytes, rng: RandomSource) -> Wrapped:
    """AES-256-SIV (64-byte key) with a random nonce."""
    nonce = rng(16)
    cipher = AES.new(key, AES.MODE_SIV, nonce=nonce)
    cipher.update(aad)
    ct, tag = cipher.encrypt_and_digest(plaintext)
    return Wrapped(nonce, ct, tag)


def siv_open(key: bytes, wrapped: Wrapped, aad: bytes) -> bytes:
    """Inverse of `siv_seal`; ValueError when anything was altered or the key is wrong."""
    cipher = AES.new(key, AES.MODE_SIV, nonce=wrapped.nonce)
    cipher.update(aad)
    return cipher.decrypt_and_verify(wrapped.ciphertext, wrapped.tag)


def _code_doc(code: Code) -> dict[str, object]:
    if isinstance(code, BchCode):
        return {"code": "bch63-chase", "t": code.t, "flips": code.flips}
    return {"code": "rm1-concat-soft", "m": code.m, "blocks": code.blocks}


def _code(d: dict) -> Code:  # type: ignore[type-arg]
    code: Code
    if d["code"] == "bch63-chase":
        code = BchCode(t=int(d["t"]), flips=int(d["flips"]))
    elif d["code"] == "rm1-concat-soft":
        code = RmCode(m=int(d["m"]), blocks=int(d["blocks"]))
    else:
        raise ValueError("code")
    code.check()
    return code


def _helper_doc(h: Helper) -> dict[str, object]:
    return _code_doc(h.params) | {"rotation_seed": b64url_encode(h.rotation_seed),
                                  "selected": [int(i) for i in h.selected],
                                  "offset": b64url_encode(np.packbits(h.offset).tobytes())}


def _helper(d: dict) -> Helper:  # type: ignore[type-arg]
    params = _code(d)
    offset = np.unpackbits(np.frombuffer(b64url_decode(d["offset"]), np.uint8))[: params.n]
    return Helper(params=params, rotation_seed=b64url_decode(d["rotation_seed"]),
                  selected=np.asarray(d["selected"], np.int64), offset=offset.astype(np.uint8))


@dataclass(frozen=True)
class Profile:
    """Decrypted profile content (secret: never log or print it)."""

    name: str
    key_id: str
    device_id: str
    model_sha256: str
    helper_fingerprint: Helper = field(repr=False)
    helper_iris: Helper = field(repr=False)
    r_salt: bytes = field(repr=False)
    r_kdf: slowkdf.Argon2Params
    client_share: bytes = field(repr=False)
    recovery_wrap: Wrapped = field(repr=False)
    keyserver: KeyServerRef

    def to_json(self) -> bytes:
        doc = {
            "name": self.name, "key_id": self.key_id, "device_id": self.device_id,
            "model_sha256": self.model_sha256,
            "features": "msenet fingerprint and iris embeddings, each whitened, rotated, sign bits, own extractor",
            "k_enc": "SHA-256((R xor K_secret) || device_id); R = Argon2id(r_fingerprint || r_iris, r_salt); "
                     "K_secret = client_share xor service_share",
            "helper": {"fingerprint": _helper_doc(self.helper_fingerprint), "iris": _helper_doc(self.helper_iris)},
            "r_kdf": dict(self.r_kdf.to_doc(), salt=b64url_encode(self.r_salt)),
            "client_share": b64url_encode(self.client_share),
            "recovery_wrap": self.recovery_wrap.to_doc(),
            "keyserver": {"url": self.keyserver.url, "account": self.keyserver.account,
                          "ca_pem": self.keyserver.ca_pem},
        }
        return json.dumps(doc, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Profile:
        d = json.loads(data)
        ks = d["keyserver"]
        return cls(name=str(d["name"]), key_id=str(d["key_id"]), device_id=str(d["device_id"]),
                   model_sha256=str(d["model_sha256"]), helper_fingerprint=_helper(d["helper"]["fingerprint"]),
                   helper_iris=_helper(d["helper"]["iris"]), r_salt=b64url_decode(d["r_kdf"]["salt"]),
                   r_kdf=slowkdf.Argon2Params.from_doc(d["r_kdf"]),
                   client_share=b64url_decode(d["client_share"]),
                   recovery_wrap=Wrapped.from_doc(d["recovery_wrap"]),
                   keyserver=KeyServerRef(url=str(ks["url"]), account=str(ks["account"]), ca_pem=str(ks["ca_pem"])))


def check_passphrase(passphrase: bytes, user_inputs: tuple[str, ...] = ()) -> None:
    """BiometricError unless the passphrase has ≥ 12 characters and zxcvbn estimates ≥ 10^10 guesses for it
    (`user_inputs`, e.g. the recipient's name, count as known to the attacker)."""
    from zxcvbn import zxcvbn

    try:
        text = passphrase.decode("utf-8")
    except UnicodeDecodeError:
        raise BiometricError("weak_passphrase", "profile passphrase must be UTF-8 text") from None
    if len(text) < MIN_PASSPHRASE_CHARS:
        raise BiometricError(
            "weak_passphrase", f"profile passphrase must have at least {MIN_PASSPHRASE_CHARS} characters")
    # zxcvbn's cost grows quickly with length; its estimate for the first 100 characters is a lower bound.
    guesses = float(zxcvbn(text[:100], user_inputs=list(user_inputs))["guesses"])
    if guesses < MIN_PASSPHRASE_GUESSES:
        raise BiometricError("weak_passphrase", "profile passphrase is too easy to guess (dictionary words, names, "
                                            "dates or patterns): use four or more unrelated words")


def seal(profile: Profile, passphrase: bytes, *, rng: RandomSource = system_random,
         kdf: slowkdf.Argon2Params = slowkdf.DEFAULT) -> bytes:
    """The encrypted profile file's bytes (checks the passphrase's strength first)."""
    check_passphrase(passphrase, (profile.name, profile.device_id))
    kdf.check()
    salt = rng(slowkdf.SALT_BYTES)
    header = {"format": FORMAT, "version": VERSION, "cipher": "aes-256-siv",
              "kdf": dict(kdf.to_doc(), salt=b64url_encode(salt))}
    aad = json.dumps(header, sort_keys=True).encode()
    key = slowkdf.derive(passphrase, salt, kdf, length=64)
    doc = dict(header, **siv_seal(key, profile.to_json(), aad, rng).to_doc())
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()


def unseal(data: bytes, passphrase: bytes) -> Profile:
    """Decrypt and parse a profile; every failure (format, KDF bounds, wrong passphrase, tamper) → OpenError."""
    try:
        if len(data) > MAX_PROFILE_BYTES:
            raise ValueError("too large")
        doc = json.loads(data)
        header = {k: doc[k] for k in ("format", "version", "cipher", "kdf")}
        if header["format"] != FORMAT or header["version"] != VERSION or header["cipher"] != "aes-256-siv":
            raise ValueError("format")
        kdf = slowkdf.Argon2Params.from_doc(header["kdf"])
        key = slowkdf.derive(passphrase, b64url_decode(header["kdf"]["salt"]), kdf, length=64)
        plain = siv_open(key, Wrapped.from_doc(doc), json.dumps(header, sort_keys=True).encode())
        return Profile.from_json(plain)
    except (ValueError, KeyError, TypeError, AttributeError, BiometricError):
        raise OpenError() from None


def save(path: Path, profile: Profile, passphrase: bytes, *, rng: RandomSource = system_random,
         kdf: slowkdf.Argon2Params = slowkdf.DEFAULT) -> Path:
    """Write the encrypted profile with mode 0600."""
    write_atomic(Path(path), seal(profile, passphrase, rng=rng, kdf=kdf))
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
    """The profile passphrase: first line of `pass_file`, else $MEDSHIELD_PROFILE_PASS; BiometricError if neither."""
    if pass_file is not None:
        try:
            text = Path(pass_file).read_bytes().splitlines()
        except OSError as exc:
            raise BiometricError("no_passphrase", f"cannot read passphrase file {Path(pass_file).name}") from exc
        if text and text[0]:
            return text[0]
        raise BiometricError("no_passphrase", "passphrase file is empty")
    env = os.environb.get(PASS_ENV.encode())
    if env:
        return env
    raise BiometricError("no_passphrase", f"give --profile-pass-file or set ${PASS_ENV}")
