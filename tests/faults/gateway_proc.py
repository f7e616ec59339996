"""The gateway process of the fault suite: `python -m tests.faults.gateway_proc CONFIG`.

It is `medshield run` (`gateway.daemon.serve`) with real cryptography: `gateway.pipeline.protect` for the
configured recipient card, suite aes-256-siv, with a fixed lesion square standing in for DS-Net and the
paper's carrier rule (every non-lesion pixel), since the synthetic images have no air around a body; neither
is what these faults test. The envelopes are real: the receiver opens every one.

Fault hooks (environment, the test process only; nothing in `gateway/` knows about them):
- `MEDSHIELD_FAULT_KILL_AT=STEP:N` SIGKILLs the process at the N-th pass through STEP: `intake` (a message
  taken, nothing done), `protect` (half-way through protecting), `commit` (committed, not yet acknowledged),
  `publish` (a row published, its PUBACK not yet in), `delete` (a row acknowledged, not yet deleted).
- `MEDSHIELD_FAULT_PROTECT_DELAY_S` slows each protection down.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gateway import codecs, pipeline
from gateway.config import GatewayConfig, load_config
from gateway.crypto.origin import GatewayKey
from gateway.crypto.recipients import RecipientCard
from gateway.daemon import ProtectFn, serve
from gateway.daemon.intake import Intake
from gateway.daemon.metrics import GatewayMetrics
from gateway.logging import configure_logging
from gateway.mqtt_link import MqttLink
from gateway.spool import Spool

STEPS = ("intake", "protect", "commit", "publish", "delete")


def lesion_square(image: codecs.DecodedImage) -> np.ndarray:
    mask = np.zeros(image.pixels.shape, dtype=bool)
    h, w = mask.shape
    mask[h // 2 - 4 : h // 2 + 4, w // 2 - 4 : w // 2 + 4] = True
    return mask


class Killer:
    def __init__(self, spec: str | None) -> None:
        step, _, n = (spec or "").partition(":")
        self.step = step
        self.at = int(n) if n else 0
        self.seen = 0

    def passing(self, step: str) -> None:
        if step != self.step:
            return
        self.seen += 1
        if self.seen == self.at:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)


def install_hooks(killer: Killer) -> None:
    accept, commit, delete, publish = Intake.accept, Spool.commit, Spool.delete, MqttLink.publish

    def accept_hook(self: Intake, message: Any, **kwargs: Any) -> Any:
        killer.passing("intake")
        return accept(self, message, **kwargs)

    def commit_hook(self: Spool, *args: Any, **kwargs: Any) -> bool:
        done = commit(self, *args, **kwargs)
        killer.passing("commit")
        return done

    def delete_hook(self: Spool, seqs: Any) -> None:
        killer.passing("delete")
        delete(self, seqs)

    def publish_hook(self: MqttLink, topic: str, payload: bytes, **kwargs: Any) -> bool:
        queued = publish(self, topic, payload, **kwargs)
        if "/envelopes" in topic:
            killer.passing("publish")
        return queued

    Intake.accept = accept_hook  # type: ignore[method-assign]
    Spool.commit = commit_hook  # type: ignore[method-assign]
    Spool.delete = delete_hook  # type: ignore[method-assign]
    MqttLink.publish = publish_hook  # type: ignore[method-assign]


def real_protect(config: GatewayConfig, killer: Killer, delay_s: float) -> Callable[[GatewayMetrics], ProtectFn]:
    def make(_metrics: GatewayMetrics) -> ProtectFn:
        card = RecipientCard.load(config.protection.recipients[0])
        signer = GatewayKey.load_or_create(config.ledger_key_path, config.gateway.device_id)
        limits = config.limits.input_limits()

        def protect(data: bytes, *, message_id: str, source: Mapping[str, str]) -> list[pipeline.Protected]:
            if delay_s:
                time.sleep(delay_s / 2)
            killer.passing("protect")
            if delay_s:
                time.sleep(delay_s / 2)
            return [
                pipeline.protect(
                    data,
                    card,
                    signer=signer,
                    suite="aes-256-siv",
                    segmenter=lesion_square,
                    carrier_rule="non-lesion",
                    limits=limits,
                    message_id=message_id,
                    source=source,
                )
            ]

        return protect  # type: ignore[return-value]

    return make


if __name__ == "__main__":
    configure_logging("info")
    cfg = load_config(sys.argv[1])
    kill = Killer(os.environ.get("MEDSHIELD_FAULT_KILL_AT"))
    install_hooks(kill)
    sys.exit(serve(cfg, real_protect(cfg, kill, float(os.environ.get("MEDSHIELD_FAULT_PROTECT_DELAY_S", "0")))))
