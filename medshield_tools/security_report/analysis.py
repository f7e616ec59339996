"""The measurements of a security report: protect an image under seeded key material, change one pixel,
protect it again, and measure the cipher body, the marked image and the hidden payload.

For one image: protect and open it with a recipient derived from a seed; protect it again with one pixel
changed by one grey level (its least significant bit flipped) under the same key material (same seed, same
clock) and measure NPCR and UACI between the two cipher bodies, judged against the Wu–Noonan–Agaian critical
values for the number of bytes compared; entropy, χ² and its p-value, and adjacent correlations (H/V/D) of the
cipher body; PSNR and SSIM of the marked image against the original; BER and NC of the extracted hidden
payload against what was hidden; a bit-exact restore check; compression ratios.

The envelope body is a byte stream (the compressed container, encrypted), not an image: NPCR/UACI compare the
common length of the two bodies byte by byte at 8 bits, and correlations arrange a body row by row in the
largest square it fills.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from gateway import codecs
from gateway import image_metrics as metrics
from gateway.crypto import envelope as envelope_mod
from gateway.crypto.kdf import hkdf
from gateway.crypto.origin import GatewayKey, TrustedGateways
from gateway.crypto.recipients import PrivateKey, RecipientCard, recipient_from_seed
from gateway.pipeline import STAMP_LABEL, MaskFn, Protected, open_, protect
from gateway.rng import SeededRandom, fixed_clock
from gateway.stego.carriers import DEFAULT_CARRIER_RULE
from gateway.stego.payload import HiddenPayload, make_stamp, pixel_sha256
from medshield_tools.security_report.image_set import ReportInput

ALPHA = 0.05
REPORT_CLOCK_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z: a fixed clock makes runs reproducible
RECIPIENT_INFO = b"medshield/report/recipient"
CHANGE_INFO = b"medshield/report/one-pixel-changes"
GATEWAY_INFO = b"medshield/report/gateway"


def report_recipient(seed: bytes) -> tuple[PrivateKey, RecipientCard]:
    """The report's recipient: an X25519 key pair derived from the seed (never use such keys for real data)."""
    return recipient_from_seed("report", hkdf(seed, salt=b"", info=RECIPIENT_INFO))


def report_gateway(seed: bytes) -> GatewayKey:
    """The report's sealing gateway: an Ed25519 device key derived from the seed (never for real data)."""
    return GatewayKey.generate("medshield-report", SeededRandom(hkdf(seed, salt=b"", info=GATEWAY_INFO)))


def protect_seeded(data: bytes, card: RecipientCard, suite: str, seed: bytes, mask: np.ndarray,
                   carrier_rule: str = DEFAULT_CARRIER_RULE) -> Protected:
    """`protect` with every random choice (ephemeral key, salt, message id, genomes) and the clock fixed by
    the seed, so two calls differ only where their inputs differ."""
    return protect(
        data,
        card,
        signer=report_gateway(seed),
        suite=suite,
        mask=mask,
        carrier_rule=carrier_rule,
        rng=SeededRandom(seed),
        clock=fixed_clock(REPORT_CLOCK_NS),
        source={"report": "differential"},
    )


