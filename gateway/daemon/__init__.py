"""The gateway daemon: intake → protect → spool → publisher, losing nothing.

    scanner broker ──▶ MqttIntake (paho thread: buffer only) ──▶ worker(s) ──▶ Intake.accept:
                                                  protect ▸ spool commit ▸ then the source acknowledges
    cloud broker ◀── Publisher: rows in order, QoS 1, row deleted on its own PUBACK ◀── spool (SQLite WAL)

Guarantees: an inbound message is acknowledged only after its envelope(s) or its quarantine record are
committed; a redelivery maps to the same (keyed) message id and is not protected twice; a spool row is
deleted only after the cloud broker acknowledged that very publish; a full spool stops intake (nothing is
dropped; the scanner broker keeps the messages). Modules: `app` (the `Gateway`: build, start, stop, run),
`intake` (the one path from an inbound message to a spool commit, and its contract for every source),
`publisher`, `protect` (the real protection step), `ids` (message ids), `metrics`.
"""

from .app import Gateway, serve
from .ids import MessageIds, derived_id
from .intake import Inbound, Intake, MqttIntake, Outcome, ProtectedLike, ProtectFn, Splitter
from .metrics import GatewayMetrics
from .protect import pipeline_protect_fn

__all__ = [
    "Gateway",
    "GatewayMetrics",
    "Inbound",
    "Intake",
    "MessageIds",
    "MqttIntake",
    "Outcome",
    "ProtectFn",
    "ProtectedLike",
    "Splitter",
    "derived_id",
    "pipeline_protect_fn",
    "serve",
]
