"""The gateway's state directory: what lives where under `gateway.state_dir` (default /var/lib/medshield).

    spool.sqlite3          the spool: messages, their envelopes and the ledger (unless `spool.path` moves it)
    quarantine/            inputs that could not be protected, `<id>.bin` + `<id>.json`
    ledger.key, ledger.pub the device key (unless `ledger.key_file` moves it) and its public half
    <device>.gateway-card  the gateway card a recipient pins
    message-id.key         the secret that keys message ids
    recipients/            the recipient cards the gateway seals to (`medshield recipients add`)
    admin-otp.secret       the admin OTP secret that `recipients add` checks
    admin-otp.state        its last accepted step and lock-out
    broker/                the embedded mosquitto's persistence
    engines/               TensorRT engines built for this GPU (native runner)
    ort-trt-cache/         ONNX Runtime's TensorRT engine cache (TensorRT execution provider)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE_DIR = Path("/var/lib/medshield")
ADMIN_SECRET = "admin-otp.secret"
ADMIN_STATE = "admin-otp.state"


@dataclass(frozen=True)
class StateLayout:
    """The paths under one state directory (no I/O: nothing is created or checked here)."""

    root: Path

    @property
    def spool(self) -> Path:
        return self.root / "spool.sqlite3"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def ledger_key(self) -> Path:
        return self.root / "ledger.key"

    @property
    def ledger_public_key(self) -> Path:
        """Written beside the device key (`GatewayKey.save`), so it follows `ledger.key_file` too."""
        return self.ledger_key.with_suffix(".pub")

    def gateway_card(self, device_id: str) -> Path:
        from gateway.crypto.origin import CARD_SUFFIX  # the card format's own suffix; cryptography loads late

        return self.root / f"{device_id}{CARD_SUFFIX}"

    @property
    def message_key(self) -> Path:
        return self.root / "message-id.key"

    @property
    def recipients(self) -> Path:
        return self.root / "recipients"

    @property
    def admin_otp_secret(self) -> Path:
        return self.root / ADMIN_SECRET

    @property
    def admin_otp_state(self) -> Path:
        return self.root / ADMIN_STATE

    @property
    def broker(self) -> Path:
        return self.root / "broker"

    @property
    def engines(self) -> Path:
        return self.root / "engines"

    @property
    def ort_trt_cache(self) -> Path:
        return self.root / "ort-trt-cache"
