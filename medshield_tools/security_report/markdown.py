"""The report as Markdown: differential results, cipher-body statistics, marking fidelity and size."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medshield_tools.security_report.analysis import ALPHA, ImageReport, expected_entropy, fmt


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
        f"| χ² (255 dof; {fmt(rep0.chi2_critical, 2)} at α={ALPHA}) | p-value | corr H | corr V | corr D "
        "| plain corr H / V / D |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in reports:
        cb, cp = r.correlation_body, r.correlation_plain
        lines.append(
            f"| {r.name} | {r.body_bytes} | {r.entropy_body:.4f} | {expected_entropy(r.body_bytes):.4f} "
            f"| {r.entropy_plain:.4f} | {r.chi2_body['statistic']:.2f} | {r.chi2_body['p_value']:.4f} "
            f"| {fmt(cb['horizontal'])} | {fmt(cb['vertical'])} | {fmt(cb['diagonal'])} "
            f"| {fmt(cp['horizontal'], 3)} / {fmt(cp['vertical'], 3)} / {fmt(cp['diagonal'], 3)} |"
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
            f"| {r.name} | {r.format} | {r.bits} | {r.mask_source} | {r.lesion_pixels} | {fmt(r.psnr_marked, 2)} "
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
