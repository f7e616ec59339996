"""Base45 (RFC 9285): bytes as text in the QR code alphanumeric alphabet.

QR alphanumeric mode stores 45 symbols at 5.5 bits each, so two bytes become three symbols in 16.5 bits
(97 % of byte mode's density). Decoders return alphanumeric content as plain ASCII, whereas byte-mode content
goes through each decoder's character-set guessing (zbar converts it to UTF-8; OpenCV's Python binding returns
`str`), which can alter binary data.
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


def b45encode(data: bytes) -> str:
    """Encode `data` (RFC 9285 §4)."""
    out: list[str] = []
    data = bytes(data)
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        n, c = divmod(n, 45)
        e, d = divmod(n, 45)
        out += (ALPHABET[c], ALPHABET[d], ALPHABET[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out += (ALPHABET[c], ALPHABET[d])
    return "".join(out)


def b45decode(text: str | bytes) -> bytes:
    """Decode base45; ValueError on a symbol outside the alphabet, a dangling symbol or a value over range."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    if len(text) % 3 == 1:
        raise ValueError("base45 length leaves a single symbol")
    try:
        values = [_VALUE[c] for c in text]
    except KeyError:
        raise ValueError("not base45") from None
    out = bytearray()
    for i in range(0, len(values), 3):
        chunk = values[i : i + 3]
        if len(chunk) == 3:
            n = chunk[0] + chunk[1] * 45 + chunk[2] * 45 * 45
            if n > 0xFFFF:
                raise ValueError("base45 triple over range")
            out += n.to_bytes(2, "big")
        else:
            n = chunk[0] + chunk[1] * 45
            if n > 0xFF:
                raise ValueError("base45 pair over range")
            out.append(n)
    return bytes(out)
