"""Origin: who sealed an envelope. A gateway's Ed25519 *device key* and its public *gateway card*.

One device key per gateway signs every envelope it seals (docs/ENVELOPE.md §7) and every ledger entry and
checkpoint it writes (DESIGN §3, §9); the daemon keeps it in the ledger key file (`ledger.key_file`,
default `<state_dir>/ledger.key`, PEM, 0600). It opens nothing. Its public half travels as a *gateway card*

    {"format": "medshield-gateway-card", "version": 1, "device_id": ID, "key_id": KEY_ID, "public_key": B64URL}

which receivers and recipients pin (`TrustedGateways`): an envelope whose signing key is not pinned, or whose
header names another device id than the pinned card, does not open.

Every signed message starts with its own label, so a signature of one kind is never valid as another.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.crypto.recipients import key_id_of
from gateway.encoding import b64url_decode, b64url_encode
from gateway.errors import ConfigError
from gateway.files import read_small, write_atomic, write_new
from gateway.rng import RandomSource

CARD_FORMAT = "medshield-gateway-card"
CARD_VERSION = 1
CARD_SUFFIX = ".gateway-card"
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
MAX_CARD_BYTES = 16 * 1024
_DEVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def check_device_id(device_id: str) -> str:
    """A device id is 1..64 of letters, digits, '.', '_' and '-' (it names files and topic levels)."""
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise ValueError("device id must be 1-64 characters of letters, digits, '.', '_' or '-'")
    return device_id


_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def public_key_from_pem(text: str) -> bytes:
    """The raw 32-byte key of an Ed25519 public key in PEM (as the daemon writes `ledger.pub`)."""
    try:
        key = serialization.load_pem_public_key(text.encode())
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("not an Ed25519 public key (PEM)")
    return key.public_bytes(*_RAW)


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Ed25519 (RFC 8032, pure) verification; False for any malformed key or signature."""
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public_key)).verify(bytes(signature), bytes(message))
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


@dataclass(frozen=True)
class GatewayCard:
    """The public half of a gateway's device key, bound to its device id."""

    device_id: str
    key_id: str
    public_key: bytes

    def __post_init__(self) -> None:
        check_device_id(self.device_id)
        public_key = bytes(self.public_key)
        if len(public_key) != PUBLIC_KEY_BYTES:
            raise ValueError("an Ed25519 public key is 32 bytes")
        Ed25519PublicKey.from_public_bytes(public_key)
        object.__setattr__(self, "public_key", public_key)
        if self.key_id != key_id_of(public_key):
            raise ValueError("gateway card key id does not match its public key")

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when `signature` is this gateway's Ed25519 signature of `message`."""
        return verify_signature(self.public_key, message, signature)

    def to_json(self) -> str:
        doc = {
            "format": CARD_FORMAT,
            "version": CARD_VERSION,
            "device_id": self.device_id,
            "key_id": self.key_id,
            "public_key": b64url_encode(self.public_key),
        }
        return json.dumps(doc, sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> GatewayCard:
        """Parse a gateway card; ConfigError naming what is wrong."""
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise ConfigError("invalid gateway card: not JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != CARD_FORMAT or doc.get("version") != CARD_VERSION:
            raise ConfigError(f"invalid gateway card: not a {CARD_FORMAT} version {CARD_VERSION} document")
        try:
            return cls(device_id=doc["device_id"], key_id=doc["key_id"], public_key=b64url_decode(doc["public_key"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid gateway card: {exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GatewayCard:
        return cls.from_json(read_small(Path(path), MAX_CARD_BYTES, "gateway card"))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the card (public, 0644), replacing a previous copy atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, self.to_json().encode("utf-8"), mode=0o644)
        return path


class GatewayKey:
    """A gateway's Ed25519 device key with the device id it signs for. Its repr shows no secret."""

    def __init__(self, device_id: str, key: Ed25519PrivateKey) -> None:
        self.device_id = check_device_id(device_id)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("a device key is an Ed25519 private key")
        self._key = key
        self.public_key = key.public_key().public_bytes(*_RAW)
        self.card = GatewayCard(device_id, key_id_of(self.public_key), self.public_key)

    def __repr__(self) -> str:
        return f"GatewayKey(device_id={self.device_id!r}, key_id={self.card.key_id!r})"

    @property
    def key_id(self) -> str:
        return self.card.key_id

    def public_pem(self) -> str:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature (64 bytes) of `message`; callers prefix their own label."""
        return self._key.sign(bytes(message))

    @classmethod
    def generate(cls, device_id: str, rng: RandomSource) -> GatewayKey:
        """A new key from 32 bytes of `rng` (the RFC 8032 private key, i.e. the seed)."""
        return cls(device_id, Ed25519PrivateKey.from_private_bytes(rng(32)))

    @classmethod
    def load(cls, path: str | os.PathLike[str], device_id: str) -> GatewayKey:
        """Read a PEM device key; ConfigError if it is missing, not Ed25519, or readable by others."""
        path = Path(path)
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read device key {path}: {exc.strerror}") from None
        if mode & 0o077:
            raise ConfigError(f"device key {path} is accessible by group or others; run: chmod 600 {path}")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            key = None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"device key {path}: not an Ed25519 private key")
        return cls(device_id, key)

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str], device_id: str) -> GatewayKey:
        """Load the key at `path`, or create one there (0600) with its public PEM beside it (`.pub`)."""
        path = Path(path)
        if path.exists():
            return cls.load(path, device_id)
        key = cls(device_id, Ed25519PrivateKey.generate())
        key.save(path)
        return key

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the private key (PEM, 0600, refusing to overwrite) and `<path>.pub` (public PEM)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            write_new(path, pem)
        except FileExistsError:
            raise ConfigError(f"{path} already exists; refusing to overwrite it") from None
        path.with_suffix(".pub").write_text(self.public_pem())
        return path


class TrustedGateways:
    """The gateway cards a receiver or recipient pins, by key id."""

    def __init__(self, cards: Iterable[GatewayCard] = ()) -> None:
        self._cards: dict[str, GatewayCard] = {}
        for card in cards:
            self.add(card)

    def add(self, card: GatewayCard) -> None:
        held = self._cards.get(card.key_id)
        if held is not None and held != card:
            raise ConfigError(f"two gateway cards with key id {card.key_id} name different devices")
        self._cards[card.key_id] = card

    def get(self, key_id: str) -> GatewayCard | None:
        return self._cards.get(key_id)

    def by_device(self, device_id: str) -> list[GatewayCard]:
        """The pinned cards of one device (usually one; two while its key is being replaced)."""
        return [card for card in self._cards.values() if card.device_id == device_id]

    def __iter__(self) -> Iterator[GatewayCard]:
        return iter(self._cards.values())

    def __len__(self) -> int:
        return len(self._cards)

    @classmethod
    def load(cls, paths: Iterable[str | os.PathLike[str]]) -> TrustedGateways:
        """Cards from files and directories (every `*.gateway-card` in a directory)."""
        cards: list[GatewayCard] = []
        for p in paths:
            path = Path(p)
            files = sorted(path.glob(f"*{CARD_SUFFIX}")) if path.is_dir() else [path]
            cards.extend(GatewayCard.load(f) for f in files)
        return cls(cards)


