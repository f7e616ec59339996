"""Quarantine: inputs that cannot be protected are kept, with a reason, for an operator to inspect.

Files live in `<state_dir>/quarantine/` (0700 directory, 0600 files) because they may hold patient data; the
error *event* published to the cloud carries only the message id, topic, reason code and size.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway.files import write_atomic
from gateway.reasons import Reason


@dataclass(frozen=True)
class QuarantineRecord:
    message_id: str
    topic: str
    reason: str
    detail: str
    received_ns: int
    size: int
    sha256: str
    device_id: str

    def event(self) -> bytes:
        """The error event for `medshield/gateways/<device>/errors`: no payload bytes, no detail text."""
        return json.dumps(
            {
                "type": "quarantined",
                "device_id": self.device_id,
                "message_id": self.message_id,
                "topic": self.topic,
                "reason": self.reason,
                "size": self.size,
                "time_ns": self.received_ns,
            },
            sort_keys=True,
        ).encode()


class Quarantine:
    """Writes `<id>.bin` (the input as received) and `<id>.json` (the reason) durably."""

    def __init__(self, directory: Path, device_id: str) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        self.device_id = device_id

    def put(
        self, message_id: str, topic: str, payload: bytes, reason: Reason, detail: str, received_ns: int
    ) -> QuarantineRecord:
        record = QuarantineRecord(
            message_id=message_id,
            topic=topic,
            reason=reason,
            detail=detail,
            received_ns=received_ns,
            size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            device_id=self.device_id,
        )
        write_atomic(self.directory / f"{message_id}.bin", payload)
        write_atomic(  # the record last, then the directory: both files are durable once this returns
            self.directory / f"{message_id}.json", json.dumps(asdict(record), sort_keys=True, indent=2).encode(),
            sync_dir=True,
        )
        return record

    def get(self, message_id: str) -> QuarantineRecord:
        """The record of one quarantined message (KeyError when there is none)."""
        path = self._path(message_id, ".json")
        if not path.is_file():
            raise KeyError(message_id)
        return QuarantineRecord(**json.loads(path.read_text()))

    def payload(self, message_id: str) -> bytes:
        """The input exactly as received."""
        return self._path(message_id, ".bin").read_bytes()

    def remove(self, message_id: str) -> None:
        """Forget a message once it was released back into the spool (the record goes last)."""
        self._path(message_id, ".bin").unlink(missing_ok=True)
        self._path(message_id, ".json").unlink(missing_ok=True)

    def _path(self, message_id: str, suffix: str) -> Path:
        if not message_id or "/" in message_id or message_id.startswith("."):
            raise KeyError(message_id)
        return self.directory / f"{message_id}{suffix}"

    def records(self) -> list[QuarantineRecord]:
        """Every quarantine record, oldest first."""
        out = []
        for path in sorted(self.directory.glob("*.json")):
            out.append(QuarantineRecord(**json.loads(path.read_text())))
        return sorted(out, key=lambda r: r.received_ns)
