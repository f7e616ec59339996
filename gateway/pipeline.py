"""The protection pipeline: `protect()` turns one image into a sealed envelope, `open_()` turns it back.

Stages (each a pure function elsewhere; this module only composes them and times them):

    decode ▸ keys ▸ segment ▸ hide (stamp + lesion mask into carrier LSBs) ▸ pack (encode + compress) ▸ seal
    (encrypt ▸ sign)

The SBBE key search, the carrier rule's body mask, the pixel digest and the marked file's metadata (a DICOM
derived object is written ahead, its pixels spliced in after hiding) need no lesion mask: they run beside
the segmenter when the caller gives an executor (`overlap`), on the core that an image segmented alone
leaves partly idle, and after it otherwise; the envelope is the same.

Per-message keys for the hiding stage (pixel order, timestamp MAC) come from the envelope's message secret, so
only the recipient can locate or verify the hidden payload, and nothing the gateway keeps can recompute them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from gateway import codecs, container, stego
from gateway.crypto.envelope import OpenedEnvelope, Origin, Sealer, open_envelope
from gateway.crypto.origin import GatewayKey, TrustedGateways
from gateway.crypto.recipients import PrivateKey, RecipientCard
from gateway.crypto.sbbe import SearchParams
from gateway.errors import CapacityError, InputError, OpenError
from gateway.reasons import Reason
from gateway.rng import Clock, RandomSource, system_clock, system_random
from gateway.stego.carriers import CARRIER_RULE_MEANING, DEFAULT_CARRIER_RULE, rule_exclusion, with_lesion
from gateway.stego.payload import HiddenPayload, make_stamp, pixel_sha256, verify_stamp

DEFAULT_SUITE = "sbbe-blowfish"
DEFAULT_MARGIN_PX = 3


def _hu_estimate(image: codecs.DecodedImage) -> np.ndarray:
    """The image in Hounsfield units: the decoder's for CT, else the segmenter's reading of the pixels."""
    if image.hu is not None:
        return image.hu
    from gateway.segment import HU_WINDOW, UINT16_INTERCEPT, pixels_to_hu

    return pixels_to_hu(image.pixels, image.signed, HU_WINDOW, UINT16_INTERCEPT)
ORDER_LABEL = "stego/order"
STAMP_LABEL = "stego/stamp"

T = TypeVar("T")

MaskFn = Callable[[codecs.DecodedImage], np.ndarray]
"""Anything that maps a decoded image to a boolean lesion mask of the same shape."""


@dataclass(frozen=True)
class Protected:
    """The result of `protect`."""

    envelope: bytes
    message_id: str
    lesion_pixels: int
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class OpenedImage:
    """The result of `open_`: the verified origin, the marked image (input format) with what the container
    says about it (`content`, `source`), its hidden payload and, if asked, the original."""

    header: Mapping[str, Any]
    origin: Origin
    content: Mapping[str, Any]
    source: Mapping[str, Any]
    marked: bytes
    hidden: HiddenPayload
    original: bytes | None
    derive: Callable[..., bytes] = field(repr=False)
    """The message's subkeys by label, as `Sealer.derive` gave them to the sealer."""


