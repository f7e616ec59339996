"""The QR part format without images: base45, the cut, the join rules, kinds."""

from __future__ import annotations

import hashlib
import json

import pytest
from qrcode.exceptions import DataOverflowError

from gateway.qr import format as qf
from gateway.qr.base45 import b45decode, b45encode

MID = bytes(range(16))


@pytest.mark.parametrize(
    "raw, text",
    [(b"AB", "BB8"), (b"Hello!!", "%69 VD92EX0"), (b"base-45", "UJCLQE7W581"), (b"ietf!", "QED8WEX0"), (b"", "")],
)
def test_base45_rfc9285_examples(raw: bytes, text: str) -> None:
    assert b45encode(raw) == text
    assert b45decode(text) == raw


@pytest.mark.parametrize("bad", ["GGW", "A", "ABCD", "ab8", "::"])
def test_base45_refuses_invalid(bad: str) -> None:
    with pytest.raises(ValueError):
        b45decode(bad)


def test_base45_all_byte_values() -> None:
    raw = bytes(range(256)) * 3 + b"\xff"
    assert b45decode(b45encode(raw)) == raw


def test_capacity_fills_a_code_exactly() -> None:
    from gateway.qr import render

    for version, level in ((10, "L"), (40, "H")):
        room = qf.capacity_bytes(version, level)
        data = (bytes(range(1, 256)) * 20)[: qf.HEADER_BYTES + room + 2]
        render.matrix(b45encode(data[:-2]), level, version)  # fits
        with pytest.raises(DataOverflowError):
            render.matrix(b45encode(data), level, version)


def test_plan_balances_codes_and_picks_the_smallest_version() -> None:
    p = qf.plan(300_000, "M")
    assert p.count == -(-300_000 // qf.capacity_bytes(40, "M"))
    assert p.chunk * p.count >= 300_000 and qf.capacity_bytes(p.version, "M") >= p.chunk
    assert p.version == 40 or qf.capacity_bytes(p.version - 1, "M") < p.chunk
    card = qf.plan(190, "Q")
    assert card.count == 1 and card.version < 20


def test_plan_refuses_too_many_codes_with_a_clear_message() -> None:
    with pytest.raises(qf.QRError) as err:
        qf.plan(2_000_000, "Q", max_codes=200)
    assert err.value.reason == "qr_too_many"
    assert "2000000 bytes need" in str(err.value) and "limit is 200" in str(err.value)
    qf.plan(qf.capacity_bytes(40, "Q") * 200, "Q", max_codes=200)  # exactly at the limit: fine


def _parts(data: bytes, kind: qf.Kind = "recovery-key", mid: bytes = MID, max_version: int = 5) -> list[qf.Part]:
    p = qf.plan(len(data), "L", max_version=max_version, max_codes=1000)
    parts = [qf.parse(t) for t in qf.split(data, kind, mid, p)]
    assert all(parts)
    return parts  # type: ignore[return-value]


def test_header_layout() -> None:
    data = bytes(range(200))
    text = qf.split(data, "recovery-key", MID, qf.plan(len(data), "L", max_version=5))[1]
    raw = b45decode(text)
    assert raw[:4] == b"MSQ1" and raw[4] == 3 and raw[5:21] == MID
    assert int.from_bytes(raw[21:23], "big") == 1
    assert int.from_bytes(raw[23:25], "big") == len(_parts(data))
    assert raw[25:57] == hashlib.sha256(data).digest()


def test_join_any_order_with_duplicates() -> None:
    data = bytes(range(256)) * 2
    parts = _parts(data)
    assert len(parts) > 3
    shuffled = parts[::-1] + parts[:2]
    assert qf.join(shuffled).data == data


def test_join_names_missing_indices_one_based() -> None:
    parts = _parts(bytes(range(256)) * 2)
    with pytest.raises(qf.MissingCodesError) as err:
        qf.join(p for p in parts if p.index not in (0, 3))
    assert err.value.missing == [1, 4]
    assert f"code 1, 4 (numbered 1..{len(parts)}" in str(err.value)


def test_join_refuses_a_mixed_set() -> None:
    a = _parts(bytes(range(256)) * 2)
    b = _parts(bytes(range(255, -1, -1)) * 2, mid=bytes(16))
    with pytest.raises(qf.QRError) as err:
        qf.join(a + b[:1])
    assert err.value.reason == "qr_mixed"


def test_join_refuses_conflicting_duplicates_and_a_bad_digest() -> None:
    parts = _parts(bytes(range(256)) * 2)
    forged = qf.Part(**{**parts[1].__dict__, "data": bytes(len(parts[1].data))})
    with pytest.raises(qf.QRError) as err:
        qf.join(parts + [forged])
    assert err.value.reason == "qr_conflict"
    with pytest.raises(qf.QRError) as err:
        qf.join([forged if p.index == 1 else p for p in parts])
    assert err.value.reason == "qr_digest"


def test_foreign_qr_text_is_ignored_and_a_broken_header_refused() -> None:
    assert qf.parse("otpauth://totp/x?secret=ABC") is None
    assert qf.parse("HELLO WORLD") is None
    truncated = b45encode(b"MSQ1" + bytes(10))
    with pytest.raises(qf.QRError):
        qf.parse(truncated)
    bad_index = b45encode(b"MSQ1\x03" + MID + (5).to_bytes(2, "big") + (5).to_bytes(2, "big") + bytes(33))
    with pytest.raises(qf.QRError):
        qf.parse(bad_index)


def test_detect_kind(recipient) -> None:  # type: ignore[no-untyped-def]
    key, card = recipient
    assert qf.detect_kind(card.read_bytes()) == "recipient-card"
    assert qf.detect_kind(b"opaque", "paper.recovery") == "recovery-key"
    assert qf.detect_kind(json.dumps({"format": qf.RECOVERY_KEY_FORMAT}).encode()) == "recovery-key"
    assert qf.detect_kind(b"MSH2....") == "envelope"
    with pytest.raises(qf.QRError, match="private key"):
        qf.detect_kind(key.read_bytes())
    with pytest.raises(qf.QRError, match="--kind"):
        qf.detect_kind(b"\x89PNG....", "scan.png")
