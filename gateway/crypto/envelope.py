"""The `.msh` envelope, version 2 (docs/ENVELOPE.md): one image sealed to one recipient, signed by its gateway.

    "MSH2" | u32 big-endian header length | header (UTF-8 JSON, sorted keys) | tag | body | signature (64)

Per message: a fresh ephemeral X25519 key and a random 32-byte salt; the shared secret with the recipient's
public key goes through HKDF-SHA256 (salt = the random salt; info binds the suite, both public keys and the
message id) to the message secret S. From S come the hiding-stage keys (`derive`) and the suite's key. The
tag authenticates magic, length, header and plaintext; the gateway's Ed25519 device key signs the digest of
everything before the signature, so the origin is authenticated to anyone holding the gateway's card,
without decrypting.

The API, in full: `Sealer` (construct, `derive`, `seal` once → `Sealed`), `open_envelope` (→ `OpenedEnvelope`, with
the verified `Origin`), `verify_origin` (the signature alone, for receivers that hold no recipient key) and
`peek_header` / `peek` (unauthenticated, for routing and analysis). Every failure to open or verify raises
`gateway.errors.OpenError`, whatever went wrong, including unexpected exceptions while parsing untrusted bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.crypto import sbbe, suites
from gateway.crypto.kdf import hkdf
from gateway.crypto.origin import SIGNATURE_BYTES, GatewayKey, TrustedGateways, verify_signature
from gateway.crypto.recipients import PrivateKey, RecipientCard, key_id_of
from gateway.encoding import b64url_decode, b64url_encode
from gateway.errors import InputError, OpenError
from gateway.reasons import Reason
from gateway.rng import Clock, RandomSource, system_clock, system_random

MAGIC = b"MSH2"
FORMAT_VERSION = 2
PREFIX_BYTES = 8  # magic + u32 header length
MAX_HEADER_BYTES = 64 * 1024
MAX_PLAINTEXT_BYTES = sbbe.MAX_PLAINTEXT_BYTES  # 512 MiB, for every suite
MAX_TAG_BYTES = 32
SALT_BYTES = 32
SECRET_BYTES = 32
MAX_LABEL_BYTES = 128
MAX_ENVELOPE_BYTES = PREFIX_BYTES + MAX_HEADER_BYTES + MAX_TAG_BYTES + MAX_PLAINTEXT_BYTES + SIGNATURE_BYTES

DEFAULT_SUITE = sbbe.SUITE

INFO_SECRET = b"medshield/v1/message-secret"
INFO_DERIVE = b"medshield/v1/derive/"
SIGNATURE_LABEL = b"medshield/v2/envelope-origin"

_TOP_FIELDS = {
    "version",
    "suite",
    "message_id",
    "created_ns",
    "device_id",
    "gateway_public_key",
    "recipient_key_id",
    "ephemeral_public_key",
    "salt",
    "compression",
}
_TOKEN = re.compile(r"[a-z0-9-]{1,16}")
_DEVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


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


def _x25519(private: bytes, peer_public: bytes) -> tuple[bytes, bytes]:
    """(X25519 shared secret, our raw public key) for the raw 32-byte `private` scalar and the peer's raw
    public key (RFC 7748), through OpenSSL: 0.2 ms where pycryptodome's pure-Python import and agreement took
    3.8 on the 2-core EPYC under load, on every sealed image. ValueError for an all-zero (low-order) result."""
    key = X25519PrivateKey.from_private_bytes(private)
    shared = key.exchange(X25519PublicKey.from_public_bytes(peer_public))
    return shared, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def signed_message(unsigned: bytes) -> bytes:
    """What the gateway signs: the label, then SHA-256 of every byte before the signature. (The digest covers
    the body, not just the tag: an AES-SIV tag is a CMAC, and whoever holds the message key could find a second
    plaintext with the same tag.)"""
    return SIGNATURE_LABEL + hashlib.sha256(unsigned).digest()


# --------------------------------------------------------------------------------------------------------
# Header


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError("duplicate key")
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError("non-finite number")


def _validate_header(h: Any) -> dict[str, Any]:
    """Raise ValueError unless `h` is a well-formed v2 header; returns it."""
    if not isinstance(h, dict):
        raise ValueError("header is not an object")
    name = h.get("suite")
    if name not in suites.names():
        raise ValueError("suite")
    suite = suites.get(name)
    expected = _TOP_FIELDS | ({suite.header_field} if suite.header_field else set())
    if set(h) != expected:
        raise ValueError("header fields")
    if type(h["version"]) is not int or h["version"] != FORMAT_VERSION:
        raise ValueError("version")
    mid = h["message_id"]
    if not isinstance(mid, str) or str(uuid.UUID(mid)) != mid:
        raise ValueError("message id")
    if type(h["created_ns"]) is not int or not 0 <= h["created_ns"] <= 2**63 - 1:
        raise ValueError("created")
    if not isinstance(h["device_id"], str) or not _DEVICE_ID.fullmatch(h["device_id"]):
        raise ValueError("device id")
    kid = h["recipient_key_id"]
    if not isinstance(kid, str) or len(kid) != 32 or kid != kid.lower() or bytes.fromhex(kid).hex() != kid:
        raise ValueError("key id")
    if len(b64url_decode(h["ephemeral_public_key"])) != 32 or len(b64url_decode(h["salt"])) != SALT_BYTES:
        raise ValueError("key or salt")
    if len(b64url_decode(h["gateway_public_key"])) != 32:
        raise ValueError("gateway key")
    if not isinstance(h["compression"], str) or not _TOKEN.fullmatch(h["compression"]):
        raise ValueError("compression")
    suite.check_header(h.get(suite.header_field) if suite.header_field else None)
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

    Reads at most 8 + 64 KiB. Raises OpenError if the prefix is not a well-formed v2 header.
    """
    try:
        header, _ = _parse_prefix(bytes(data[: PREFIX_BYTES + MAX_HEADER_BYTES]))
        return header
    except Exception:
        pass
    raise OpenError()


