"""The user-facing commands of the Foundation: keygen, protect, open — as a subprocess, with exit codes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from pipeline_samples import ct_slice_as_dicom

from gateway.crypto.origin import GatewayKey
from gateway.crypto.parts import split

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
    gw = medshield(
        "gateway-key", "--device-id", "gw-cli", "--key", work / "gw/device.key", "--card-dir", work / "pinned"
    )
    assert gw.returncode == 0, gw.stderr
    (work / "ct.dcm").write_bytes(ct_slice_as_dicom(lung1["image_hu"][33]))
    cv2.imwrite(str(work / "mask.png"), lung1["lesion_mask"][33].astype(np.uint8) * 255)
    result = medshield(
        "protect", work / "ct.dcm", "-r", work / "keys/radiology.card", "-o", work / "ct.msh",
        "--mask", work / "mask.png", "--json", "--device-key", work / "gw/device.key", "--device-id", "gw-cli",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # stdout carries only the result, no log lines
    assert summary["lesion_pixels"] == int(lung1["lesion_mask"][33].sum())
    return {
        "work": work, "key": work / "keys/radiology.key", "stranger": work / "keys/stranger.key",
        "pinned": work / "pinned", "device_key": work / "gw/device.key",
    }


def test_keygen_writes_a_private_key_only_its_owner_can_read(protected):
    mode = stat.S_IMODE(os.stat(protected["key"]).st_mode)
    assert mode == 0o600
    card = json.loads((protected["work"] / "keys/radiology.card").read_text())
    assert "secret" not in json.dumps(card).lower()


def test_open_restores_the_original_and_writes_the_hidden_record(protected):
    work = protected["work"]
    result = medshield(
        "open", work / "ct.msh", "--key", protected["key"], "-o", work / "back.dcm", "--restore-original",
        "--hidden", work / "hidden.json", "--gateways", protected["pinned"],
    )
    assert result.returncode == 0, result.stderr
    assert "origin VERIFIED: gateway gw-cli" in result.stdout
    assert (work / "back.dcm").read_bytes() == (work / "ct.dcm").read_bytes()
    hidden = json.loads((work / "hidden.json").read_text())
    assert hidden["stamp_verified"] is True and hidden["lesion_mask_shape"] == [512, 512]
    assert hidden["origin"]["device_id"] == "gw-cli" and hidden["origin"]["pinned"] is True
    assert hidden["source"] == {"file": "ct.dcm"}  # inside the ciphertext, not in the clear header
    for path in (work / "back.dcm", work / "hidden.json"):  # pixels and patient data: owner only
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def run_cli(capsys, *args: str | Path) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    """The CLI in this process (faster than a subprocess): exit code, stdout, stderr."""
    from gateway.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_unknown_origin_is_refused_unless_accepted_loudly(protected, tmp_path, capsys):
    work = protected["work"]
    code, _, _ = run_cli(capsys, "gateway-key", "--device-id", "gw-cli", "--key", tmp_path / "other.key",
                         "--card-dir", tmp_path / "other")
    assert code == 0
    opening = ["open", work / "ct.msh", "--key", protected["key"], "-o", tmp_path / "a.dcm"]
    code, _, err = run_cli(capsys, *opening, "--gateways", tmp_path / "other")
    assert code == 1 and err.strip() == f"medshield: {OPAQUE}" and not (tmp_path / "a.dcm").exists()
    code, _, err = run_cli(capsys, *opening)
    assert code == 2 and "--gateways" in err
    code, out, err = run_cli(capsys, *opening, "--accept-unknown-origin")
    assert code == 0 and "UNVERIFIED ORIGIN" in err and "origin UNVERIFIED" in out


def test_clear_header_gives_nothing_away(protected, tmp_path, capsys):
    """Content confirmation: whoever holds the candidate file learns nothing from the clear header."""
    import hashlib

    from gateway.crypto.envelope import peek_header

    work = protected["work"]
    secret_name = tmp_path / "Doe_Jane_1970-01-01.dcm"
    secret_name.write_bytes((work / "ct.dcm").read_bytes())
    runs = []
    for i in range(2):
        code, _, err = run_cli(capsys, "protect", secret_name, "-r", work / "keys/radiology.card", "-o",
                               tmp_path / f"{i}.msh", "--mask", work / "mask.png", "--device-key",
                               protected["device_key"], "--device-id", "gw-cli")
        assert code == 0, err
        runs.append((tmp_path / f"{i}.msh").read_bytes())
    headers = [peek_header(r) for r in runs]
    # Random fields (ids, keys, salt, the clock) may spell anything by chance; the rest must not name or size
    # the image.
    by_chance = {"message_id", "salt", "ephemeral_public_key", "gateway_public_key", "recipient_key_id", "sbbe",
                 "created_ns"}
    chosen = json.dumps([{k: v for k, v in h.items() if k not in by_chance} for h in headers])
    assert "Doe_Jane" not in chosen and "dcm" not in chosen and "dicom" not in chosen
    assert "512" not in chosen  # no image shape
    assert all(isinstance(h["created_ns"], int) and abs(h["created_ns"] - time.time_ns()) < 600e9 for h in headers)
    # The same file twice: nothing in clear links the two or the file (fresh id, key, salt, time).
    assert headers[0]["message_id"] != headers[1]["message_id"]
    digest = hashlib.sha256(secret_name.read_bytes()).digest()
    assert all(digest[:8] not in r and digest.hex()[:16] not in r.hex() for r in runs)
    assert set(headers[0]) == {
        "version", "suite", "message_id", "created_ns", "device_id", "gateway_public_key", "recipient_key_id",
        "ephemeral_public_key", "salt", "compression", "sbbe",
    }


def test_seed_needs_the_testing_flag(protected, tmp_path, capsys):
    from gateway.crypto.envelope import peek_header

    work = protected["work"]
    base = ["protect", work / "ct.dcm", "-r", work / "keys/radiology.card", "--mask", work / "mask.png",
            "--device-key", protected["device_key"], "--device-id", "gw-cli", "--seed", "00ff"]
    code, _, err = run_cli(capsys, *base, "-o", tmp_path / "a.msh")
    assert code == 2 and "--testing-deterministic" in err and not (tmp_path / "a.msh").exists()
    for i in range(2):
        code, _, err = run_cli(capsys, *base, "--testing-deterministic", "-o", tmp_path / f"{i}.msh")
        assert code == 0 and "WARNING" in err
    first, second = (peek_header((tmp_path / f"{i}.msh").read_bytes()) for i in range(2))
    assert first["message_id"] == second["message_id"] and first["salt"] == second["salt"]


def test_every_failure_to_open_is_exit_1_with_the_same_message(protected):
    work = protected["work"]
    envelope = (work / "ct.msh").read_bytes()
    flipped = bytearray(envelope)
    flipped[len(flipped) // 3] ^= 0x40
    (work / "flipped.msh").write_bytes(bytes(flipped))
    (work / "truncated.msh").write_bytes(envelope[: len(envelope) - 7])
    (work / "part.msh").write_bytes(split(envelope, 64 * 1024, GatewayKey.load(protected["device_key"], "gw-cli"))[1])
    attempts = [
        ("flipped.msh", protected["key"]),
        ("truncated.msh", protected["key"]),
        ("part.msh", protected["key"]),
        ("ct.msh", protected["stranger"]),
        ("missing.msh", protected["key"]),
    ]
    for name, key in attempts:
        result = medshield("open", work / name, "--key", key, "-o", work / "out.dcm", "--gateways", protected["pinned"])
        assert result.returncode == 1, name
        assert result.stderr.strip() == f"medshield: {OPAQUE}", name
    assert not (work / "out.dcm").exists()


def test_bad_input_is_exit_1_with_a_reason_and_usage_errors_are_exit_2(protected, tmp_path):
    (tmp_path / "junk.dcm").write_bytes(os.urandom(2000))
    result = medshield("protect", tmp_path / "junk.dcm", "-r", protected["work"] / "keys/radiology.card",
                       "-o", tmp_path / "x.msh", "--mask", protected["work"] / "mask.png",
                       "--device-key", protected["device_key"], "--device-id", "gw-cli")
    assert result.returncode == 1 and "not_an_image" in result.stderr
    assert not (tmp_path / "x.msh").exists()
    assert medshield("protect", "--no-such-option").returncode == 2
