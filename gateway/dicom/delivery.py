"""Cloud side into a PACS: what the receiver opens goes to one or more PACS destinations, by C-STORE or by
DICOMweb STOW-RS, each behind its own durable retry queue.

    receiver: envelope stored ▸ Delivery.offer: open (recipient key) ▸ pick restored original or marked image
              ▸ one row per destination in the queue (SQLite WAL, synchronous=FULL)
    per destination: a sender thread takes its oldest row, sends it, deletes it only on the PACS's success

Nothing is lost while a PACS is down: a row stays until that PACS answered success (C-STORE 0x0000 or a
warning 0xB000-0xBFFF; STOW-RS 200 with no failed instance). Failures back off exponentially (capped); a row
refused `max_attempts` times for a reason a retry cannot fix is kept, marked `held`, and reported, never
dropped; held rows are tried again at the next start (once an administrator fixed what was refused). The
queue also remembers which envelopes it has taken, so a receiver that died between storing an envelope and
queueing it catches up at the next start (`catch_up`).

Destinations (TOML, `medshield receive --pacs FILE`):

    [[destination]]
    name = "orthanc"
    kind = "cstore"            # or "stow"
    what = "original"          # or "marked"
    host = "10.0.0.5"          # cstore
    port = 4242
    called_ae_title = "ORTHANC"
    calling_ae_title = "MEDSHIELD-RX"
    # url = "https://pacs/dicom-web"   # stow: the service root; instances go to <url>/studies
    # token_file = "/etc/medshield/pacs.token"   # stow: sent as a bearer token
    # ca_file = "/etc/medshield/pacs-ca.crt"      # stow over https / cstore over TLS
"""

from __future__ import annotations

import io
import json
import sqlite3
import ssl
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.errors import ConfigError
from gateway.logging import get_logger

WHAT = Literal["original", "marked"]
_RETRY_MIN_S = 1.0
_RETRY_MAX_S = 60.0


class Destination(BaseModel):
    """One PACS: C-STORE (host, port, AE titles) or STOW-RS (service root URL)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    kind: Literal["cstore", "stow"]
    what: WHAT = "original"
    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    called_ae_title: Annotated[str, Field(min_length=1, max_length=16)] = "ANY-SCP"
    calling_ae_title: Annotated[str, Field(min_length=1, max_length=16)] = "MEDSHIELD-RX"
    url: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    timeout_s: Annotated[float, Field(gt=0)] = 30.0
    max_attempts: Annotated[int, Field(ge=1)] = 1000

    @model_validator(mode="after")
    def _complete(self) -> Destination:
        if self.kind == "cstore" and (self.host is None or self.port is None):
            raise ValueError(f"destination {self.name}: cstore needs host and port")
        if self.kind == "stow" and not (self.url or "").startswith(("http://", "https://")):
            raise ValueError(f"destination {self.name}: stow needs an http(s) url")
        return self


def load_destinations(path: Path) -> list[Destination]:
    """The `[[destination]]` tables of a TOML file; a clear ConfigError naming the problem otherwise."""
    try:
        data = tomllib.loads(path.read_text())
        destinations = [Destination(**item) for item in data.get("destination", [])]
    except (OSError, tomllib.TOMLDecodeError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not destinations:
        raise ConfigError(f"{path}: no [[destination]]")
    if len({d.name for d in destinations}) != len(destinations):
        raise ConfigError(f"{path}: destination names must be unique")
    return destinations


class DeliveryError(Exception):
    """A send did not succeed. `permanent`: the PACS refused the data set itself (a retry cannot help)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


Sender = Callable[[Destination, bytes], None]