def split_envelope(data: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """(header, tag, body) of an envelope, unauthenticated (the report opens it properly elsewhere)."""
    peeked = envelope_mod.peek(data)
    return peeked.header, peeked.tag, peeked.body


def body_array(body: bytes) -> np.ndarray:
    return np.frombuffer(body, dtype=np.uint8)


def body_square(body: bytes) -> np.ndarray:
    """The body's bytes row by row in the largest square they fill (for adjacent-pair statistics)."""
    side = math.isqrt(len(body))
    if side < 2:
        raise ValueError("cipher body too short for correlation analysis")
    return body_array(body)[: side * side].reshape(side, side)


def one_pixel_positions(shape: tuple[int, int], count: int, seed: bytes) -> list[tuple[int, int]]:
    """`count` distinct pixel positions drawn from a generator seeded by the seed."""
    rng = np.random.default_rng(np.frombuffer(hashlib.sha256(seed + CHANGE_INFO).digest(), dtype=np.uint32))
    flat = rng.choice(shape[0] * shape[1], size=min(count, shape[0] * shape[1]), replace=False)
    return [(int(i // shape[1]), int(i % shape[1])) for i in flat]


def with_pixel_flipped(image: codecs.DecodedImage, position: tuple[int, int]) -> bytes:
    """The input file again, in its own format, with one pixel's least significant bit flipped (±1)."""
    pixels = image.pixels.copy()
    pixels[position] ^= 1
    return codecs.encode(image, pixels)


@dataclass(frozen=True)
class Differential:
    """NPCR/UACI of one one-pixel change, with the critical values for the bytes compared."""

    position: tuple[int, int]
    compared_bytes: int
    body_bytes: tuple[int, int]
    npcr: float
    uaci: float
    npcr_critical: float
    uaci_low: float
    uaci_high: float
    same_search_genome: bool | None

    @property
    def npcr_pass(self) -> bool:
        return self.npcr >= self.npcr_critical

    @property
    def uaci_pass(self) -> bool:
        return self.uaci_low <= self.uaci <= self.uaci_high

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "position": list(self.position),
            "npcr_pass": self.npcr_pass,
            "uaci_pass": self.uaci_pass,
        }


def differential(reference: bytes, changed: bytes, position: tuple[int, int], alpha: float = ALPHA) -> Differential:
    """Compare two envelopes' cipher bodies over their common length."""
    head_a, _, body_a = split_envelope(reference)
    head_b, _, body_b = split_envelope(changed)
    n = min(len(body_a), len(body_b))
    a, b = body_array(body_a)[:n], body_array(body_b)[:n]
    critical = metrics.wna_critical_values(n, bits=8, alpha=alpha)
    genome_a = head_a.get("sbbe", {}).get("genome")
    genome_b = head_b.get("sbbe", {}).get("genome")
    return Differential(
        position=position,
        compared_bytes=n,
        body_bytes=(len(body_a), len(body_b)),
        npcr=metrics.npcr(a, b),
        uaci=metrics.uaci(a, b, bits=8),
        npcr_critical=critical.npcr,
        uaci_low=critical.uaci_low,
        uaci_high=critical.uaci_high,
        same_search_genome=None if genome_a is None else genome_a == genome_b,
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass
class ImageReport:
    """Every figure for one image (JSON-ready through `as_dict`)."""

    name: str
    suite: str
    seed_hex: str
    format: str
    shape: tuple[int, int]
    bits: int
    mask_source: str
    lesion_pixels: int
    input_bytes: int
    envelope_bytes: int
    plaintext_bytes: int
    body_bytes: int
    differentials: list[Differential]
    critical_512: dict[str, float]
    entropy_body: float
    entropy_plain: float
    chi2_body: dict[str, float]
    chi2_critical: float
    correlation_body: dict[str, float]
    correlation_plain: dict[str, float]
    psnr_marked: float
    ssim_marked: float
    ber_payload: float
    nc_payload: float
    hidden_payload_bytes: int
    restored_pixels_equal: bool
    restored_bytes_equal: bool
    compression_ratio_pixels: float
    compression_ratio_file: float
    plain_pixels: np.ndarray = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def npcr_pass_rate(self) -> float:
        return sum(d.npcr_pass for d in self.differentials) / len(self.differentials)

    @property
    def uaci_pass_rate(self) -> float:
        return sum(d.uaci_pass for d in self.differentials) / len(self.differentials)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("plain_pixels", "body", "differentials")}
        out["shape"] = list(self.shape)
        out["differentials"] = [d.as_dict() for d in self.differentials]
        out["npcr_pass_rate"] = self.npcr_pass_rate
        out["uaci_pass_rate"] = self.uaci_pass_rate
        out["npcr_mean"] = float(np.mean([d.npcr for d in self.differentials]))
        out["uaci_mean"] = float(np.mean([d.uaci for d in self.differentials]))
        out["psnr_marked"] = _finite(self.psnr_marked)
        out["correlation_body"] = {k: _finite(v) for k, v in self.correlation_body.items()}
        out["correlation_plain"] = {k: _finite(v) for k, v in self.correlation_plain.items()}
        return out


def analyse_image(
    data: bytes,
    *,
    name: str,
    suite: str,
    seed: bytes,
    mask: np.ndarray | None = None,
    segmenter: MaskFn | None = None,
    changes: int = 1,
    alpha: float = ALPHA,
    carrier_rule: str = DEFAULT_CARRIER_RULE,
) -> ImageReport:
    """Every metric for one image; `changes` one-pixel changes for NPCR/UACI (at least one).

    The lesion mask is `mask` if given, else `segmenter`'s output; it is computed once and used for the
    reference and every changed image, so the differential isolates the pixel change.
    """
    if changes < 1:
        raise ValueError("changes must be at least 1")
    image = codecs.decode(data)
    pixels = image.pixels
    if mask is not None:
        lesion, mask_source = np.asarray(mask).astype(bool), "given mask"
    elif segmenter is not None:
        lesion, mask_source = np.asarray(segmenter(image)).astype(bool), "DS-Net"
    else:
        raise ValueError("analyse_image needs a lesion mask or a segmenter")
    private_key, card = report_recipient(seed)

    reference = protect_seeded(data, card, suite, seed, lesion, carrier_rule)
    header, _, body = split_envelope(reference.envelope)

    # The authorised side: open, restore, and read back what was hidden.
    gateways = TrustedGateways([report_gateway(seed).card])
    opened = open_(reference.envelope, private_key, gateways=gateways, restore_original=True)
    marked = codecs.decode(opened.marked).pixels
    restored = codecs.decode(opened.original or b"")
    sent = HiddenPayload(
        message_id=header["message_id"],
        timestamp_ns=REPORT_CLOCK_NS,
        stamp=make_stamp(opened.derive(STAMP_LABEL), REPORT_CLOCK_NS, pixel_sha256(pixels), header["message_id"]),
        lesion_mask=lesion,
        source_ref=image.source_ref,
    ).to_bytes()
    received = opened.hidden.to_bytes()
    if len(received) != len(sent):
        ber_value, nc_value = 1.0, 0.0  # a payload of the wrong length is wholly wrong
    else:
        ber_value, nc_value = metrics.ber(sent, received), metrics.nc(sent, received)

    diffs = []
    for position in one_pixel_positions(pixels.shape, changes, seed):
        changed = protect_seeded(with_pixel_flipped(image, position), card, suite, seed, lesion, carrier_rule)
        diffs.append(differential(reference.envelope, changed.envelope, position, alpha))

    cipher = body_array(body)
    chi2 = metrics.chi2_histogram(cipher, bits=8)
    bits = 8 * pixels.dtype.itemsize
    plaintext_bytes = len(body)
    critical_512 = metrics.wna_critical_values(512 * 512, bits=8, alpha=alpha)
    return ImageReport(
        name=name,
        suite=suite,
        seed_hex=seed.hex(),
        format=image.format,
        shape=(int(pixels.shape[0]), int(pixels.shape[1])),
        bits=bits,
        mask_source=mask_source,
        lesion_pixels=int(lesion.sum()),
        input_bytes=len(data),
        envelope_bytes=len(reference.envelope),
        plaintext_bytes=plaintext_bytes,
        body_bytes=len(body),
        differentials=diffs,
        critical_512={
            "npcr": critical_512.npcr,
            "uaci_low": critical_512.uaci_low,
            "uaci_high": critical_512.uaci_high,
        },
        entropy_body=metrics.entropy(cipher, bits=8),
        entropy_plain=metrics.entropy(pixels),
        chi2_body={"statistic": chi2.statistic, "dof": chi2.dof, "p_value": chi2.p_value},
        chi2_critical=metrics.chi2_critical(chi2.dof, alpha),
        correlation_body=metrics.adjacent_correlations(body_square(body)),
        correlation_plain=metrics.adjacent_correlations(pixels),
        psnr_marked=metrics.psnr(pixels, marked),
        ssim_marked=metrics.ssim(pixels, marked),
        ber_payload=ber_value,
        nc_payload=nc_value,
        hidden_payload_bytes=len(sent),
        restored_pixels_equal=bool(np.array_equal(restored.pixels, pixels) and restored.pixels.dtype == pixels.dtype),
        restored_bytes_equal=(opened.original == data),
        compression_ratio_pixels=metrics.compression_ratio(pixels.nbytes, plaintext_bytes),
        compression_ratio_file=metrics.compression_ratio(len(data), len(reference.envelope)),
        plain_pixels=pixels,
        body=body,
    )


def analyse_set(
    inputs: Sequence[ReportInput],
    *,
    suite: str,
    seed: bytes,
    changes: int,
    segmenter: MaskFn | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ImageReport]:
    """`analyse_image` for every input (each with its own mask, or the segmenter where it has none)."""
    reports = []
    for item in inputs:
        if progress:
            progress(item.name)
        mask = item.mask
        if mask is None and segmenter is None:
            # No reference and no model: hide everywhere (an empty lesion mask), and say so.
            mask = np.zeros(codecs.decode(item.data).pixels.shape, bool)
        report = analyse_image(
            item.data, name=item.name, suite=suite, seed=seed, mask=mask, segmenter=segmenter, changes=changes,
            carrier_rule=item.carrier_rule,
        )
        if item.mask is None and segmenter is None:
            report.mask_source = "none (no reference, no model)"
        elif item.mask is not None:
            report.mask_source = "reference"
        reports.append(report)
    return reports


def expected_entropy(n: int, levels: int = 256) -> float:
    """Expected Shannon entropy (bits) of n uniformly random symbols: log2(levels) − (levels − 1) / (2 n ln 2),
    the first-order bias of the plug-in estimator (an ideal cipher's body sits here, not at 8)."""
    return math.log2(levels) - (levels - 1) / (2 * n * math.log(2))


def fmt(value: float | None, digits: int = 4) -> str:
    """A figure for the tables and plot titles: `digits` decimals, or ∞ / n/a where it is not finite."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "∞" if value == math.inf else "n/a"
    return f"{value:.{digits}f}"
