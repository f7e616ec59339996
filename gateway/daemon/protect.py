"""The real protection step for the daemon: `gateway.pipeline.protect` once per recipient card.

Everything is loaded when `pipeline_protect_fn` runs (recipient cards, the verified and warmed-up
segmentation model, codec limits, SBBE parameters), so a gateway built on its result reports READY only with
warm models, and a bad card or model stops the start instead of the first message.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway import pipeline
from gateway.config import GatewayConfig
from gateway.crypto.origin import GatewayKey
from gateway.crypto.recipients import RecipientCard
from gateway.errors import ConfigError
from gateway.recipients_store import installed_cards
from gateway.segment import Segmenter

from .ids import derived_id
from .intake import ProtectedLike, ProtectFn
from .metrics import GatewayMetrics


def recipient_cards(config: GatewayConfig) -> list[RecipientCard]:
    """The cards named in the configuration, then those an administrator installed with `medshield
    recipients add` into the state directory; each key once."""
    cards: list[RecipientCard] = []
    for card in [RecipientCard.load(path) for path in config.protection.recipients] + installed_cards(
        config.gateway.state_dir
    ):
        if all(card.key_id != known.key_id for known in cards):
            cards.append(card)
    if not cards:
        raise ConfigError(
            "protection.recipients: at least one recipient card is needed (in the configuration, or installed"
            " with `medshield recipients add`)"
        )
    return cards


def pipeline_protect_fn(config: GatewayConfig, metrics: GatewayMetrics | None = None) -> ProtectFn:
    """A `ProtectFn` sealing one envelope per recipient; the message id given by the intake is the first
    envelope's, each further one gets an id derived from it (ids are unique per envelope). `metrics` gets the
    inference backend actually serving (so a silent GPU→CPU fallback shows)."""
    cards = recipient_cards(config)
    seg = config.segmentation
    model_args = (seg.model,) if seg.model is not None else ()
    # Loading verifies the model against its manifest and warms the runner up; TensorRT engines are cached
    # under the state directory.
    segmenter = Segmenter(*model_args, backend=seg.backend, threads=seg.threads, state_dir=config.gateway.state_dir)
    if metrics is not None:
        metrics.inference_backend.set(1, requested=seg.backend, backend=segmenter.backend)
    limits = config.limits.input_limits()
    params = config.protection.sbbe.search_params()
    suite, margin = config.protection.suite, config.protection.stego_margin_px
    # The gateway's device key signs every envelope (the same key signs its ledger: gateway.crypto.origin).
    signer = GatewayKey.load_or_create(config.ledger_key_path, config.gateway.device_id)

    def protect(data: bytes, *, message_id: str, source: Mapping[str, str]) -> list[ProtectedLike]:
        return [
            pipeline.protect(
                data,
                card,
                signer=signer,
                suite=suite,
                segmenter=segmenter.predict,
                limits=limits,
                sbbe_params=params,
                margin_px=margin,
                carrier_rule=config.protection.stego_carriers,
                source=source,
                message_id=message_id if i == 0 else derived_id(message_id, card.key_id),
            )
            for i, card in enumerate(cards)
        ]

    return protect