def protect(
    data: bytes,
    card: RecipientCard,
    *,
    signer: GatewayKey,
    suite: str = DEFAULT_SUITE,
    mask: np.ndarray | None = None,
    segmenter: MaskFn | None = None,
    message_id: str | None = None,
    source: Mapping[str, Any] | None = None,
    sbbe_params: SearchParams = SearchParams(),
    margin_px: int = DEFAULT_MARGIN_PX,
    carrier_rule: str = DEFAULT_CARRIER_RULE,
    compression: container.Compression = container.DEFAULT_COMPRESSION,
    limits: codecs.Limits = codecs.DEFAULT_LIMITS,
    rng: RandomSource = system_random,
    clock: Clock = system_clock,
    overlap: Executor | None = None,
) -> Protected:
    """Protect one image (DICOM, PNG or NPY bytes) for one recipient, signed by the gateway's `signer`.

    The lesion mask comes from `mask` if given, else from `segmenter`. Carrier pixels follow `carrier_rule`
    (`gateway.stego.carriers`: by default only the air outside the body, so a lesion the segmenter missed is
    never written to; `non-lesion` is the paper's rule). `source` (topic, scanner, file name) travels inside
    the ciphertext, never in the clear header. Raises `InputError` (with a reason code) for input that cannot
    be protected and `CapacityError` when the payload does not fit the carriers; nothing is written anywhere.

    `overlap`: an executor on which the work that needs no lesion mask (the key search, the carrier rule's
    body mask, the pixel digest, the marked file but for its pixels) runs while the image is segmented;
    without one it runs in the caller's thread once the mask is there. The envelope is the same either way.
    """
    timings: dict[str, float] = {}
    tick = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        timings[stage] = now - tick
        tick = now

    image = codecs.decode(data, limits)
    lap("decode")

    if mask is None and segmenter is None:
        raise ValueError("protect needs a lesion mask or a segmenter")
    message_id = message_id or str(uuid.UUID(bytes=rng(16), version=4))
    sealer = Sealer(card, signer, suite, message_id, rng=rng, clock=clock, params=sbbe_params)
    lap("keys")
    # What does not need the lesion mask runs beside the segmenter on `overlap` (without one, after it): the
    # key search scores on the image's own central crop, and the carrier rule's body and air masks read only
    # the pixels.
    early = _start(overlap, _before_mask, sealer, image, carrier_rule, message_id)

    if mask is None:
        assert segmenter is not None
        mask = _segment(segmenter, image)
    lesion = np.asarray(mask).astype(bool)
    if lesion.shape != image.pixels.shape:
        raise InputError(
            Reason.MASK_SHAPE, f"lesion mask shape {lesion.shape} differs from image shape {image.pixels.shape}"
        )
    lap("segment")

    prepared = early()
    if overlap is None:
        # Run just now in this thread: its parts are added to the stages they belong to below, not to this lap.
        tick = time.perf_counter()
    timestamp_ns = clock()
    stamp = make_stamp(sealer.derive(STAMP_LABEL), timestamp_ns, prepared.pixel_digest, message_id)
    payload = HiddenPayload(
        message_id=message_id,
        timestamp_ns=timestamp_ns,
        stamp=stamp,
        lesion_mask=lesion,
        source_ref=image.source_ref,
    )
    exclusion = with_lesion(prepared.fixed_exclusion, lesion, margin_px)
    try:
        marked, record = stego.embed(image.pixels, exclusion, payload.to_bytes(), sealer.derive(ORDER_LABEL))
    except CapacityError as exc:
        raise CapacityError(f"{exc} (carrier rule {carrier_rule!r}: {CARRIER_RULE_MEANING[carrier_rule]})") from None
    lap("hide")
    if overlap is None:
        timings["hide"] += prepared.hide_s

    marked_bytes = prepared.write_marked(marked)
    meta = {
        "content": {
            "format": image.format,
            "dtype": str(image.pixels.dtype),
            "signed": image.signed,
            "shape": list(image.pixels.shape),
        },
        "source": dict(source or {}),
    }
    box = container.Container(marked=marked_bytes, record=record.to_bytes(), meta=meta, recipe=image.recipe or b"")
    plaintext = container.pack(box, compression)
    lap("pack")
    if overlap is None:
        timings["pack"] += prepared.pack_s

    sealed = sealer.seal(plaintext, compression=compression)
    lap("seal")
    # The sealer's own account of sealing (search, encrypt, sign), the search included though it ran beside
    # the segmenter: the other stages' laps add up to the wall time, `seal` is the work (Sealer.seal).
    timings["seal"] = sealed.timings["seal"]
    for part in ("search", "search_cpu", "encrypt", "sign"):
        if part in sealed.timings:
            timings[f"seal.{part}"] = sealed.timings[part]
    return Protected(
        envelope=sealed.envelope, message_id=message_id, lesion_pixels=int(lesion.sum()), timings=timings
    )


def open_(
    envelope: bytes,
    private_key: PrivateKey,
    *,
    gateways: TrustedGateways,
    accept_unknown_origin: bool = False,
    restore_original: bool = False,
    limits: codecs.Limits = codecs.DEFAULT_LIMITS,
) -> OpenedImage:
    """Open an envelope: verify its origin against the pinned `gateways`, authenticate and decrypt, extract
    and verify the hidden payload, optionally restore.

    What opening may cost is bounded by `limits` (the same limits protection runs under), never by anything
    the envelope declares. Every failure, whatever its cause, raises the one `OpenError`.
    """
    opened = open_envelope(envelope, private_key, gateways=gateways, accept_unknown_origin=accept_unknown_origin)
    try:
        return _unpack_opened(opened, restore_original, limits)
    except Exception:
        # An authenticated envelope that does not unpack can only come from a faulty or hostile sealer; the
        # caller learns the same thing as for any other failure. Raised outside the handler so that no cause
        # or context (which would name the failing step) travels with the error.
        pass
    raise OpenError()


