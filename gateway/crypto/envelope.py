"""The `.msh` envelope (docs/ENVELOPE.md): one image sealed to one recipient.

    "MSH1" | u32 big-endian header length | header (UTF-8 JSON, sorted keys) | tag | body

Per message: a fresh ephemeral X25519 key and a random 32-byte salt; the shared secret with the recipient's
public key goes through HKDF-SHA256 (salt = the random salt; info binds the suite, both public keys and the
message id) to the message secret S. From S come the hiding-stage keys (`derive`) and the suite's keys.
The tag authenticates magic, length, header and plaintext, so any changed byte makes opening fail.

Every failure to open raises `gateway.errors.OpenError`, whatever went wrong, including unexpected
exceptions while parsing untrusted bytes.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Callable

import numpy as np
from Crypto.Cipher import AES
from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement

from gateway.crypto import sbbe
from gateway.encoding import b64url_decode, b64url_encode
from gateway.crypto.kdf import hkdf
from gateway.crypto.recipients import PrivateKey, RecipientCard
from gateway.errors import InputError, OpenError
from gateway.rng import Clock, RandomSource, system_clock, system_random

MAGIC = b"MSH1"
FORMAT_VERSION = 1
PREFIX_BYTES = 8  # magic + u32 header length
MAX_HEADER_BYTES = 64 * 1024
MAX_PLAINTEXT_BYTES = sbbe.MAX_PLAINTEXT_BYTES  # 512 MiB, for both suites
SALT_BYTES = 32
SECRET_BYTES = 32
MAX_LABEL_BYTES = 128

SUITE_SBBE = sbbe.SUITE
SUITE_AES_SIV = "aes-256-siv"
SUITES = (SUITE_SBBE, SUITE_AES_SIV)
DEFAULT_SUITE = SUITE_SBBE
TAG_BYTES = {SUITE_SBBE: sbbe.TAG_BYTES, SUITE_AES_SIV: 16}
MAX_ENVELOPE_BYTES = PREFIX_BYTES + MAX_HEADER_BYTES + 32 + MAX_PLAINTEXT_BYTES

INFO_SECRET = b"medshield/v1/message-secret"
INFO_DERIVE = b"medshield/v1/derive/"
INFO_AES_SIV = b"medshield/v1/aes-256-siv/key"

_TOP_FIELDS = {
    "version",
    "suite",
    "message_id",
    "created_ns",
    "device_id",
    "recipient_key_id",
    "ephemeral_public_key",
    "salt",
    "content",
    "source",
}
_SBBE_FIELDS = {"genome", "population", "generations", "offspring", "sample_shape"}


# --------------------------------------------------------------------------------------------------------
# Keys


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def secret_info(suite: str, ephemeral_public_key: bytes, recipient_public_key: bytes, message_id: bytes) -> bytes:
    """HKDF info for S: the label, then suite, ephemeral key, recipient key and message id, each u16-length
    prefixed, so that no two different contexts share an encoding."""
    return (
        INFO_SECRET
        + _lp(suite.encode("ascii"))
        + _lp(ephemeral_public_key)
        + _lp(recipient_public_key)
        + _lp(message_id)
    )


def _message_secret(shared: bytes, salt: bytes, info: bytes) -> bytes:
    return hkdf(shared, salt=salt, info=info, length=SECRET_BYTES)


def derive_key(secret: bytes, label: str, length: int = 32) -> bytes:
    """A per-message subkey: HKDF(S, info="medshield/v1/derive/" ‖ label). Distinct labels, independent keys."""
    if not isinstance(label, str):
        raise TypeError("label must be a string")
    raw = label.encode("utf-8")
    if not 1 <= len(raw) <= MAX_LABEL_BYTES:
        raise ValueError(f"label must be 1..{MAX_LABEL_BYTES} bytes of UTF-8")
    return hkdf(secret, salt=b"", info=INFO_DERIVE + raw, length=length)


def _aes_siv_key(secret: bytes) -> bytes:
    return hkdf(secret, salt=b"", info=INFO_AES_SIV, length=64)


def _identity(z: bytes) -> bytes:
    return z


# --------------------------------------------------------------------------------------------------------
# Header


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def _check_metadata(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise InputError("invalid_metadata", f"envelope {name} must be a dict with string keys")
    try:
        _canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise InputError("invalid_metadata", f"envelope {name} is not JSON-serialisable: {exc}") from None
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError("duplicate key")
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError("non-finite number")


def _is_int(v: Any, lo: int, hi: int) -> bool:
    return type(v) is int and lo <= v <= hi


def _validate_header(h: Any) -> dict[str, Any]:
    """Raise ValueError unless `h` is a well-formed v1 header; returns it."""
    if not isinstance(h, dict):
        raise ValueError("header is not an object")
    suite = h.get("suite")
    expected = _TOP_FIELDS | ({"sbbe"} if suite == SUITE_SBBE else set())
    if set(h) != expected or suite not in SUITES:
        raise ValueError("header fields")
    if h["version"] != FORMAT_VERSION or type(h["version"]) is not int:
        raise ValueError("version")
    mid = h["message_id"]
    if not isinstance(mid, str) or str(uuid.UUID(mid)) != mid:
        raise ValueError("message id")
    if not _is_int(h["created_ns"], 0, 2**63 - 1):
        raise ValueError("created")
    if not isinstance(h["device_id"], str) or not 1 <= len(h["device_id"]) <= 256:
        raise ValueError("device id")
    kid = h["recipient_key_id"]
    if not isinstance(kid, str) or len(kid) != 32 or kid != kid.lower() or bytes.fromhex(kid).hex() != kid:
        raise ValueError("key id")
    if len(b64url_decode(h["ephemeral_public_key"])) != 32 or len(b64url_decode(h["salt"])) != SALT_BYTES:
        raise ValueError("key or salt")
    if not isinstance(h["content"], dict) or not isinstance(h["source"], dict):
        raise ValueError("content or source")
    if suite == SUITE_SBBE:
        s = h["sbbe"]
        if not isinstance(s, dict) or set(s) != _SBBE_FIELDS:
            raise ValueError("sbbe fields")
        if len(b64url_decode(s["genome"])) != sbbe.GENOME_BYTES:
            raise ValueError("genome")
        shape = s["sample_shape"]
        if not (
            _is_int(s["population"], 1, 256)
            and _is_int(s["generations"], 0, 64)
            and _is_int(s["offspring"], 1, 256)
            and isinstance(shape, list)
            and len(shape) == 2
            and all(_is_int(v, 1, 1 << 20) for v in shape)
        ):
            raise ValueError("search parameters")
    return h


def _parse_prefix(data: bytes) -> tuple[dict[str, Any], int]:
    """(validated header, offset of the tag). Raises anything on malformed input; callers map to OpenError."""
    if len(data) < PREFIX_BYTES or data[:4] != MAGIC:
        raise ValueError("magic")
    hlen = int.from_bytes(data[4:8], "big")
    if not 2 <= hlen <= MAX_HEADER_BYTES or len(data) < PREFIX_BYTES + hlen:
        raise ValueError("header length")
    raw = data[PREFIX_BYTES : PREFIX_BYTES + hlen].decode("utf-8", errors="strict")
    header = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    _validate_header(header)
    return header, PREFIX_BYTES + hlen


def peek_header(data: bytes) -> dict[str, Any]:
    """The header of an envelope (or of its first bytes), UNAUTHENTICATED: for routing only.

    Reads at most 8 + 64 KiB. Raises OpenError if the prefix is not a well-formed v1 header.
    """
    try:
        header, _ = _parse_prefix(bytes(data[: PREFIX_BYTES + MAX_HEADER_BYTES]))
        return header
    except Exception:
        pass
    raise OpenError()


# --------------------------------------------------------------------------------------------------------
# Sealing


@dataclass(eq=False)
class Sealer:
    """Seals one message to one recipient. Construct, `derive` the hiding keys, then `seal` exactly once.

    The ephemeral key and salt are drawn from `rng` at construction, so `derive` works before the sealed
    content exists. A second `seal` raises RuntimeError: reusing S would reuse every key.
    """

    card: RecipientCard
    suite: str = DEFAULT_SUITE
    message_id: str | uuid.UUID = field(default_factory=uuid.uuid4)
    _: KW_ONLY
    rng: RandomSource = system_random
    clock: Clock = system_clock
    device_id: str = field(default_factory=socket.gethostname)
    params: sbbe.SearchParams = field(default_factory=sbbe.SearchParams)
    search_result: sbbe.SearchResult | None = field(default=None, init=False)
    timings: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise ValueError(f"unknown suite {self.suite!r}; choose one of {', '.join(SUITES)}")
        if not isinstance(self.card, RecipientCard):
            raise TypeError("card must be a RecipientCard")
        if not isinstance(self.device_id, str) or not 1 <= len(self.device_id) <= 256:
            raise ValueError("device_id must be a string of 1..256 characters")
        self._mid = uuid.UUID(str(self.message_id))
        self.message_id = str(self._mid)
        t0 = time.perf_counter()
        ephemeral = import_x25519_private_key(self.rng(32))
        self._epk = ephemeral.public_key().export_key(format="raw")
        self._salt = self.rng(SALT_BYTES)
        shared = key_agreement(
            eph_priv=ephemeral, static_pub=import_x25519_public_key(self.card.public_key), kdf=_identity
        )
        info = secret_info(self.suite, self._epk, self.card.public_key, self._mid.bytes)
        self._secret = _message_secret(shared, self._salt, info)
        self._sealed = False
        self.timings["keys"] = time.perf_counter() - t0

    def derive(self, label: str, length: int = 32) -> bytes:
        """Per-message key for `label` (e.g. "stego/order", "stego/stamp"); the opener derives the same."""
        return derive_key(self._secret, label, length)

    def seal(
        self,
        plaintext: bytes,
        content: dict[str, Any],
        source: dict[str, Any],
        sample: np.ndarray | bytes | None = None,
    ) -> bytes:
        """The envelope for `plaintext`. `sample` (an image array) feeds the SBBE fitness; without one the
        search scores the first bytes of the plaintext. InputError for bad metadata or too large input."""
        if self._sealed:
            raise RuntimeError("this Sealer has already sealed a message; make a new Sealer per message")
        self._sealed = True
        t_start = time.perf_counter()
        plaintext = bytes(plaintext)
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise InputError("too_large", f"plaintext larger than {MAX_PLAINTEXT_BYTES} bytes")
        header: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "suite": self.suite,
            "message_id": self.message_id,
            "created_ns": int(self.clock()),
            "device_id": self.device_id,
            "recipient_key_id": self.card.key_id,
            "ephemeral_public_key": b64url_encode(self._epk),
            "salt": b64url_encode(self._salt),
            "content": _check_metadata("content", content),
            "source": _check_metadata("source", source),
        }
        k_star = b""
        if self.suite == SUITE_SBBE:
            t0 = time.perf_counter()
            result = sbbe.search(
                self._secret, plaintext if sample is None else sample, self._mid.bytes, self.params, self.rng
            )
            self.search_result = result
            header["sbbe"] = {
                "genome": b64url_encode(result.genome),
                "population": self.params.population,
                "generations": self.params.generations,
                "offspring": self.params.offspring_count,
                "sample_shape": list(result.sample_shape),
            }
            k_star = sbbe.candidate_key(self._secret, result.genome)
            self.timings["search"] = time.perf_counter() - t0
        header_bytes = _canonical_json(header)
        if len(header_bytes) > MAX_HEADER_BYTES:
            raise InputError("invalid_metadata", f"envelope header larger than {MAX_HEADER_BYTES} bytes")
        prefix = MAGIC + len(header_bytes).to_bytes(4, "big") + header_bytes
        t0 = time.perf_counter()
        if self.suite == SUITE_SBBE:
            tag, body = sbbe.encrypt(k_star, prefix, plaintext)
        else:
            cipher = AES.new(_aes_siv_key(self._secret), AES.MODE_SIV)
            cipher.update(prefix)
            body, tag = cipher.encrypt_and_digest(plaintext)
        self.timings["encrypt"] = time.perf_counter() - t0
        out = prefix + tag + body
        self.timings["seal"] = time.perf_counter() - t_start
        return out


# --------------------------------------------------------------------------------------------------------
# Opening


@dataclass(frozen=True)
class Opened:
    """An opened envelope: its (now authenticated) header, the plaintext, and `derive(label)` for the
    hiding-stage keys the sealer derived."""

    header: dict[str, Any]
    plaintext: bytes
    derive: Callable[..., bytes] = field(repr=False)


def _open(data: bytes, private_key: PrivateKey, max_bytes: int) -> Opened:
    if len(data) > max_bytes:
        raise ValueError("too large")
    header, offset = _parse_prefix(data)
    suite = header["suite"]
    if header["recipient_key_id"] != private_key.key_id:
        raise ValueError("not for this key")
    tag_len = TAG_BYTES[suite]
    if len(data) < offset + tag_len:
        raise ValueError("truncated")
    prefix = data[:offset]
    tag = data[offset : offset + tag_len]
    body = data[offset + tag_len :]
    if len(body) > MAX_PLAINTEXT_BYTES:
        raise ValueError("too large")
    epk = b64url_decode(header["ephemeral_public_key"])
    salt = b64url_decode(header["salt"])
    mid = uuid.UUID(header["message_id"]).bytes
    shared = key_agreement(
        static_priv=private_key.ecc_key, eph_pub=import_x25519_public_key(epk), kdf=_identity
    )
    secret = _message_secret(shared, salt, secret_info(suite, epk, private_key.public_key, mid))
    if suite == SUITE_SBBE:
        genome = b64url_decode(header["sbbe"]["genome"])
        plaintext = sbbe.decrypt(sbbe.candidate_key(secret, genome), prefix, tag, body)
    else:
        cipher = AES.new(_aes_siv_key(secret), AES.MODE_SIV)
        cipher.update(prefix)
        plaintext = cipher.decrypt_and_verify(body, tag)

    def derive(label: str, length: int = 32) -> bytes:
        return derive_key(secret, label, length)

    return Opened(header=header, plaintext=plaintext, derive=derive)


def open_envelope(data: bytes, private_key: PrivateKey, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> Opened:
    """Authenticate and decrypt an envelope. Any failure at all raises OpenError, with no detail."""
    try:
        return _open(bytes(data), private_key, max_bytes)
    except Exception:
        pass  # raised outside the handler so no cause or context travels with the error
    raise OpenError()
