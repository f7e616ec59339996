"""The user-facing commands of the Foundation: keygen, protect, open — as a subprocess, with exit codes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.crypto.parts import split

from pipeline_samples import ct_slice_as_dicom

OPAQUE = "could not open envelope"


def medshield(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *map(str, args)], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def protected(tmp_path_factory, lung1) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("cli")
    assert medshield("keygen", "radiology", "--out", work / "keys").returncode == 0
    assert medshield("keygen", "stranger", "--out", work / "keys").returncode == 0
    (work / "ct.dcm").write_bytes(ct_slice_as_dicom(lung1["image_hu"][33]))
    cv2.imwrite(str(work / "mask.png"), lung1["lesion_mask"][33].astype(np.uint8) * 255)
    result = medshield(
        "protect", work / "ct.dcm", "-r", work / "keys/radiology.card", "-o", work / "ct.msh",
        "--mask", work / "mask.png", "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # stdout carries only the result, no log lines
    assert summary["lesion_pixels"] == int(lung1["lesion_mask"][33].sum())
    return {"work": work, "key": work / "keys/radiology.key", "stranger": work / "keys/stranger.key"}


def test_keygen_writes_a_private_key_only_its_owner_can_read(protected):
    mode = stat.S_IMODE(os.stat(protected["key"]).st_mode)
    assert mode == 0o600
    card = json.loads((protected["work"] / "keys/radiology.card").read_text())
    assert "secret" not in json.dumps(card).lower()


def test_open_restores_the_original_and_writes_the_hidden_record(protected):
    work = protected["work"]
    result = medshield(
        "open", work / "ct.msh", "--key", protected["key"], "-o", work / "back.dcm", "--restore-original",
        "--hidden", work / "hidden.json",
    )
    assert result.returncode == 0, result.stderr
    assert (work / "back.dcm").read_bytes() == (work / "ct.dcm").read_bytes()
    hidden = json.loads((work / "hidden.json").read_text())
    assert hidden["stamp_verified"] is True and hidden["lesion_mask_shape"] == [512, 512]


def test_every_failure_to_open_is_exit_1_with_the_same_message(protected):
    work = protected["work"]
    envelope = (work / "ct.msh").read_bytes()
    flipped = bytearray(envelope)
    flipped[len(flipped) // 3] ^= 0x40
    (work / "flipped.msh").write_bytes(bytes(flipped))
    (work / "truncated.msh").write_bytes(envelope[: len(envelope) - 7])
    (work / "part.msh").write_bytes(split(envelope, 64 * 1024)[1])
    attempts = [
        ("flipped.msh", protected["key"]),
        ("truncated.msh", protected["key"]),
        ("part.msh", protected["key"]),
        ("ct.msh", protected["stranger"]),
        ("missing.msh", protected["key"]),
    ]
    for name, key in attempts:
        result = medshield("open", work / name, "--key", key, "-o", work / "out.dcm")
        assert result.returncode == 1, name
        assert result.stderr.strip() == f"medshield: {OPAQUE}", name
    assert not (work / "out.dcm").exists()


def test_bad_input_is_exit_1_with_a_reason_and_usage_errors_are_exit_2(protected, tmp_path):
    (tmp_path / "junk.dcm").write_bytes(os.urandom(2000))
    result = medshield("protect", tmp_path / "junk.dcm", "-r", protected["work"] / "keys/radiology.card",
                       "-o", tmp_path / "x.msh", "--mask", protected["work"] / "mask.png")
    assert result.returncode == 1 and "not_an_image" in result.stderr
    assert not (tmp_path / "x.msh").exists()
    assert medshield("protect", "--no-such-option").returncode == 2