def send_cstore(destination: Destination, data: bytes) -> None:
    """C-STORE one Part 10 file, its data set bytes sent as they are (no decoding and re-encoding)."""
    import pydicom
    from pynetdicom import AE, _config

    # Stream the file's data set as stored rather than re-encoding it, so the PACS gets the same bytes.
    _config.STORE_SEND_CHUNKED_DATASET = True
    meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    sop_class = meta.file_meta.MediaStorageSOPClassUID
    syntax = meta.file_meta.TransferSyntaxUID
    ae = AE(ae_title=destination.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = destination.timeout_s
    ae.add_requested_context(sop_class, [syntax])
    context = None
    if destination.ca_file is not None:
        # The PACS's certificate must name the configured host, as for any TLS client.
        context = (ssl.create_default_context(cafile=str(destination.ca_file)), destination.host or "")
    host, port = destination.host, destination.port
    if host is None or port is None:  # Destination's validator requires both for "cstore"
        raise ConfigError(f"destination {destination.name}: cstore needs host and port")
    assoc = ae.associate(host, port, ae_title=destination.called_ae_title, tls_args=context)
    if not assoc.is_established:
        raise DeliveryError("association not established")
    try:
        with tempfile.NamedTemporaryFile(suffix=".dcm") as tmp:
            tmp.write(data)
            tmp.flush()
            answer = assoc.send_c_store(Path(tmp.name))
    except ValueError as exc:  # no accepted presentation context for this SOP class / syntax
        raise DeliveryError(f"not accepted: {exc}", permanent=True) from None
    finally:
        if assoc.is_established:
            assoc.release()
    status = int(getattr(answer, "Status", -1)) if answer else -1
    if status == 0 or 0xB000 <= status <= 0xBFFF:
        return
    if status == -1:
        raise DeliveryError("no C-STORE response")
    permanent = 0xA900 <= status <= 0xA9FF or 0xC000 <= status <= 0xCFFF or status in (0x0117, 0x0122, 0x0124)
    raise DeliveryError(f"C-STORE status 0x{status:04X}", permanent=permanent)


def send_stow(destination: Destination, data: bytes) -> None:
    """STOW-RS one Part 10 file to `<url>/studies` (multipart/related; type="application/dicom")."""
    boundary = f"medshield-{uuid.uuid4().hex}"
    body = b"".join(
        (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), data, f"\r\n--{boundary}--\r\n".encode())
    )
    assert destination.url is not None
    request = urllib.request.Request(
        destination.url.rstrip("/") + "/studies",
        data=body,
        method="POST",
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        },
    )
    if destination.token_file is not None:
        request.add_header("Authorization", f"Bearer {destination.token_file.read_text().strip()}")
    context = ssl.create_default_context(cafile=str(destination.ca_file)) if destination.ca_file else None
    try:
        with urllib.request.urlopen(request, timeout=destination.timeout_s, context=context) as response:
            reply = response.read()
    except urllib.error.HTTPError as exc:
        # 409: the PACS refused the instance itself; other 4xx will not change on a retry, except 408/429 (try
        # later) and 401/403: a token the PACS does not take is the destination's setting, not the image's,
        # so its rows wait (with back-off) for the setting to be fixed instead of being held for good.
        permanent = exc.code == 409 or (400 <= exc.code < 500 and exc.code not in (401, 403, 408, 429))
        raise DeliveryError(f"STOW-RS HTTP {exc.code}", permanent=permanent) from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"STOW-RS unreachable ({type(exc).__name__})") from None
    try:
        failed = (json.loads(reply or b"{}").get("00081198") or {}).get("Value")  # Failed SOP Sequence
    except (ValueError, AttributeError):
        failed = None
    if failed:
        raise DeliveryError("STOW-RS: the instance failed", permanent=True)


SENDERS: dict[str, Sender] = {"cstore": send_cstore, "stow": send_stow}


@dataclass(frozen=True)
class QueuedItem:
    seq: int
    destination: str
    message_id: str
    payload: bytes
    attempts: int


