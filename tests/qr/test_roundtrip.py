"""`medshield qr encode` / `decode` through real PNG files: envelopes from `medshield protect`, cards and keys
from `medshield keygen`, recovery keys as opaque files."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.cli import main
from gateway.qr import decode_files, scan
from gateway.qr import format as qf


def _decode(images: list[Path], out: Path) -> int:
    return main(["qr", "decode", *map(str, images), "-o", str(out)])


def test_300kb_envelope_round_trips_bit_exact_in_any_order_with_duplicates(
    make_envelope, encode_dir, recipient, tmp_path
):  # type: ignore[no-untyped-def]
    env = make_envelope(540, 1)
    assert 280_000 <= env.stat().st_size <= 300_000
    codes = encode_dir(env)
    assert len(codes) == qf.plan(env.stat().st_size).count > 100
    order = codes[::-1]
    order = order[:3] + [codes[0], codes[5]] + order[3:]  # out of order, two duplicates
    out = tmp_path / "back.msh"
    assert _decode(order, out) == 0
    assert out.read_bytes() == env.read_bytes()
    key, _ = recipient
    pinned = env.parent / "gw-qr.gateway-card"  # written beside the device key that sealed it
    assert main(["open", str(out), "--key", str(key), "-o", str(tmp_path / "img.png"), "--gateways", str(pinned)]) == 0


@pytest.fixture(scope="module")
def small_set(make_envelope, encode_dir) -> tuple[Path, list[Path]]:  # type: ignore[no-untyped-def]
    """A real envelope of about 20 KB and its codes (default level: some 14 codes)."""
    env = make_envelope(140, 2)
    return env, encode_dir(env)


def test_missing_codes_are_named_by_index(small_set, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env, codes = small_set
    assert len(codes) >= 8
    kept = [c for i, c in enumerate(codes) if i not in (2, 6)]
    out = tmp_path / "x.msh"
    with pytest.raises(qf.MissingCodesError) as exc:
        decode_files(kept, out)
    assert exc.value.missing == [3, 7]
    assert f"missing 2 of {len(codes)} codes: code 3, 7" in str(exc.value)
    assert not out.exists()


def test_a_code_from_another_envelope_is_refused(small_set, make_envelope, encode_dir, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    env, codes = small_set
    other = encode_dir(make_envelope(140, 3))
    out = tmp_path / "x.msh"
    assert _decode(codes + other[:1], out) == 1
    err = capsys.readouterr().err
    assert "2 different sets" in err and "(qr_mixed)" in err
    assert not out.exists()


def test_a_photo_of_several_codes(small_set, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """All codes on one sheet, photographed: slightly rotated, resampled, JPEG-compressed, uneven light."""
    env, codes = small_set
    tiles = [cv2.imread(str(c), cv2.IMREAD_GRAYSCALE) for c in codes]
    side = max(t.shape[0] for t in tiles)
    cols = 4
    rows = -(-len(tiles) // cols)
    sheet = np.full((rows * side, cols * side), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * side : r * side + t.shape[0], c * side : c * side + t.shape[1]] = t
    h, w = sheet.shape
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 3.0, 0.9)
    photo = cv2.warpAffine(sheet, rot, (w, h), borderValue=255, flags=cv2.INTER_LINEAR)
    light = np.linspace(0.75, 1.0, w)[None, :]
    photo = (photo * light).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpg.tobytes())
    out = tmp_path / "back.msh"
    assert _decode([path], out) == 0
    assert out.read_bytes() == env.read_bytes()


def test_card_round_trips_and_is_public(recipient, encode_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, card = recipient
    codes = encode_dir(card)
    assert len(codes) == 1
    assert stat.S_IMODE(codes[0].stat().st_mode) == 0o644
    out = tmp_path / "back.card"
    assert _decode(codes, out) == 0
    assert out.read_bytes() == card.read_bytes()


def test_recovery_key_round_trips_privately_and_stays_out_of_the_output(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    secret = os.urandom(2000)
    key = tmp_path / "alice.recovery"
    key.write_bytes(secret)
    out_dir = tmp_path / "codes"
    assert main(["qr", "encode", str(key), "-o", str(out_dir)]) == 0
    codes = sorted(out_dir.glob("*.png"))
    assert len(codes) == 2
    assert stat.S_IMODE(out_dir.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in out_dir.iterdir())
    back = tmp_path / "back.recovery"
    assert _decode(codes[::-1], back) == 0
    assert back.read_bytes() == secret
    assert stat.S_IMODE(back.stat().st_mode) == 0o600
    printed = capsys.readouterr()
    for form in (secret.hex()[:16], qf.b45encode(secret)[:16]):
        assert form not in printed.out + printed.err


def test_refuses_too_many_codes_and_unknown_inputs(make_envelope, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    env = make_envelope(140, 2)
    assert main(["qr", "encode", str(env), "-o", str(tmp_path / "a"), "--max-codes", "3"]) == 1
    assert "the limit is 3 (--max-codes)" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    assert main(["qr", "encode", str(junk), "-o", str(tmp_path / "b")]) == 1
    assert "(qr_kind)" in capsys.readouterr().err


def test_decoding_without_zbar_is_a_clear_error(small_set, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, codes = small_set
    monkeypatch.setitem(sys.modules, "pyzbar", None)  # what a machine without libzbar0 sees
    monkeypatch.setitem(sys.modules, "pyzbar.pyzbar", None)
    with pytest.raises(qf.QRError) as exc:
        decode_files(codes, tmp_path / "x.msh")
    assert exc.value.reason == "qr_no_zbar" and "apt-get install libzbar0" in str(exc.value)
    assert str(exc.value) == scan.ZBAR_MISSING