def _unpack_opened(opened: OpenedEnvelope, restore_original: bool, limits: codecs.Limits) -> OpenedImage:
    """The steps of `open_` after authentication; any exception means the envelope does not open."""
    header = opened.header
    box = container.unpack(opened.plaintext, header["compression"], max_bytes=container_limit(limits))
    image = codecs.decode(box.marked, limits)
    order_key = opened.derive(ORDER_LABEL)
    record = stego.RestorationRecord.from_bytes(box.record)
    hidden = HiddenPayload.from_bytes(stego.extract(image.pixels, record.exclusion, order_key))
    original_pixels = stego.restore(image.pixels, record, order_key)
    stamp_ok = verify_stamp(
        opened.derive(STAMP_LABEL), hidden.timestamp_ns, pixel_sha256(original_pixels), hidden.message_id, hidden.stamp
    )
    if not stamp_ok or hidden.message_id != header["message_id"]:
        raise ValueError("hidden payload does not match the envelope")
    original = None
    if restore_original:
        # The input file byte for byte where the container has its recipe (DICOM), else rewritten.
        original = codecs.rebuild(box.recipe, original_pixels) if box.recipe else codecs.encode(image, original_pixels)
    return OpenedImage(
        header=header,
        origin=opened.origin,
        content=dict(box.meta.get("content", {})),
        source=dict(box.meta.get("source", {})),
        marked=box.marked,
        hidden=hidden,
        original=original,
        derive=opened.derive,
    )


@dataclass(frozen=True)
class _BeforeMask:
    """What `protect` prepares without the lesion mask (`_before_mask`)."""

    fixed_exclusion: np.ndarray | None
    pixel_digest: bytes
    write_marked: Callable[[np.ndarray], bytes]
    hide_s: float
    """How long the exclusion and the digest took (hiding work)."""
    pack_s: float
    """How long writing the marked file ahead took (packing work)."""


def _before_mask(sealer: Sealer, image: codecs.DecodedImage, carrier_rule: str, message_id: str) -> _BeforeMask:
    """The work of `protect` that needs no lesion mask: the sealer's key search on the image, the carrier
    rule's lesion-independent exclusion, the digest of the original pixels that the stamp binds, and the
    marked file but for its pixels."""
    sealer.choose_key(image.pixels)
    t0 = time.perf_counter()
    hu = _hu_estimate(image) if carrier_rule != "non-lesion" else None
    fixed_exclusion, pixel_digest = rule_exclusion(carrier_rule, hu), pixel_sha256(image.pixels)
    t1 = time.perf_counter()
    write_marked = codecs.marked_writer(image, message_id)
    return _BeforeMask(fixed_exclusion, pixel_digest, write_marked, hide_s=t1 - t0, pack_s=time.perf_counter() - t1)


def _start(executor: Executor | None, fn: Callable[..., T], *args: Any) -> Callable[[], T]:
    """`fn(*args)` submitted to `executor`, or, without one, run in the caller's thread when the result is
    called (once) for its value."""
    if executor is None:
        return lambda: fn(*args)
    return executor.submit(fn, *args).result


def _segment(segmenter: MaskFn, image: codecs.DecodedImage) -> np.ndarray:
    """The lesion mask; a multi-frame image is segmented frame by frame (the model reads one slice)."""
    if image.frames == 1:
        return segmenter(image)
    return np.concatenate([np.asarray(segmenter(frame)) for frame in codecs.frames_of(image)], axis=0)


def container_limit(limits: codecs.Limits) -> int:
    """The most a decompressed container may hold under `limits`: the marked file (at most the larger of an
    input file and the raw 16-bit pixels), the original file's rebuild recipe (at most an input file), the
    restoration record (under half a byte per pixel) and 16 MiB for DICOM metadata and the container's own
    fields."""
    return max(limits.max_bytes, 2 * limits.max_pixels) + limits.max_bytes + limits.max_pixels // 2 + (16 << 20)
