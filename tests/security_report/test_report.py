"""`medshield report`: differential metrics inside the Wu–Noonan–Agaian bounds, sane statistics, exact restore."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from gateway import codecs
from gateway import image_metrics as metrics
from medshield_tools.bench import images
from medshield_tools.security_report import write_report
from medshield_tools.security_report.analysis import (
    analyse_image,
    expected_entropy,
    one_pixel_positions,
    split_envelope,
    with_pixel_flipped,
)

SEED = bytes.fromhex("4d6564536869656c64207265706f7274")  # fixed, so the test is reproducible


@pytest.fixture(scope="module")
def ct512() -> images.BenchImage:
    return images.ct_image(512, 8)  # real CT slice (lung1) windowed to 8 bits, PNG


@pytest.fixture(scope="module", params=["sbbe-blowfish", "aes-256-siv"])
def report512(request: pytest.FixtureRequest, ct512: images.BenchImage):  # type: ignore[no-untyped-def]
    return analyse_image(ct512.data, name="ct512", suite=request.param, seed=SEED, mask=ct512.lesion_mask,
                         changes=CHANGES)


# The Wu–Noonan–Agaian tests are at α = 0.05: an ideal cipher fails one change in twenty, so a single change
# is a coin that any unrelated edit to the pipeline can flip. Over 8 changes an ideal cipher passes at least 6
# with probability 0.994 (binomial, p = 0.95); a cipher with structure fails nearly all.
CHANGES = 8
MIN_PASSES = 6


def test_512_8bit_npcr_uaci_inside_wu_bounds(report512) -> None:  # type: ignore[no-untyped-def]
    assert len(report512.differentials) == CHANGES
    for d in report512.differentials:
        expected = metrics.wna_critical_values(d.compared_bytes, bits=8, alpha=0.05)
        # The bounds are the ones for the number of cipher bytes compared, not a hard-coded 512² figure.
        assert d.compared_bytes == min(d.body_bytes) and d.compared_bytes > 10_000
        assert d.npcr_critical == pytest.approx(expected.npcr)
        assert (d.uaci_low, d.uaci_high) == (pytest.approx(expected.uaci_low), pytest.approx(expected.uaci_high))
        assert d.npcr_pass == (d.npcr >= d.npcr_critical)
        assert d.uaci_pass == (d.uaci_low <= d.uaci <= d.uaci_high)
    npcr = [round(d.npcr, 3) for d in report512.differentials]
    uaci = [round(d.uaci, 3) for d in report512.differentials]
    assert sum(d.npcr_pass for d in report512.differentials) >= MIN_PASSES, f"NPCR {npcr}"
    assert sum(d.uaci_pass for d in report512.differentials) >= MIN_PASSES, f"UACI {uaci}"


def test_metrics_fields_present_and_sane(report512) -> None:  # type: ignore[no-untyped-def]
    r = report512
    out = r.as_dict()
    for key in (
        "differentials", "entropy_body", "chi2_body", "correlation_body", "correlation_plain", "psnr_marked",
        "ssim_marked", "ber_payload", "nc_payload", "restored_pixels_equal", "compression_ratio_pixels",
        "npcr_pass_rate", "uaci_pass_rate",
    ):  # fmt: skip
        assert key in out
    json.dumps(out)  # JSON-ready, no NaN objects or arrays
    assert r.shape == (512, 512) and r.bits == 8
    # A cipher body is close to uniform: entropy near the ideal for its length, χ² not wildly off, no correlation.
    assert expected_entropy(r.body_bytes) - 0.01 < r.entropy_body <= 8.0
    assert r.chi2_body["dof"] == 255 and r.chi2_body["p_value"] > 0.001  # seeded: not a coin flip per run
    assert r.chi2_body["statistic"] < 2 * r.chi2_critical
    assert all(abs(v) < 0.05 for v in r.correlation_body.values())
    assert all(v > 0.9 for v in r.correlation_plain.values())  # real CT is strongly correlated
    # Hiding changes only least significant bits of non-lesion pixels: high PSNR, SSIM ~ 1.
    assert 50 < r.psnr_marked < math.inf and 0.999 < r.ssim_marked <= 1.0
    assert r.ber_payload == 0.0 and r.nc_payload == pytest.approx(1.0)
    assert r.compression_ratio_pixels > 1.0  # CT compresses losslessly


def test_restore_is_bit_exact(report512) -> None:  # type: ignore[no-untyped-def]
    assert report512.restored_pixels_equal


def test_one_pixel_change_changes_exactly_one_pixel_by_one(ct512: images.BenchImage) -> None:
    image = codecs.decode(ct512.data)
    (pos,) = one_pixel_positions(image.pixels.shape, 1, SEED)
    changed = codecs.decode(with_pixel_flipped(image, pos)).pixels
    diff = changed.astype(int) - image.pixels.astype(int)
    assert np.count_nonzero(diff) == 1 and abs(int(diff[pos])) == 1
    assert len(set(one_pixel_positions(image.pixels.shape, 50, SEED))) == 50


def test_same_seed_same_envelope_different_seed_different(ct512: images.BenchImage) -> None:
    """Differential analysis needs same-key determinism: the seed fixes every random choice and the clock."""
    from medshield_tools.security_report.analysis import protect_seeded, report_recipient

    small = images.ct_image(128, 8)
    _, card = report_recipient(SEED)
    a = protect_seeded(small.data, card, "sbbe-blowfish", SEED, small.lesion_mask).envelope
    b = protect_seeded(small.data, card, "sbbe-blowfish", SEED, small.lesion_mask).envelope
    c = protect_seeded(small.data, card, "sbbe-blowfish", bytes(16), small.lesion_mask).envelope
    assert a == b and a != c
    header, tag, body = split_envelope(a)
    assert header["suite"] == "sbbe-blowfish" and len(tag) == 32 and len(body) > 0


def test_16bit_dicom_and_outputs(tmp_path: Path) -> None:
    img = images.ct_image(128, 16)
    r = analyse_image(img.data, name="ct128_16", suite="aes-256-siv", seed=SEED, mask=img.lesion_mask, changes=2)
    assert r.format == "dicom" and r.bits == 16 and len(r.differentials) == 2
    assert r.restored_pixels_equal and r.ber_payload == 0.0
    written = write_report([r], tmp_path, title="t")
    names = {p.name for p in written}
    assert {"report.json", "report.md", "histograms.png", "correlation_scatter.png", "npcr_uaci.png"} <= names
    for p in written:
        assert p.stat().st_size > 0
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["images"][0]["name"] == "ct128_16" and len(doc["images"][0]["differentials"]) == 2
    assert "NPCR" in (tmp_path / "report.md").read_text()


def test_needs_a_mask_or_segmenter() -> None:
    img = images.ct_image(64, 8)
    with pytest.raises(ValueError):
        analyse_image(img.data, name="x", suite="sbbe-blowfish", seed=SEED)
