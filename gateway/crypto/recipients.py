"""Recipients: who an envelope is sealed to.

A recipient is an X25519 key pair. The gateway holds only the public *recipient card*
(`NAME.card`: name, key id, public key); the private key (`NAME.key`, mode 0600) stays with the recipient,
or is never stored at all when it is re-derived from a biometric secret (`recipient_from_seed`).

The key id is the hex of the first 16 bytes of SHA-256(raw 32-byte public key).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key

from gateway.crypto.kdf import hkdf
from gateway.encoding import b64url_decode, b64url_encode
from gateway.errors import ConfigError
from gateway.files import read_small, write_new
from gateway.rng import RandomSource

CARD_FORMAT = "medshield-recipient-card"
KEY_FORMAT = "medshield-private-key"
FILE_VERSION = 1
KEY_BYTES = 32
SEED_INFO = b"medshield/v1/recipient/x25519-from-k_enc"
MIN_SEED_BYTES = 16
MAX_FILE_BYTES = 64 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def key_id_of(public_key: bytes) -> str:
    """Hex of the first 16 bytes of SHA-256(raw public key): the key id of recipient and gateway cards alike."""
    return hashlib.sha256(public_key).digest()[:16].hex()


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            "recipient name must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


def _check_public_key(public_key: bytes) -> bytes:
    public_key = bytes(public_key)
    if len(public_key) != KEY_BYTES:
        raise ValueError("an X25519 public key is 32 bytes")
    # Rejects non-canonical encodings and low-order points (an all-zero shared secret).
    import_x25519_public_key(public_key)
    return public_key


@dataclass(frozen=True)
class RecipientCard:
    """The public half of a recipient: what a gateway needs to seal envelopes to it."""

    name: str
    key_id: str
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        object.__setattr__(self, "public_key", _check_public_key(self.public_key))
        if self.key_id != key_id_of(self.public_key):
            raise ValueError("recipient card key id does not match its public key")

    def to_json(self) -> str:
        """The card as a JSON document (the content of NAME.card)."""
        return _dump_doc(CARD_FORMAT, self.name, self.key_id, public_key=b64url_encode(self.public_key))

    @classmethod
    def from_json(cls, text: str | bytes) -> RecipientCard:
        """Parse a card; raises ConfigError naming what is wrong."""
        doc = _parse_doc(text, CARD_FORMAT, "recipient card")
        try:
            return cls(name=doc["name"], key_id=doc["key_id"], public_key=b64url_decode(doc["public_key"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid recipient card: {exc}") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the card (public, mode 0644). Refuses to overwrite an existing file."""
        path = Path(path)
        _write_new(path, self.to_json().encode("utf-8"), 0o644)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RecipientCard:
        """Read a card file; raises ConfigError on a missing or malformed file."""
        return cls.from_json(read_small(Path(path), MAX_FILE_BYTES, "recipient card"))


@dataclass(frozen=True)
class PrivateKey:
    """A recipient's X25519 private key. Its repr never shows the secret."""

    name: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        secret = bytes(self.secret)
        if len(secret) != KEY_BYTES:
            raise ValueError("an X25519 private key is 32 bytes")
        object.__setattr__(self, "secret", secret)
        key = import_x25519_private_key(secret)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_public", key.public_key().export_key(format="raw"))

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte X25519 public key."""
        return self._public  # type: ignore[attr-defined, no-any-return]

    @property
    def key_id(self) -> str:
        """Hex of the first 16 bytes of SHA-256(public key)."""
        return key_id_of(self.public_key)

    @property
    def ecc_key(self):  # type: ignore[no-untyped-def]
        """The pycryptodome key object, for key agreement."""
        return self._key  # type: ignore[attr-defined]

    def card(self) -> RecipientCard:
        """The matching public recipient card."""
        return RecipientCard(name=self.name, key_id=self.key_id, public_key=self.public_key)

    def to_json(self) -> str:
        return _dump_doc(KEY_FORMAT, self.name, self.key_id, private_key=b64url_encode(self.secret))

    @classmethod
    def from_json(cls, text: str | bytes) -> PrivateKey:
        doc = _parse_doc(text, KEY_FORMAT, "private key")
        try:
            key = cls(name=doc["name"], secret=b64url_decode(doc["private_key"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid private key file: {exc}") from None
        if doc.get("key_id") != key.key_id:
            raise ConfigError("invalid private key file: key id does not match the key")
        return key

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the key file with mode 0600. Refuses to overwrite an existing file."""
        path = Path(path)
        _write_new(path, self.to_json().encode("utf-8"), 0o600)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PrivateKey:
        """Read a key file; refuses one that the group or others may read or write (ConfigError)."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfigError(f"private key {path} is a symbolic link; give the file itself") from None
            raise ConfigError(f"cannot read private key {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            # fstat on the opened descriptor: the file checked is the file read.
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError(f"private key {path} is not a regular file")
            if mode & 0o077:
                raise ConfigError(
                    f"private key {path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
                    f"run: chmod 600 {path}"
                )
            data = fh.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError(f"private key {path} is too large")
        return cls.from_json(data)


def _dump_doc(fmt: str, name: str, key_id: str, **key: str) -> str:
    """A card or key file: format, version, name, key id and the one key field, as stable JSON."""
    doc = {"format": fmt, "version": FILE_VERSION, "name": name, "key_id": key_id, **key}
    return json.dumps(doc, sort_keys=True, indent=2) + "\n"


def _parse_doc(text: str | bytes, fmt: str, what: str) -> dict:  # type: ignore[type-arg]
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"invalid {what}: not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise ConfigError(f"invalid {what}: not a {fmt} document")
    if doc.get("version") != FILE_VERSION:
        raise ConfigError(f"invalid {what}: unsupported version {doc.get('version')!r}")
    return doc


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        write_new(path, data, mode=mode)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; refusing to overwrite it") from None


def save_recipient(directory: str | os.PathLike[str], private_key: PrivateKey) -> tuple[Path, Path]:
    """Write NAME.key (0600) and NAME.card into `directory`; returns (key path, card path)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key_path = private_key.save(directory / f"{private_key.name}.key")
    card_path = private_key.card().save(directory / f"{private_key.name}.card")
    return key_path, card_path


def generate_recipient(name: str, rng: RandomSource) -> tuple[PrivateKey, RecipientCard]:
    """A fresh raw-key recipient from 32 bytes of `rng`."""
    key = PrivateKey(name=_check_name(name), secret=rng(KEY_BYTES))
    return key, key.card()


def recipient_from_seed(name: str, k_enc: bytes) -> tuple[PrivateKey, RecipientCard]:
    """The recipient key pair bound to a biometric key: X25519 scalar = HKDF(K_enc, info=SEED_INFO).

    Deterministic: the same K_enc always gives the same key pair, so it never needs to be stored.
    """
    k_enc = bytes(k_enc)
    if len(k_enc) < MIN_SEED_BYTES:
        raise ValueError(f"K_enc must be at least {MIN_SEED_BYTES} bytes")
    secret = hkdf(k_enc, salt=b"", info=SEED_INFO, length=KEY_BYTES)
    key = PrivateKey(name=_check_name(name), secret=secret)
    return key, key.card()
