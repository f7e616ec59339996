"""The `medshield report` command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gateway.cli import main
from medshield_tools.bench import images

SEED_HEX = "00112233445566778899aabbccddeeff"


def test_single_image_report_cli(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    img = images.ct_image(128, 8)
    path = tmp_path / "ct.png"
    path.write_bytes(img.data)
    mask = tmp_path / "mask.npy"
    np.save(mask, img.lesion_mask.astype(np.uint8))
    out = tmp_path / "out"
    rc = main(["report", str(path), "--seed", SEED_HEX, "--mask", str(mask), "--out", str(out), "--no-plots"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "NPCR" in printed and "UACI" in printed and SEED_HEX in printed and "bit-exact" in printed
    doc = json.loads((out / "report.json").read_text())
    assert doc["images"][0]["seed_hex"] == SEED_HEX and doc["images"][0]["restored_pixels_equal"] is True


def test_report_usage_errors(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["report", "--out", str(tmp_path)]) == 2
    assert main(["report", str(tmp_path / "missing.png"), "--seed", SEED_HEX, "--out", str(tmp_path)]) == 2
    image = tmp_path / "ct.png"
    image.write_bytes(images.ct_image(64, 8).data)
    assert main(["report", str(image), "--seed", "zz", "--out", str(tmp_path)]) == 2
    assert main(["report", str(image), "--seed", "00ff", "--out", str(tmp_path)]) == 2
    assert main(["report", str(image), "--changes", "0", "--out", str(tmp_path)]) == 2