class DeliveryQueue:
    """The durable per-destination queue (SQLite, WAL, synchronous=FULL); thread-safe."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, destination TEXT NOT NULL,"
                " message_id TEXT NOT NULL, payload BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
                " next_try REAL NOT NULL DEFAULT 0, held INTEGER NOT NULL DEFAULT 0, last_error TEXT,"
                " UNIQUE(destination, message_id))"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS taken (message_id TEXT PRIMARY KEY)")
        path.chmod(0o600)

    def taken(self, message_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM taken WHERE message_id=?", (message_id,)).fetchone() is not None

    def put(self, message_id: str, items: Sequence[tuple[str, bytes]]) -> None:
        """Queue one envelope's deliveries (destination, payload) and mark it taken, in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for destination, payload in items:
                    self._db.execute(
                        "INSERT OR IGNORE INTO queue (destination, message_id, payload) VALUES (?, ?, ?)",
                        (destination, message_id, payload),
                    )
                self._db.execute("INSERT OR IGNORE INTO taken (message_id) VALUES (?)", (message_id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def next(self, destination: str, now: float) -> QueuedItem | None:
        with self._lock:
            row = self._db.execute(
                "SELECT seq, destination, message_id, payload, attempts FROM queue WHERE destination=? AND held=0"
                " AND next_try<=? ORDER BY seq LIMIT 1",
                (destination, now),
            ).fetchone()
        return QueuedItem(*row) if row else None

    def done(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM queue WHERE seq=?", (seq,))

    def failed(self, seq: int, error: str, next_try: float, hold: bool) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE queue SET attempts=attempts+1, next_try=?, last_error=?, held=? WHERE seq=?",
                (next_try, error[:200], 1 if hold else 0, seq),
            )

    def release_held(self) -> int:
        """Make every held row due again with a fresh attempt count; returns how many there were."""
        with self._lock:
            cursor = self._db.execute("UPDATE queue SET held=0, attempts=0, next_try=0 WHERE held=1")
            return int(cursor.rowcount)

    def depth(self, destination: str | None = None, *, held: bool | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM queue WHERE 1=1", list[str | int]()
        if destination is not None:
            sql += " AND destination=?"
            args.append(destination)
        if held is not None:
            sql += " AND held=?"
            args.append(1 if held else 0)
        with self._lock:
            return int(self._db.execute(sql, args).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


Opener = Callable[[bytes], tuple[dict[str, Any], bytes, bytes | None]]
"""Opens an envelope: (what the image is: the container's `content`, e.g. its `format`; marked image file;
restored original file or None)."""


def key_opener(private_key: Any, restore: bool, gateways: Any) -> Opener:
    """Open with a raw-key (service) recipient through `pipeline.open_`, against the pinned gateway cards."""
    from gateway import pipeline

    def open_envelope(envelope: bytes) -> tuple[dict[str, Any], bytes, bytes | None]:
        opened = pipeline.open_(envelope, private_key, gateways=gateways, restore_original=restore)
        return dict(opened.content), opened.marked, opened.original

    return open_envelope


class Delivery:
    """Offers opened DICOM images to every destination and runs one sender thread per destination."""

    def __init__(
        self,
        destinations: Sequence[Destination],
        queue_path: Path,
        opener: Opener,
        *,
        senders: dict[str, Sender] | None = None,
    ) -> None:
        self.destinations = list(destinations)
        self.queue = DeliveryQueue(queue_path)
        self._open = opener
        self._senders = senders or SENDERS
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(d,), name=f"deliver-{d.name}", daemon=True) for d in destinations
        ]
        self._log = get_logger("delivery")
        self.delivered: dict[str, int] = {d.name: 0 for d in destinations}

    def offer(self, message_id: str, envelope: bytes) -> None:
        """Queue the envelope's image for every destination (once; DICOM only). Raises if it does not open."""
        if self.queue.taken(message_id):
            return
        content, marked, original = self._open(envelope)
        items: list[tuple[str, bytes]] = []
        if content.get("format") == "dicom":
            for d in self.destinations:
                payload = original if d.what == "original" else marked
                if payload is None:
                    raise ValueError("the opener did not restore the original")
                items.append((d.name, payload))
        self.queue.put(message_id, items)
        self._wake.set()

    def catch_up(self, out_dir: Path) -> int:
        """Offer every stored envelope the queue has not taken (a receiver that died in between); returns how many."""
        count = 0
        for path in sorted(out_dir.glob("*.msh")):
            if not self.queue.taken(path.stem):
                try:
                    self.offer(path.stem, path.read_bytes())
                    count += 1
                except Exception as exc:  # noqa: BLE001 - one bad envelope must not stop the others
                    self._log.error("catch_up_failed", message_id=path.stem, error=type(exc).__name__)
        return count

    def start(self) -> Delivery:
        released = self.queue.release_held()
        if released:
            self._log.warning("held_released", rows=released)
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self.queue.close()

    def _run(self, destination: Destination) -> None:
        send = self._senders[destination.kind]
        while not self._stop.is_set():
            item = self.queue.next(destination.name, time.time())
            if item is None:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                send(destination, item.payload)
            except Exception as exc:  # noqa: BLE001 - every failure keeps the row; only the backoff differs
                permanent = isinstance(exc, DeliveryError) and exc.permanent
                attempts = item.attempts + 1
                hold = (permanent and attempts >= min(3, destination.max_attempts)
                        or attempts >= destination.max_attempts)
                delay = min(_RETRY_MAX_S, _RETRY_MIN_S * 2 ** min(attempts - 1, 10))
                self.queue.failed(item.seq, str(exc), time.time() + delay, hold)
                self._log.warning(
                    "delivery_failed", destination=destination.name, message_id=item.message_id, attempts=attempts,
                    error=str(exc) if isinstance(exc, DeliveryError) else type(exc).__name__, held=hold,
                )
                self._stop.wait(min(delay, 1.0))
                continue
            self.queue.done(item.seq)
            self.delivered[destination.name] += 1
            self._log.info("delivered", destination=destination.name, message_id=item.message_id)
