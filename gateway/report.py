"""Security-metrics reports (`medshield report`): what the protected output looks like to an analyst.

For one image: protect and open it with a recipient derived from a seed; protect it again with one pixel
changed by one grey level (its least significant bit flipped) under the same key material (same seed, same
clock) and measure NPCR and UACI between the two cipher bodies, judged against the Wu–Noonan–Agaian critical
values for the number of bytes compared; entropy, χ² and its p-value, and adjacent correlations (H/V/D) of the
cipher body; PSNR and SSIM of the marked image against the original; BER and NC of the extracted hidden
payload against what was hidden; a bit-exact restore check; compression ratios.

The envelope body is a byte stream (the compressed container, encrypted), not an image: NPCR/UACI compare the
common length of the two bodies byte by byte at 8 bits, and correlations arrange a body row by row in the
largest square it fills.

For a set of images (real CT slices wrapped as DICOM, pydicom's CT_small.dcm, generated slices): the same per
image, with NPCR/UACI over many one-pixel changes and their pass rate; Markdown and PNG output.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gateway import codecs, metrics
from gateway.crypto import envelope as envelope_mod
from gateway.crypto.kdf import hkdf
from gateway.crypto.origin import GatewayKey, TrustedGateways
from gateway.crypto.recipients import PrivateKey, RecipientCard, recipient_from_seed
from gateway.pipeline import STAMP_LABEL, Protected, open_, protect
from gateway.rng import SeededRandom, fixed_clock
from gateway.stego.carriers import DEFAULT_CARRIER_RULE
from gateway.stego.payload import HiddenPayload, make_stamp, pixel_sha256

ALPHA = 0.05
REPORT_CLOCK_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z: a fixed clock makes runs reproducible
SCATTER_PAIRS = 3000
RECIPIENT_INFO = b"medshield/report/recipient"
CHANGE_INFO = b"medshield/report/one-pixel-changes"
GATEWAY_INFO = b"medshield/report/gateway"

MaskFn = Callable[[codecs.DecodedImage], np.ndarray]


# ---------------------------------------------------------------------------------------------------------
# Building blocks


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


# ---------------------------------------------------------------------------------------------------------
# Image sets


@dataclass(frozen=True)
class ReportInput:
    name: str
    data: bytes
    mask: np.ndarray | None
    origin: str
    carrier_rule: str = DEFAULT_CARRIER_RULE


def default_image_set(quick: bool = False) -> list[ReportInput]:
    """Real CT (lung1 slices wrapped as DICOM, 16-bit, and one 8-bit windowed PNG), pydicom's CT_small.dcm,
    and generated slices at 8 and 16 bits. `quick` keeps one of each kind, at small sizes."""
    from gateway.bench import images

    out: list[ReportInput] = []
    try:
        volume, masks = images.load_lung1()
        slices = (33,) if quick else (10, 20, 32, 33, 34, 44)
        for z in slices:
            hu, mask = volume[z].astype(np.float32), masks[z]
            if quick:
                hu, mask = images.resample(hu, mask, 128)
            stored = images.hu_to_stored(hu, 16)
            data = images.wrap_dicom(stored, hu_intercept=-images.HU_OFFSET, uid_seed=z, description=f"lung1 slice {z}")
            out.append(ReportInput(f"lung1_z{z}_dicom16", data, mask, f"real CT (lung1.npz) slice {z}, DICOM 16-bit"))
        hu, mask = volume[33].astype(np.float32), masks[33]
        if quick:
            hu, mask = images.resample(hu, mask, 128)
        out.append(
            ReportInput(
                "lung1_z33_png8",
                images.encode_png(images.hu_to_stored(hu, 8)),
                mask,
                "real CT slice 33, windowed 8-bit PNG",
            )
        )
    except FileNotFoundError:
        pass
    try:
        from pydicom.data import get_testdata_file

        path = get_testdata_file("CT_small.dcm")
        if path:
            data = Path(str(path)).read_bytes()
            out.append(
                ReportInput(
                    "pydicom_CT_small",
                    data,
                    None,
                    "pydicom CT_small.dcm (real CT, 128², signed 16-bit); no reference mask: DS-Net's where available; "
                    "cropped around the spine with no air around the body, so hidden with the paper's carrier rule",
                    "non-lesion",
                )
            )
    except ImportError:
        pass
    side = 128 if quick else 512
    for seed in (1,) if quick else (1, 2):
        hu, mask = images.phantom_slice(side, seed)
        out.append(
            ReportInput(
                f"phantom{seed}_png8",
                images.encode_png(images.hu_to_stored(hu, 8)),
                mask,
                f"generated slice (seed {seed}), 8-bit PNG",
            )
        )
        data = images.wrap_dicom(images.hu_to_stored(hu, 16), hu_intercept=-images.HU_OFFSET, uid_seed=1000 + seed)
        out.append(ReportInput(f"phantom{seed}_dicom16", data, mask, f"generated slice (seed {seed}), DICOM 16-bit"))
    return out


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


# ---------------------------------------------------------------------------------------------------------
# Output


def expected_entropy(n: int, levels: int = 256) -> float:
    """Expected Shannon entropy (bits) of n uniformly random symbols: log2(levels) − (levels − 1) / (2 n ln 2),
    the first-order bias of the plug-in estimator (an ideal cipher's body sits here, not at 8)."""
    return math.log2(levels) - (levels - 1) / (2 * n * math.log(2))


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "∞" if value == math.inf else "n/a"
    return f"{value:.{digits}f}"


def _histogram_values(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    bits = 8 * pixels.dtype.itemsize
    return pixels.reshape(-1), (1 << bits)


def write_plots(reports: Sequence[ImageReport], out_dir: Path, prefix: str = "") -> list[Path]:
    """Histograms plain vs cipher (paper Fig. 10), adjacent-pair scatter plots plain vs cipher (H/V/D), and
    for several changes the NPCR/UACI of each against the critical values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = len(reports)
    fig, axes = plt.subplots(rows, 2, figsize=(10, 2.3 * rows), squeeze=False)
    for row, rep in enumerate(reports):
        values, levels = _histogram_values(rep.plain_pixels)
        ax = axes[row][0]
        bins = 256 if levels == 256 else 512
        ax.hist(values, bins=bins, range=(0, int(values.max()) + 1 if levels > 256 else 256), color="#555555")
        ax.set_title(f"{rep.name}: plain ({rep.bits}-bit)", fontsize=8)
        ax.tick_params(labelsize=6)
        ax = axes[row][1]
        ax.bar(np.arange(256), np.bincount(body_array(rep.body), minlength=256), width=1.0, color="#2a6fb0")
        ax.set_title(
            f"cipher body bytes (entropy {rep.entropy_body:.4f}, χ² p={rep.chi2_body['p_value']:.3f})", fontsize=8
        )
        ax.set_xlim(0, 256)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    path = out_dir / f"{prefix}histograms.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)

    rep = reports[0]
    fig, axes = plt.subplots(2, 3, figsize=(10, 6.5))
    rng = np.random.default_rng(0)
    for row, (label, image) in enumerate((("plain", rep.plain_pixels), ("cipher body", body_square(rep.body)))):
        corr = rep.correlation_plain if row == 0 else rep.correlation_body
        for col, (direction, (dy, dx)) in enumerate(
            (("horizontal", (0, 1)), ("vertical", (1, 0)), ("diagonal", (1, 1)))
        ):
            h, w = image.shape[0] - dy, image.shape[1] - dx
            ys, xs = rng.integers(0, h, SCATTER_PAIRS), rng.integers(0, w, SCATTER_PAIRS)
            ax = axes[row][col]
            ax.scatter(image[ys, xs], image[ys + dy, xs + dx], s=1, alpha=0.4)
            ax.set_title(f"{label} {direction}: r = {_fmt(corr[direction])}", fontsize=8)
            ax.tick_params(labelsize=6)
    fig.suptitle(f"Adjacent-pixel correlation, {rep.name} ({SCATTER_PAIRS} random pairs each)", fontsize=9)
    fig.tight_layout()
    path = out_dir / f"{prefix}correlation_scatter.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)

    if sum(len(r.differentials) for r in reports) > 1:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for r in reports:
            axes[0].scatter(
                [d.compared_bytes for d in r.differentials], [d.npcr for d in r.differentials], s=6, label=r.name
            )
            axes[1].scatter(
                [d.compared_bytes for d in r.differentials], [d.uaci for d in r.differentials], s=6, label=r.name
            )
        ns = np.unique([d.compared_bytes for r in reports for d in r.differentials])
        grid = np.geomspace(max(1, ns.min()), ns.max(), 50) if ns.size > 1 else ns.astype(float)
        crit = [metrics.wna_critical_values(int(n), 8, ALPHA) for n in grid]
        axes[0].plot(grid, [c.npcr for c in crit], "r--", label=f"NPCR* (α={ALPHA})")
        axes[1].plot(grid, [c.uaci_low for c in crit], "r--", label=f"UACI bounds (α={ALPHA})")
        axes[1].plot(grid, [c.uaci_high for c in crit], "r--")
        for ax, label in zip(axes, ("NPCR (%)", "UACI (%)"), strict=True):
            ax.set_xscale("log")
            ax.set_xlabel("cipher bytes compared")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=7)
        axes[1].legend(fontsize=6, loc="upper right")
        fig.suptitle("One-pixel changes: NPCR and UACI of the cipher bodies vs Wu–Noonan–Agaian bounds", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{prefix}npcr_uaci.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def markdown(
    reports: Sequence[ImageReport], *, title: str, plots: Sequence[Path] = (), notes: Sequence[str] = ()
) -> str:
    """The report as Markdown: one table of differential results, one of statistics, one of fidelity."""
    lines = [f"# {title}", ""]
    lines += [f"- {n}" for n in notes]
    if notes:
        lines.append("")
    rep0 = reports[0]
    lines += [
        (
            f"Suite `{rep0.suite}`, seed `{rep0.seed_hex}` (every random choice and the clock derive from it; "
            "the recipient is derived from it too). One-pixel change: one pixel's least significant bit flipped "
            "(±1 grey level), "
            "protected again under the same key material. NPCR/UACI compare the two cipher bodies (bytes) over "
            f"their common length; critical values are Wu–Noonan–Agaian's for that many bytes at 8 bits, α = {ALPHA} "
            f"(for reference, at 512² they are NPCR* = {rep0.critical_512['npcr']:.4f} %, UACI in "
            f"{rep0.critical_512['uaci_low']:.4f}–{rep0.critical_512['uaci_high']:.4f} %)."
        ),
        "",
        "## Differential (NPCR / UACI)",
        "",
        "| image | bytes compared | changes | NPCR mean % | NPCR* % | NPCR pass | UACI mean % | UACI bounds % "
        "| UACI pass |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in reports:
        d0 = r.differentials[0]
        lines.append(
            f"| {r.name} | {d0.compared_bytes} | {len(r.differentials)} "
            f"| {np.mean([d.npcr for d in r.differentials]):.4f} "
            f"| {d0.npcr_critical:.4f} | {100 * r.npcr_pass_rate:.0f} % "
            f"| {np.mean([d.uaci for d in r.differentials]):.4f} "
            f"| {d0.uaci_low:.4f}–{d0.uaci_high:.4f} | {100 * r.uaci_pass_rate:.0f} % |"
        )
    total = sum(len(r.differentials) for r in reports)
    npcr_ok = sum(d.npcr_pass for r in reports for d in r.differentials)
    uaci_ok = sum(d.uaci_pass for r in reports for d in r.differentials)
    lines += [
        "",
        (
            f"Over all {total} one-pixel changes: NPCR passes {npcr_ok}/{total} ({100 * npcr_ok / total:.1f} %), "
            f"UACI passes {uaci_ok}/{total} ({100 * uaci_ok / total:.1f} %). An ideal cipher passes each test with "
            f"probability {100 * (1 - ALPHA):.0f} % (two-sided for UACI), so a rate near {100 * (1 - ALPHA):.0f} % is "
            "what randomness looks like; 100 % over many changes would be suspicious."
        ),
        "",
        "## Cipher body statistics",
        "",
        "| image | body bytes | entropy (bits/byte) | ideal for that length | plain entropy (bits/pixel) "
        f"| χ² (255 dof; {_fmt(rep0.chi2_critical, 2)} at α={ALPHA}) | p-value | corr H | corr V | corr D "
        "| plain corr H / V / D |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in reports:
        cb, cp = r.correlation_body, r.correlation_plain
        lines.append(
            f"| {r.name} | {r.body_bytes} | {r.entropy_body:.4f} | {expected_entropy(r.body_bytes):.4f} "
            f"| {r.entropy_plain:.4f} | {r.chi2_body['statistic']:.2f} | {r.chi2_body['p_value']:.4f} "
            f"| {_fmt(cb['horizontal'])} | {_fmt(cb['vertical'])} | {_fmt(cb['diagonal'])} "
            f"| {_fmt(cp['horizontal'], 3)} / {_fmt(cp['vertical'], 3)} / {_fmt(cp['diagonal'], 3)} |"
        )
    lines += [
        "",
        "## Marking fidelity, restoration, size",
        "",
        "| image | format | bits | mask | lesion px | PSNR marked dB | SSIM marked | payload bytes | BER | NC "
        "| restored bit-exact | restored file identical | pixels/plaintext | file/envelope |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in reports:
        lines.append(
            f"| {r.name} | {r.format} | {r.bits} | {r.mask_source} | {r.lesion_pixels} | {_fmt(r.psnr_marked, 2)} "
            f"| {r.ssim_marked:.6f} | {r.hidden_payload_bytes} | {r.ber_payload:.4g} | {r.nc_payload:.4f} "
            f"| {'yes' if r.restored_pixels_equal else 'NO'} | {'yes' if r.restored_bytes_equal else 'no'} "
            f"| {r.compression_ratio_pixels:.3f} | {r.compression_ratio_file:.3f} |"
        )
    lines += [
        "",
        (
            'PSNR/SSIM use the dtype\'s full range as peak (255, or 65535 for 16-bit). "restored file identical" '
            'compares file bytes (an encoder may write the same pixels differently); "restored bit-exact" compares '
            "pixel values, which is the guarantee."
        ),
    ]
    if plots:
        lines += ["", "## Figures", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(
    reports: Sequence[ImageReport],
    out_dir: Path,
    *,
    title: str,
    notes: Sequence[str] = (),
    plots: bool = True,
    prefix: str = "",
) -> list[Path]:
    """`{prefix}report.json`, `{prefix}report.md` and the PNGs in `out_dir`; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = write_plots(reports, out_dir, prefix) if plots else []
    json_path = out_dir / f"{prefix}report.json"
    json_path.write_text(
        json.dumps(
            {"title": title, "notes": list(notes), "alpha": ALPHA, "images": [r.as_dict() for r in reports]}, indent=1
        )
        + "\n",
        encoding="utf-8",
    )
    md_path = out_dir / f"{prefix}report.md"
    md_path.write_text(markdown(reports, title=title, plots=pngs, notes=notes), encoding="utf-8")
    return [json_path, md_path, *pngs]
