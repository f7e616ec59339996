"""The MQTT topic namespace: every topic the gateway, the scanner simulator and the receiver use.

Scanners publish on `medshield/scanners/<scanner>/images` (a DICOM modality's images are routed as
`dicom/scanners/<calling AE title>/images`). A gateway publishes under
`medshield/gateways/<device>/`: `envelopes` (the default cloud topic), `status` (retained online/offline),
`errors` (quarantine events), `ledger` and `ledger/checkpoints`. A receiver subscribes with `+` in place of
the device.
"""

from __future__ import annotations

ROOT = "medshield"
_SCANNERS = "scanners"

ENVELOPES = "envelopes"
STATUS = "status"
ERRORS = "errors"
LEDGER = "ledger"
CHECKPOINTS = "checkpoints"


def scanner_images(scanner: str) -> str:
    """Where scanner `scanner` publishes its images (`+` gives the gateway's subscription filter)."""
    return f"{ROOT}/{_SCANNERS}/{scanner}/images"


def dicom_images(calling_ae_title: str) -> str:
    """The routing key of images a DICOM modality sends by C-STORE (never an MQTT topic: it names the source
    in message ids, quarantine records and `scanner_of` the way a scanner topic does)."""
    return f"dicom/{_SCANNERS}/{calling_ae_title}/images"


def gateway_topic(device_id: str, leaf: str) -> str:
    """`medshield/gateways/<device_id>/<leaf>` (`+` as the device gives a receiver's filter)."""
    return f"{ROOT}/gateways/{device_id}/{leaf}"


def checkpoints_of(ledger_topic: str) -> str:
    """The topic of the signed checkpoints that go with a ledger topic."""
    return f"{ledger_topic}/{CHECKPOINTS}"


SCANNER_IMAGES = scanner_images("+")
"""The gateway's default inbound subscription."""
CLOUD_TEMPLATE = gateway_topic("{device_id}", ENVELOPES)
"""The default cloud topic, formatted with the gateway's device id (`topics.cloud` in the configuration)."""
ALL_ENVELOPES = gateway_topic("+", ENVELOPES)
"""A receiver's default subscription: every gateway's envelopes."""
ALL_LEDGERS = gateway_topic("+", LEDGER)
"""A receiver's ledger subscription (checkpoints: `checkpoints_of(ALL_LEDGERS)`)."""


def is_ledger_topic(topic: str) -> bool:
    """Whether `topic` carries ledger entries or checkpoints rather than envelopes."""
    return topic.endswith((f"/{LEDGER}", f"/{LEDGER}/{CHECKPOINTS}"))


def scanner_of(topic: str) -> str:
    """The scanner id in `medshield/scanners/<id>/images`-shaped topics (the level after 'scanners'), else the
    level before the last ("" for a one-level topic)."""
    parts = topic.split("/")
    if _SCANNERS in parts[:-1]:
        return parts[parts.index(_SCANNERS) + 1]
    return parts[-2] if len(parts) >= 2 else ""
