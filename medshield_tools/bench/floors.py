"""What the pipeline is compared with: cipher floors and the encrypt-and-forward alternative.

- Cipher floors: the bulk cipher alone over a buffer as long as the pipeline's plaintext (Blowfish-CTR with a
  448-bit key for `sbbe-blowfish`; AES-SIV for `aes-256-siv`). No key derivation, search, hashing or packing.
- The alternative a user might pick instead of MedShield: encrypt the scanner's file as it is for one
  recipient (ephemeral X25519, HKDF-SHA256, AES-256-GCM; ECIES style) and forward it; no segmentation, no
  hiding, no restoration record, no compression.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from Crypto.Cipher import AES, Blowfish
from Crypto.Hash import SHA256
from Crypto.Protocol import DH
from Crypto.Protocol.KDF import HKDF
from Crypto.PublicKey import ECC

from gateway.rng import RandomSource, system_random

BLOWFISH_KEY_BYTES = 56  # 448 bits, the key size SBBE uses
ECIES_INFO = b"medshield-bench/ecies-aes-256-gcm"


def blowfish_ctr(key: bytes, data: bytes) -> bytes:
    """Blowfish in CTR mode, 64-bit counter from 0 (as SBBE's body encryption)."""
    return Blowfish.new(key, Blowfish.MODE_CTR, nonce=b"", initial_value=0).encrypt(data)


def aes_siv(key: bytes, data: bytes, associated: bytes = b"") -> tuple[bytes, bytes]:
    """AES-SIV (key 64 bytes: AES-256 for both halves); returns (ciphertext, tag)."""
    cipher = AES.new(key, AES.MODE_SIV)
    cipher.update(associated)
    return cipher.encrypt_and_digest(data)


@dataclass(frozen=True)
class EciesRecipient:
    """An X25519 key pair for the alternative's recipient."""

    private: ECC.EccKey
    public: ECC.EccKey

    @classmethod
    def generate(cls) -> EciesRecipient:
        private = ECC.generate(curve="curve25519")
        return cls(private=private, public=private.public_key())


def _kdf(salt: bytes):  # type: ignore[no-untyped-def]
    return lambda secret: HKDF(secret, 32, salt, SHA256, context=ECIES_INFO)


def ecies_gcm_encrypt(data: bytes, recipient: ECC.EccKey, rng: RandomSource = system_random) -> bytes:
    """ephemeral public (32) ‖ salt (16) ‖ nonce (12) ‖ tag (16) ‖ AES-256-GCM(data); fresh key every call."""
    ephemeral = ECC.generate(curve="curve25519")
    salt, nonce = rng(16), rng(12)
    key = DH.key_agreement(eph_priv=ephemeral, static_pub=recipient, kdf=_kdf(salt))
    eph_pub = ephemeral.public_key().export_key(format="raw")
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    cipher.update(eph_pub + salt)
    body, tag = cipher.encrypt_and_digest(data)
    return eph_pub + salt + nonce + tag + body


def ecies_gcm_decrypt(blob: bytes, recipient: ECC.EccKey) -> bytes:
    """Inverse of `ecies_gcm_encrypt`; raises ValueError if anything was changed."""
    if len(blob) < 76:
        raise ValueError("ciphertext too short")
    eph_pub, salt, nonce, tag, body = blob[:32], blob[32:48], blob[48:60], blob[60:76], blob[76:]
    ephemeral = DH.import_x25519_public_key(eph_pub)
    key = DH.key_agreement(static_priv=recipient, eph_pub=ephemeral, kdf=_kdf(salt))
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    cipher.update(eph_pub + salt)
    return cipher.decrypt_and_verify(body, tag)


def random_key(n: int) -> bytes:
    return os.urandom(n)