@dataclass(frozen=True)
class Peeked:
    """An envelope cut into its fields, UNAUTHENTICATED (analysis and routing; `open_envelope` to trust it)."""

    header: dict[str, Any]
    tag: bytes
    body: bytes
    signature: bytes


def peek(data: bytes) -> Peeked:
    """The header, tag, body and signature of an envelope, unauthenticated; OpenError if malformed."""
    try:
        header, _, tag, body, signature = _split(bytes(data))
        return Peeked(header, tag, body, signature)
    except Exception:
        pass
    raise OpenError()


# --------------------------------------------------------------------------------------------------------
# Sealing


@dataclass(frozen=True)
class Sealed:
    """One sealed envelope, with what the suite chose (the SBBE search result, if any) and stage timings."""

    envelope: bytes
    report: Any = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(eq=False)
class Sealer:
    """Seals one message to one recipient, signed by `signer`. Construct, `derive` the hiding keys, then
    `seal` exactly once.

    The ephemeral key and salt are drawn from `rng` at construction, so `derive` works before the sealed
    content exists. A second `seal` raises RuntimeError: reusing S would reuse every key.
    """

    card: RecipientCard
    signer: GatewayKey
    suite: str = DEFAULT_SUITE
    message_id: str | uuid.UUID = field(default_factory=uuid.uuid4)
    _: KW_ONLY
    rng: RandomSource = system_random
    clock: Clock = system_clock
    params: sbbe.SearchParams = field(default_factory=sbbe.SearchParams)

    def __post_init__(self) -> None:
        if self.suite not in suites.names():
            raise ValueError(f"unknown suite {self.suite!r}; choose one of {', '.join(suites.names())}")
        if not isinstance(self.card, RecipientCard):
            raise TypeError("card must be a RecipientCard")
        if not isinstance(self.signer, GatewayKey):
            raise TypeError("signer must be a GatewayKey")
        self._mid = uuid.UUID(str(self.message_id))
        self.message_id = str(self._mid)
        t0 = time.perf_counter()
        ephemeral = self.rng(32)
        self._salt = self.rng(SALT_BYTES)
        shared, self._epk = _x25519(ephemeral, self.card.public_key)
        info = secret_info(self.suite, self._epk, self.card.public_key, self._mid.bytes)
        self._secret = _message_secret(shared, self._salt, info)
        self._sealed = False
        self._prepared: suites.Prepared | None = None
        self._search_s = self._search_cpu_s = 0.0
        self._keys_s = time.perf_counter() - t0

    def derive(self, label: str, length: int = 32) -> bytes:
        """Per-message key for `label` (e.g. "stego/order", "stego/stamp"); the opener derives the same."""
        return derive_key(self._secret, label, length)

    def choose_key(self, sample: np.ndarray | bytes) -> None:
        """Run the suite's key choice (the SBBE search) now, scoring on `sample` (an image array), before the
        plaintext exists: `seal` then only encrypts and signs. At most once, and only before `seal`."""
        if self._sealed or self._prepared is not None:
            raise RuntimeError("the key of this Sealer is already chosen")
        t0, cpu0 = time.perf_counter(), time.thread_time()
        self._prepared = suites.get(self.suite).prepare(self._secret, self._mid.bytes, sample, self.params, self.rng)
        self._search_s = time.perf_counter() - t0
        self._search_cpu_s = time.thread_time() - cpu0

    def seal(self, plaintext: bytes, *, compression: str = "none", sample: np.ndarray | bytes | None = None) -> Sealed:
        """The signed envelope for `plaintext`. `compression` names how the plaintext is encoded (it stays in
        clear); `sample` (an image array) feeds the SBBE fitness unless `choose_key` ran, else the search
        scores the first bytes of the plaintext. InputError for too large input.

        Timings: `search`, `encrypt`, `sign`, and `seal`, their sum with the header's making. A search run
        early by `choose_key` counts in `seal` with its CPU time (`search_cpu`): it ran beside other work,
        which stretches its wall time (`search`) but not what it costs."""
        if self._sealed:
            raise RuntimeError("this Sealer has already sealed a message; make a new Sealer per message")
        if sample is not None and self._prepared is not None:
            raise ValueError("the key was chosen by choose_key: seal takes no sample")
        self._sealed = True
        timings = {"keys": self._keys_s}
        t_start = time.perf_counter()
        plaintext = bytes(plaintext)
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise InputError(Reason.TOO_LARGE, f"plaintext larger than {MAX_PLAINTEXT_BYTES} bytes")
        if not _TOKEN.fullmatch(compression):
            raise ValueError("compression must be a short lowercase token")
        suite = suites.get(self.suite)
        header: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "suite": self.suite,
            "message_id": self.message_id,
            "created_ns": int(self.clock()),
            "device_id": self.signer.device_id,
            "gateway_public_key": b64url_encode(self.signer.public_key),
            "recipient_key_id": self.card.key_id,
            "ephemeral_public_key": b64url_encode(self._epk),
            "salt": b64url_encode(self._salt),
            "compression": compression,
        }
        chosen_early = self._prepared is not None
        if self._prepared is None:
            t0 = time.perf_counter()
            self._prepared = suite.prepare(
                self._secret, self._mid.bytes, plaintext if sample is None else sample, self.params, self.rng
            )
            self._search_s = time.perf_counter() - t0
        prepared = self._prepared
        if suite.header_field:
            header[suite.header_field] = prepared.header
            timings["search"] = self._search_s
            if chosen_early:
                timings["search_cpu"] = self._search_cpu_s
        header_bytes = _canonical_json(header)
        prefix = MAGIC + len(header_bytes).to_bytes(4, "big") + header_bytes
        t0 = time.perf_counter()
        tag, body = suite.encrypt(prepared.key, prefix, plaintext)
        timings["encrypt"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        unsigned = prefix + tag + body
        signature = self.signer.sign(signed_message(unsigned))
        timings["sign"] = time.perf_counter() - t0
        timings["seal"] = time.perf_counter() - t_start + (self._search_cpu_s if chosen_early else 0.0)
        return Sealed(envelope=unsigned + signature, report=prepared.report, timings=timings)


# --------------------------------------------------------------------------------------------------------
# Opening


@dataclass(frozen=True)
class Origin:
    """Who sealed an envelope, as its signature proves. `pinned` is False only when the caller accepted an
    unknown origin explicitly: the signature then matches the key named in the header, and nothing more."""

    device_id: str
    key_id: str
    created_ns: int
    pinned: bool


@dataclass(frozen=True)
class OpenedEnvelope:
    """An opened envelope: its (now authenticated) header, origin and plaintext, and `derive(label)` for the
    hiding-stage keys the sealer derived."""

    header: dict[str, Any]
    origin: Origin
    plaintext: bytes
    derive: Callable[..., bytes] = field(repr=False)


def _split(data: bytes) -> tuple[dict[str, Any], bytes, bytes, bytes, bytes]:
    """(header, prefix, tag, body, signature); raises on malformed input."""
    header, offset = _parse_prefix(data)
    tag_len = suites.get(header["suite"]).tag_bytes
    if len(data) < offset + tag_len + SIGNATURE_BYTES:
        raise ValueError("truncated")
    end = len(data) - SIGNATURE_BYTES
    return header, data[:offset], data[offset : offset + tag_len], data[offset + tag_len : end], data[end:]


def _origin(data: bytes, header: dict[str, Any], gateways: TrustedGateways, accept_unknown: bool) -> Origin:
    public_key = b64url_decode(header["gateway_public_key"])
    signature = data[len(data) - SIGNATURE_BYTES :]
    if not verify_signature(public_key, signed_message(data[: len(data) - SIGNATURE_BYTES]), signature):
        raise ValueError("signature")
    key_id = key_id_of(public_key)
    card = gateways.get(key_id)
    if card is None:
        if not accept_unknown:
            raise ValueError("unknown origin")
        return Origin(header["device_id"], key_id, header["created_ns"], pinned=False)
    if card.device_id != header["device_id"]:
        raise ValueError("device id does not match the pinned card")
    return Origin(card.device_id, key_id, header["created_ns"], pinned=True)


def verify_origin(
    data: bytes, gateways: TrustedGateways, *, accept_unknown_origin: bool = False, max_bytes: int = MAX_ENVELOPE_BYTES
) -> tuple[dict[str, Any], Origin]:
    """Check an envelope's signature against the pinned gateway cards, without decrypting anything.

    Returns the (signed) header and the origin; OpenError for a malformed, unsigned, forged or unpinned
    envelope (an unpinned one passes only with `accept_unknown_origin`).
    """
    try:
        data = bytes(data)
        if len(data) > max_bytes:
            raise ValueError("too large")
        header = _split(data)[0]
        return header, _origin(data, header, gateways, accept_unknown_origin)
    except Exception:
        pass  # raised outside the handler so no cause or context travels with the error
    raise OpenError()


def _open(
    data: bytes, private_key: PrivateKey, gateways: TrustedGateways, accept_unknown: bool, max_bytes: int
) -> OpenedEnvelope:
    if len(data) > max_bytes:
        raise ValueError("too large")
    header, prefix, tag, body, _ = _split(data)
    if header["recipient_key_id"] != private_key.key_id:
        raise ValueError("not for this key")
    if len(body) > MAX_PLAINTEXT_BYTES:
        raise ValueError("too large")
    origin = _origin(data, header, gateways, accept_unknown)  # before any decryption
    suite = suites.get(header["suite"])
    epk = b64url_decode(header["ephemeral_public_key"])
    salt = b64url_decode(header["salt"])
    mid = uuid.UUID(header["message_id"]).bytes
    shared, _ = _x25519(private_key.secret, epk)
    secret = _message_secret(shared, salt, secret_info(header["suite"], epk, private_key.public_key, mid))
    key = suite.key_for(secret, header.get(suite.header_field) if suite.header_field else None)
    plaintext = suite.decrypt(key, prefix, tag, body)

    def derive(label: str, length: int = 32) -> bytes:
        return derive_key(secret, label, length)

    return OpenedEnvelope(header=header, origin=origin, plaintext=plaintext, derive=derive)


def open_envelope(
    data: bytes,
    private_key: PrivateKey,
    *,
    gateways: TrustedGateways,
    accept_unknown_origin: bool = False,
    max_bytes: int = MAX_ENVELOPE_BYTES,
) -> OpenedEnvelope:
    """Verify the origin, then authenticate and decrypt. Any failure at all raises OpenError, with no detail.

    The signature must verify and its key must be one of `gateways` (pinned cards) under the device id the
    header names; `accept_unknown_origin` opens an envelope whose key is not pinned (the signature must
    still match the key in the header), and the result's `origin.pinned` is then False.
    """
    try:
        return _open(bytes(data), private_key, gateways, accept_unknown_origin, max_bytes)
    except Exception:
        pass  # raised outside the handler so no cause or context travels with the error
    raise OpenError()
