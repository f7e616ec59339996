"""The cloud side: collect envelopes from the cloud broker, authenticate, then de-duplicate and store; verify.

Nothing unauthenticated decides anything. A whole envelope is stored only once its gateway signature verifies
against a pinned gateway card; only then is its message id compared with those already stored, so a forgery
that copies a genuine id is refused and the genuine envelope still gets in. Parts are authenticated as they
arrive by the signed manifest in part 0 (`gateway.crypto.parts`); parts that arrive before their manifest
are kept as candidates (a few per index, within a byte budget), so a forged part never displaces a genuine
one. Pending parts live on disk (`<out>/.parts/`), written before the message is acknowledged, so a restart
loses none; memory holds only their sizes.

Envelopes are stored as `<out>/<message_id>.msh` (temporary file, fsync, rename). With a raw-key service
recipient, every stored envelope is also opened and its hidden payload checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import topics
from gateway.config import BrokerConfig
from gateway.crypto.envelope import verify_origin
from gateway.crypto.origin import TrustedGateways
from gateway.crypto.parts import MAGIC as PART_MAGIC
from gateway.crypto.parts import Manifest, Part, is_part, parse_part, verify_manifest
from gateway.errors import InputError, OpenError
from gateway.files import write_atomic
from gateway.ledger import GENESIS_HASH, Checkpoint, parse_line
from gateway.logging import get_logger
from gateway.mqtt_link import InboundMessage, MqttLink
from gateway.rng import Clock, system_clock


@dataclass
class ReceiverStats:
    received: int = 0
    parts: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    verified: int = 0
    verify_failed: int = 0
    ledger_stored: int = 0
    ledger_rejected: int = 0
    open_seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "open_seconds"}
        data["open_mean_ms"] = (
            round(1000 * sum(self.open_seconds) / len(self.open_seconds), 2) if self.open_seconds else None
        )
        return data


@dataclass(frozen=True)
class Verification:
    """What opening one stored envelope found (no pixel or patient data)."""

    message_id: str
    ok: bool
    format: str
    gateway: str


Verifier = Callable[[bytes], Verification]


def key_verifier(private_key: Any, gateways: TrustedGateways) -> Verifier:
    """Open with a raw-key recipient: `pipeline.open_` verifies the origin, authenticates, decrypts, extracts
    the hidden payload and checks its keyed stamp and message id (any failure is `OpenError`)."""
    from gateway import pipeline

    def verify(envelope: bytes) -> Verification:
        opened = pipeline.open_(envelope, private_key, gateways=gateways)
        return Verification(
            str(opened.header["message_id"]), True, str(opened.content.get("format", "?")), opened.origin.device_id
        )

    return verify


@dataclass(frozen=True)
class PartLimits:
    """Bounds on pending parts. Candidates (parts whose manifest has not arrived) share `max_candidate_bytes`
    and at most `max_candidates_per_index` per index; the oldest go first. Sets with a verified manifest (only
    a pinned gateway can make one) are bounded by `max_sets`. Incomplete sets expire after their TTL."""

    max_candidate_bytes: int = 64 * 1024 * 1024
    max_candidates_per_index: int = 8
    max_candidate_sets: int = 4096
    max_sets: int = 1024
    max_envelope_bytes: int = 1 << 30
    candidate_ttl_ns: int = 10 * 60 * 10**9
    set_ttl_ns: int = 24 * 3600 * 10**9


@dataclass
class _Set:
    created_ns: int
    manifest: Manifest | None = None
    # index -> digest -> size; chunk bytes live on disk only
    chunks: dict[int, dict[bytes, int]] = field(default_factory=dict)


class PartStore:
    """Pending parts on disk under `root`, authenticated by their signed manifest (see module docstring)."""

    def __init__(
        self, root: Path, gateways: TrustedGateways, limits: PartLimits = PartLimits(), clock: Clock = system_clock
    ) -> None:
        self.root = root
        self.gateways = gateways
        self.limits = limits
        self.clock = clock
        self._sets: dict[bytes, _Set] = {}
        # (message id, index, digest) -> size, oldest first: the candidates, for eviction
        self._candidates: OrderedDict[tuple[bytes, int, bytes], int] = OrderedDict()
        self._candidate_bytes = 0
        self.evicted = 0
        root.mkdir(parents=True, exist_ok=True)
        self._load()

    # -- state -----------------------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._sets)

    @property
    def candidate_bytes(self) -> int:
        return self._candidate_bytes

    def _dir(self, mid: bytes) -> Path:
        return self.root / mid.hex()

    def _chunk_path(self, mid: bytes, index: int, digest: bytes) -> Path:
        return self._dir(mid) / f"{index}-{digest.hex()}"

    def _load(self) -> None:
        now = self.clock()
        for directory in sorted(p for p in self.root.iterdir() if p.is_dir()):
            try:
                mid = bytes.fromhex(directory.name)
                if len(mid) != 16:
                    raise ValueError("name")
            except ValueError:
                shutil.rmtree(directory, ignore_errors=True)
                continue
            s = self._sets[mid] = _Set(created_ns=now)
            manifest_path = directory / "manifest"
            if manifest_path.exists():
                try:
                    part0 = parse_part(manifest_path.read_bytes())
                    s.manifest = verify_manifest(part0, self.gateways)
                    s.chunks[0] = {s.manifest.chunk_sha256[0]: len(part0.chunk)}
                except OpenError:
                    manifest_path.unlink()
            for path in sorted(directory.iterdir(), key=lambda p: p.stat().st_mtime_ns):
                if path.name == "manifest":
                    continue
                if path.name.startswith("."):
                    path.unlink()  # a temporary file a crash left behind
                    continue
                try:
                    index_text, digest_hex = path.name.split("-")
                    index, digest = int(index_text), bytes.fromhex(digest_hex)
                except ValueError:
                    path.unlink()
                    continue
                self._note_chunk(mid, s, index, digest, path.stat().st_size)
            if s.manifest is not None:
                self._prune(mid, s)

    def _note_chunk(self, mid: bytes, s: _Set, index: int, digest: bytes, size: int) -> None:
        s.chunks.setdefault(index, {})[digest] = size
        if s.manifest is None:
            self._candidates[(mid, index, digest)] = size
            self._candidate_bytes += size

    def _forget_candidate(self, key: tuple[bytes, int, bytes]) -> None:
        size = self._candidates.pop(key, None)
        if size is not None:
            self._candidate_bytes -= size

    def discard(self, mid: bytes) -> None:
        """Forget a set (stored, failed or expired), on disk too."""
        s = self._sets.pop(mid, None)
        if s is not None:
            for index, digests in s.chunks.items():
                for digest in digests:
                    self._forget_candidate((mid, index, digest))
        shutil.rmtree(self._dir(mid), ignore_errors=True)

    def _drop_chunk(self, mid: bytes, s: _Set, index: int, digest: bytes) -> None:
        s.chunks.get(index, {}).pop(digest, None)
        if not s.chunks.get(index):
            s.chunks.pop(index, None)
        self._forget_candidate((mid, index, digest))
        self._chunk_path(mid, index, digest).unlink(missing_ok=True)
        self.evicted += 1

    def _prune(self, mid: bytes, s: _Set) -> None:
        """With the manifest known: keep, per index, only the chunk it names; they stop being candidates."""
        assert s.manifest is not None
        for index in list(s.chunks):
            for digest in list(s.chunks.get(index, {})):
                if index >= s.manifest.count or digest != s.manifest.chunk_sha256[index]:
                    self._drop_chunk(mid, s, index, digest)
                else:
                    self._forget_candidate((mid, index, digest))

    def expire(self) -> None:
        now = self.clock()
        for mid, s in list(self._sets.items()):
            ttl = self.limits.set_ttl_ns if s.manifest is not None else self.limits.candidate_ttl_ns
            if now - s.created_ns > ttl:
                self.discard(mid)

    def _evict_candidates(self, keep: tuple[bytes, int, bytes]) -> None:
        limits = self.limits
        for key in list(self._candidates):
            if self._candidate_bytes <= limits.max_candidate_bytes:
                break
            if key != keep:
                mid, index, digest = key
                self._drop_chunk(mid, self._sets[mid], index, digest)
                if not self._sets[mid].chunks and self._sets[mid].manifest is None:
                    self.discard(mid)

    # -- feeding -------------------------------------------------------------------------------------------
    def feed(self, part: Part) -> tuple[bytes, Manifest] | None:
        """Take one parsed part. Returns (envelope, manifest) when a set is complete and its joined bytes match
        the manifest; None while incomplete or for a duplicate. OpenError for a part that is forged (a
        manifest that does not verify, or a chunk the verified manifest does not name); nothing is kept."""
        self.expire()
        mid = part.message_id
        s = self._sets.get(mid)
        if part.index == 0:
            manifest = verify_manifest(part, self.gateways)  # OpenError: forged, kept nowhere
            if s is not None and s.manifest is not None:
                return None  # a redelivered part 0
            if s is None:
                s = self._new_set(mid, verified=True)
            s.manifest = manifest
            write_atomic(self._dir(mid) / "manifest", _raw_part(part), sync_dir=True)
            self._prune(mid, s)
            s.chunks.setdefault(0, {})[manifest.chunk_sha256[0]] = len(part.chunk)
            return self._complete(mid, s)
        digest = part.digest
        if s is not None and s.manifest is not None:
            if part.count != s.manifest.count or digest != s.manifest.chunk_sha256[part.index]:
                raise OpenError()
            if digest in s.chunks.get(part.index, {}):
                return None
            write_atomic(self._chunk_path(mid, part.index, digest), part.data, sync_dir=True)
            s.chunks.setdefault(part.index, {})[digest] = len(part.data)
            return self._complete(mid, s)
        # No manifest yet: a candidate.
        if s is None:
            s = self._new_set(mid, verified=False)
        held = s.chunks.get(part.index, {})
        if digest in held:
            return None
        if len(held) >= self.limits.max_candidates_per_index:
            oldest = next(k for k in self._candidates if k[0] == mid and k[1] == part.index)
            self._drop_chunk(mid, s, oldest[1], oldest[2])
        key = (mid, part.index, digest)
        write_atomic(self._chunk_path(mid, part.index, digest), part.data, sync_dir=True)
        self._note_chunk(mid, s, part.index, digest, len(part.data))
        self._evict_candidates(keep=key)
        return None

    def _new_set(self, mid: bytes, *, verified: bool) -> _Set:
        unverified = [m for m, s in self._sets.items() if s.manifest is None]
        verified_sets = len(self._sets) - len(unverified)
        if not verified and len(unverified) >= self.limits.max_candidate_sets:
            self.discard(unverified[0])  # dicts keep insertion order: the oldest
            self.evicted += 1
        if verified and verified_sets >= self.limits.max_sets:
            oldest = next(m for m, s in self._sets.items() if s.manifest is not None)
            self.discard(oldest)
            self.evicted += 1
        s = self._sets[mid] = _Set(created_ns=self.clock())
        self._dir(mid).mkdir(exist_ok=True)
        return s

    def _complete(self, mid: bytes, s: _Set) -> tuple[bytes, Manifest] | None:
        manifest = s.manifest
        assert manifest is not None
        if len(s.chunks) < manifest.count:
            return None
        first = parse_part((self._dir(mid) / "manifest").read_bytes()).chunk
        rest = [self._chunk_path(mid, i, manifest.chunk_sha256[i]).read_bytes() for i in range(1, manifest.count)]
        envelope = first + b"".join(rest)
        if (
            len(envelope) != manifest.length
            or len(envelope) > self.limits.max_envelope_bytes
            or hashlib.sha256(envelope).digest() != manifest.envelope_sha256
        ):
            self.discard(mid)
            raise OpenError()
        return envelope, manifest


def _raw_part(part: Part) -> bytes:
    return PART_MAGIC + part.message_id + part.index.to_bytes(4, "big") + part.count.to_bytes(4, "big") + part.data


class Receiver:
    """Feed it payloads from the cloud topic; it stores each authenticated envelope once."""

    def __init__(
        self,
        out_dir: Path,
        gateways: TrustedGateways,
        verifier: Verifier | None = None,
        *,
        on_stored: Callable[[str, bytes], None] | None = None,
        part_limits: PartLimits = PartLimits(),
        clock: Clock = system_clock,
    ) -> None:
        """`on_stored(message_id, envelope)` runs after each new envelope is on disk (PACS delivery)."""
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.gateways = gateways
        self._parts = PartStore(out_dir / ".parts", gateways, part_limits, clock)
        self._verifier = verifier
        self._on_stored = on_stored
        self.stats = ReceiverStats()
        self.verifications: list[Verification] = []
        self._log = get_logger("receiver")
        self._seen = {p.stem for p in out_dir.glob("*.msh")}
        # device -> seq -> (entry hash, previous hash); device -> checkpoint count -> head hash
        self._ledgers: dict[str, dict[int, tuple[str, str]]] = {}
        self._checkpoints: dict[str, dict[int, str]] = {}
        self._ledger_checks = 0
        self.ledger_check_seconds = 0.0
        self._load_ledgers()

    @property
    def parts(self) -> PartStore:
        return self._parts

    def _reject(self, what: str, size: int) -> None:
        self.stats.rejected += 1
        self._log.warning("rejected_message", what=what, size=size)

    def handle(self, payload: bytes) -> str | None:
        """Process one cloud message; returns the message id when a new envelope was stored."""
        self.stats.received += 1
        manifest: Manifest | None = None
        try:
            if is_part(payload):
                self.stats.parts += 1
                part = parse_part(payload)
                if str(_uuid(part.message_id)) in self._seen:
                    self.stats.duplicates += 1  # that id is already stored, authenticated
                    return None
                done = self._parts.feed(part)
                if done is None:
                    return None
                envelope, manifest = done
            else:
                envelope = payload
            header, origin = verify_origin(envelope, self.gateways)
            if manifest is not None and (
                origin.key_id != manifest.gateway_key_id or _uuid(manifest.message_id) != header["message_id"]
            ):
                self._parts.discard(manifest.message_id)
                raise OpenError()
        except OpenError:
            self._reject("part" if is_part(payload) else "envelope", len(payload))
            return None
        message_id = str(header["message_id"])
        if manifest is not None:
            self._parts.discard(manifest.message_id)
        if message_id in self._seen:
            self.stats.duplicates += 1
            return None
        write_atomic(self.out_dir / f"{message_id}.msh", envelope, mode=0o644, sync_dir=True)
        self._seen.add(message_id)
        self.stats.stored += 1
        self._log.info("stored", message_id=message_id, gateway=origin.device_id, created_ns=origin.created_ns)
        if self._verifier is not None:
            self._verify(envelope, message_id)
        if self._on_stored is not None:
            try:
                self._on_stored(message_id, envelope)
            except Exception as exc:  # noqa: BLE001 - the envelope is stored; the hook catches up at next start
                self._log.error("on_stored_failed", message_id=message_id, error=type(exc).__name__)
        return message_id

    def ledger_count(self, device: str) -> int:
        """Ledger entries stored for `device`."""
        return len(self._ledgers.get(device, {}))

    def ledger_checkpoint(self, device: str) -> int | None:
        """The largest entry count a stored checkpoint of `device` vouches for."""
        return max(self._checkpoints.get(device, {}), default=None)

    def _load_ledgers(self) -> None:
        for path in (self.out_dir / "ledger").glob("*.jsonl"):
            device = path.stem
            entries = self._ledgers.setdefault(device, {})
            heads = self._checkpoints.setdefault(device, {})
            for line in path.read_text().splitlines():
                try:
                    item = parse_line(line)
                except (ValueError, TypeError):
                    continue  # a line cut short by a crash while appending
                if isinstance(item, Checkpoint):
                    heads[item.count] = item.head_hash
                else:
                    entries[item.seq] = (item.entry_hash(), item.prev_hash)

    def handle_ledger(self, topic: str, payload: bytes) -> bool:
        """Store one ledger entry or checkpoint of `medshield/gateways/<device>/ledger[/checkpoints]` in
        `<out>/ledger/<device>.jsonl`, once, after checking it: signed by the device's pinned card, naming that
        device, and consistent with the chain stored so far (the entry before and after it, the checkpoints).
        Anything else is refused and stored nowhere, so a forged entry never takes a genuine one's place."""
        self._ledger_checks += 1
        t0 = time.perf_counter()
        levels = topic.split("/")
        device = levels[levels.index("gateways") + 1] if "gateways" in levels[:-1] else ""
        try:
            item = parse_line(payload)
        except (ValueError, TypeError):
            return self._ledger_refused(device, "not a ledger entry")
        cards = self.gateways.by_device(device)
        if item.device_id != device or not any(item.verify(card.public_key) for card in cards):
            return self._ledger_refused(device, "not signed by a pinned gateway card for this device")
        entries = self._ledgers.setdefault(device, {})
        heads = self._checkpoints.setdefault(device, {})
        if isinstance(item, Checkpoint):
            at = entries.get(item.count)
            if heads.get(item.count, item.head_hash) != item.head_hash or (at is not None and at[0] != item.head_hash):
                self._log.error("ledger_fork", device=device, seq=item.count)
                return self._ledger_refused(device, "checkpoint contradicts the stored ledger (fork)")
            if item.count in heads:
                return False
            heads[item.count] = item.head_hash
        else:
            entry_hash = item.entry_hash()
            held = entries.get(item.seq)
            if held is not None:
                if held[0] == entry_hash:
                    return False  # a redelivery
                self._log.error("ledger_fork", device=device, seq=item.seq)
                return self._ledger_refused(device, "a different signed entry holds this sequence number (fork)")
            before = (GENESIS_HASH, "") if item.seq == 1 else entries.get(item.seq - 1)
            after = entries.get(item.seq + 1)
            if (
                (before is not None and before[0] != item.prev_hash)
                or (after is not None and after[1] != entry_hash)
                or heads.get(item.seq, entry_hash) != entry_hash
            ):
                return self._ledger_refused(device, "does not chain onto the stored ledger")
            entries[item.seq] = (entry_hash, item.prev_hash)
        self.ledger_check_seconds += time.perf_counter() - t0
        directory = self.out_dir / "ledger"
        directory.mkdir(exist_ok=True)
        with open(directory / f"{device}.jsonl", "a", encoding="utf-8") as fh:
            fh.write(item.to_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.stats.ledger_stored += 1
        return True

    def _ledger_refused(self, device: str, why: str) -> bool:
        self.stats.ledger_rejected += 1
        self._log.warning("ledger_item_refused", device=device[:64], reason=why)
        return False

    def _verify(self, envelope: bytes, message_id: str) -> None:
        assert self._verifier is not None
        t0 = time.perf_counter()
        try:
            result = self._verifier(envelope)
        except (OpenError, InputError):
            result = Verification(message_id, False, "?", "?")
        self.stats.open_seconds.append(time.perf_counter() - t0)
        self.verifications.append(result)
        if result.ok:
            self.stats.verified += 1
        else:
            self.stats.verify_failed += 1
            self._log.error("verification_failed", message_id=message_id)
        write_atomic(
            self.out_dir / f"{message_id}.verified.json", json.dumps(result.__dict__, sort_keys=True).encode(),
            mode=0o644, sync_dir=True,
        )


def _uuid(raw: bytes) -> str:
    return str(uuid.UUID(bytes=raw))


class ReceiverService:
    """A `Receiver` behind an MQTT subscription (persistent session, ack after the envelope is on disk)."""

    def __init__(
        self,
        receiver: Receiver,
        broker: BrokerConfig,
        *,
        topic: str = topics.ALL_ENVELOPES,
        ledger_topic: str | None = topics.ALL_LEDGERS,
        client_id: str = "medshield-receiver",
    ) -> None:
        self.receiver = receiver
        self._queue: queue.Queue[InboundMessage] = queue.Queue(maxsize=256)
        self._stop = threading.Event()
        self.link = MqttLink(
            "receiver",
            broker,
            client_id,
            persistent=True,
            subscriptions=[topic] + ([ledger_topic, topics.checkpoints_of(ledger_topic)] if ledger_topic else []),
            on_message=self._on_message,
            manual_ack=True,
            receive_maximum=256,
        )
        self._thread = threading.Thread(target=self._loop, name="receiver", daemon=True)

    def _on_message(self, message: InboundMessage) -> None:
        self._queue.put(message)

    def _loop(self) -> None:
        # One consumer thread: the receiver needs no lock.
        while not self._stop.is_set():
            try:
                message = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if topics.is_ledger_topic(message.topic):
                self.receiver.handle_ledger(message.topic, message.payload)
            else:
                self.receiver.handle(message.payload)
            self.link.ack(message)

    def start(self) -> ReceiverService:
        self._thread.start()
        self.link.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.link.stop()
