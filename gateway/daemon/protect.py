"""The real protection step for the daemon: `gateway.pipeline.protect` once per recipient card.

Everything is loaded when `pipeline_protect_fn` runs (recipient cards, the verified and warmed-up
segmentation model, codec limits, SBBE parameters), so a gateway built on its result reports READY only with
warm models, and a bad card or model stops the start instead of the first message.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

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


class InFlight:
    """How many calls are inside `enter()` at once; each learns whether it entered alone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    @contextmanager
    def enter(self) -> Iterator[bool]:
        """Count this call while inside; yields True when no other call was inside."""
        with self._lock:
            self._count += 1
            alone = self._count == 1
        try:
            yield alone
        finally:
            with self._lock:
                self._count -= 1


class SegmenterPool:
    """Loaded segmenters handed out one per call: `predict` takes a free one, runs it and gives it back, so no
    two calls share an inference session while there are as many segmenters as concurrent callers (the
    daemon's protection workers); with fewer, a caller waits for one to come free.

    With `alone` segmenters as well (sessions with more intra-op threads), a call that finds no other call
    running takes one of those: an image processed alone gets every core, images processed side by side get
    a core each instead of competing for all of them with each other's threads."""

    def __init__(self, segmenters: list[Segmenter], alone: list[Segmenter] | None = None) -> None:
        if not segmenters:
            raise ValueError("a segmenter pool needs at least one segmenter")
        self.segmenters = list(segmenters)
        self.alone = list(alone or [])
        self._free: queue.SimpleQueue[Segmenter] = queue.SimpleQueue()
        self._free_alone: queue.SimpleQueue[Segmenter] = queue.SimpleQueue()
        for segmenter in self.segmenters:
            self._free.put(segmenter)
        for segmenter in self.alone:
            self._free_alone.put(segmenter)
        self._in_flight = InFlight()

    @property
    def backend(self) -> str:
        """The backend actually serving (every segmenter of a pool is made with the same settings)."""
        return self.segmenters[0].backend

    def predict(self, image: object) -> np.ndarray:
        """`Segmenter.predict` on a segmenter no other call is using."""
        with self._in_flight.enter() as by_itself:
            free = self._free_alone if by_itself and self.alone else self._free
            segmenter = free.get()
            try:
                return segmenter.predict(image)  # type: ignore[arg-type]
            finally:
                free.put(segmenter)


def segmenter_pool(config: GatewayConfig) -> SegmenterPool:
    """The daemon's segmenters: one per protection worker (`segmentation.sessions: per-worker`, the default)
    or one shared by all. Each is verified against its manifest and warmed up here; TensorRT engines are
    cached under the state directory.

    Per worker without `segmentation.threads`: each worker's session gets its share of the usable cores
    (`cores // workers`, at least 1), and one more session with the default threads serves an image that
    arrives while no other is being segmented (`SegmenterPool`)."""
    from gateway.inference._ort import default_threads

    seg = config.segmentation
    model_args = (seg.model,) if seg.model is not None else ()

    def make(threads: int | None) -> Segmenter:
        return Segmenter(*model_args, backend=seg.backend, threads=threads, state_dir=config.gateway.state_dir)

    if seg.sessions == "shared":
        return SegmenterPool([make(seg.threads)])
    workers = config.limits.workers
    if seg.threads is not None or workers == 1:
        return SegmenterPool([make(seg.threads) for _ in range(workers)])
    share = max(1, default_threads() // workers)
    alone = [make(None)] if share < default_threads() else []
    return SegmenterPool([make(share) for _ in range(workers)], alone)


def pipeline_protect_fn(config: GatewayConfig, metrics: GatewayMetrics | None = None) -> ProtectFn:
    """A `ProtectFn` sealing one envelope per recipient; the message id given by the intake is the first
    envelope's, each further one gets an id derived from it (ids are unique per envelope). `metrics` gets the
    inference backend actually serving (so a silent GPU→CPU fallback shows)."""
    cards = recipient_cards(config)
    segmenter = segmenter_pool(config)
    if metrics is not None:
        metrics.inference_backend.set(1, requested=config.segmentation.backend, backend=segmenter.backend)
    limits = config.limits.input_limits()
    params = config.protection.sbbe.search_params()
    suite, margin = config.protection.suite, config.protection.stego_margin_px
    # The gateway's device key signs every envelope (the same key signs its ledger: gateway.crypto.origin).
    signer = GatewayKey.load_or_create(config.ledger_key_path, config.gateway.device_id)
    # An image protected alone has its key search and body mask run on a side thread while it is segmented,
    # on the core its segmentation leaves partly idle (pipeline.protect). With other images in protection
    # every core is busy already: the extra thread would only make them share.
    overlap = ThreadPoolExecutor(max_workers=1, thread_name_prefix="protect-overlap")
    in_flight = InFlight()

    def protect(data: bytes, *, message_id: str, source: Mapping[str, str]) -> list[ProtectedLike]:
        with in_flight.enter() as alone:
            return [_protect_one(data, card, i, message_id, source, overlap if alone else None)
                    for i, card in enumerate(cards)]

    def _protect_one(data: bytes, card: RecipientCard, i: int, message_id: str, source: Mapping[str, str],
                     side: Executor | None) -> ProtectedLike:
        return pipeline.protect(
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
            overlap=side,
        )

    return protect
