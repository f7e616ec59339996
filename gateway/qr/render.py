"""Drawing QR codes: the `qrcode` library builds the symbol; numpy picks its mask and draws the PNG.

`qrcode` scores each of the eight mask patterns with a pure-Python pass over the symbol, about 0.2 s for a
version-40 code, which makes a 300 KB envelope (some 190 codes) take most of a minute. Here the library builds
the symbol once (mask 0); the data modules are unmasked, each mask is applied and scored with ISO/IEC 18004
§7.8.3's penalty rules in numpy, and the best one is written with its format information. The result is the
symbol the library itself would build with that mask (tests/qr compare every mask, module for module).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gateway.qr.format import Level, QRError

# ISO/IEC 18004 asks for a quiet zone of 4 modules; decoders find codes much less reliably without it.
QUIET_ZONE_MODULES = 4
DEFAULT_MODULE_PX = 4

_MASKS: tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], ...] = (
    lambda i, j: (i + j) % 2 == 0,
    lambda i, j: i % 2 == 0,
    lambda i, j: j % 3 == 0,
    lambda i, j: (i + j) % 3 == 0,
    lambda i, j: (i // 2 + j // 3) % 2 == 0,
    lambda i, j: (i * j) % 2 + (i * j) % 3 == 0,
    lambda i, j: ((i * j) % 2 + (i * j) % 3) % 2 == 0,
    lambda i, j: ((i * j) % 3 + (i + j) % 2) % 2 == 0,
)
_FINDER_LIKE = (
    np.array([1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0], dtype=bool),
    np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 0, 1], dtype=bool),
)


def _ec(level: Level) -> int:
    from qrcode import constants

    return int(getattr(constants, f"ERROR_CORRECT_{level}"))


def _empty_code(version: int, level: Level):  # type: ignore[no-untyped-def]
    import qrcode

    code = qrcode.QRCode(version=version, error_correction=_ec(level), border=0, box_size=1)
    code.modules_count = version * 4 + 17
    code.modules = [[None] * code.modules_count for _ in range(code.modules_count)]
    return code


def _written(code) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.array([[m is not None for m in row] for row in code.modules], dtype=bool)


@cache
def _format_bits(version: int, level: Level, mask: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the format information (and the fixed dark module) sits, and its values for this mask."""
    code = _empty_code(version, level)
    code.setup_type_info(False, mask)
    where = _written(code)
    values = np.array([[bool(m) for m in row] for row in code.modules], dtype=bool)
    return where, values


@cache
def _data_modules(version: int, level: Level) -> np.ndarray:
    """True where codewords go: not a finder, timing or alignment pattern, format or version information."""
    n = version * 4 + 17
    code = _empty_code(version, level)
    code.setup_position_probe_pattern(0, 0)
    code.setup_position_probe_pattern(n - 7, 0)
    code.setup_position_probe_pattern(0, n - 7)
    code.setup_position_adjust_pattern()
    code.setup_timing_pattern()
    function = _written(code)
    code = _empty_code(version, level)
    if version >= 7:
        code.setup_type_number(False)
    version_info = _written(code)
    fmt, _ = _format_bits(version, level, 0)
    assert function.shape == (n, n)
    free: np.ndarray = ~(function | version_info | fmt)
    return free


def _run_penalty(a: np.ndarray) -> int:
    # Rule 1, along rows: a run of k >= 5 same-colour modules costs k - 2. A sentinel column keeps rows apart.
    x = np.concatenate([a.astype(np.int8), np.full((a.shape[0], 1), 2, np.int8)], axis=1).ravel()
    starts = np.concatenate([[0], np.flatnonzero(x[1:] != x[:-1]) + 1])
    lengths = np.diff(np.append(starts, x.size))
    lengths = lengths[x[starts] != 2]
    return int((lengths[lengths >= 5] - 2).sum())


def _finder_penalty(a: np.ndarray) -> int:
    # Rule 3, along rows: 40 for each 1:1:3:1:1 dark-light pattern with 4 light modules on one side.
    w = sliding_window_view(a, 11, axis=1)
    return 40 * int(sum((w == p).all(axis=2).sum() for p in _FINDER_LIKE))


def penalty(a: np.ndarray) -> int:
    """ISO/IEC 18004 §7.8.3 penalty of a symbol (True = dark), as the `qrcode` library scores it."""
    a = np.asarray(a, dtype=bool)
    n1 = _run_penalty(a) + _run_penalty(a.T)
    same = (a[:-1, :-1] == a[1:, :-1]) & (a[:-1, :-1] == a[:-1, 1:]) & (a[:-1, :-1] == a[1:, 1:])
    n2 = 3 * int(same.sum())
    n3 = _finder_penalty(a) + _finder_penalty(a.T)
    n4 = 10 * int(abs(int(a.sum()) * 100 / a.size - 50) / 5)
    return n1 + n2 + n3 + n4


def masked(text: str, level: Level, version: int) -> list[np.ndarray]:
    """The symbol of `text` (alphanumeric mode, exactly this version and level) under each of the 8 masks."""
    import qrcode
    from qrcode import util

    code = qrcode.QRCode(version=version, error_correction=_ec(level), border=0, box_size=1, mask_pattern=0)
    # types-qrcode declares MODE_ALPHA_NUM a plain int, not the Literal QRData takes.
    code.add_data(util.QRData(text.encode("ascii"), mode=util.MODE_ALPHA_NUM, check_data=False))  # type: ignore[call-overload]
    try:
        code.make(fit=False)
    except ValueError:
        # qrcode <= 8.2 cannot compute Reed-Solomon check words for a block of all-zero data codewords
        # (lincolnloop/python-qrcode#330, fixed after 8.2): only a long run of zero bytes leads there.
        raise QRError(
            "qr_encoder",
            "the qrcode library cannot encode a long run of zero bytes (python-qrcode issue 330); "
            "envelopes and cards never hold one",
        ) from None
    m0 = np.asarray(code.modules, dtype=bool)
    data = _data_modules(version, level)
    rows_cols = np.indices(m0.shape)
    i, j = rows_cols[0], rows_cols[1]
    raw = m0 ^ (data & _MASKS[0](i, j))
    out = []
    for k, mask in enumerate(_MASKS):
        sym = raw ^ (data & mask(i, j))
        where, values = _format_bits(version, level, k)
        sym[where] = values[where]
        out.append(sym)
    return out


def matrix(text: str, level: Level, version: int) -> np.ndarray:
    """The module matrix (True = dark) of one alphanumeric-mode code of exactly this version and level, under
    the mask with the lowest penalty (the first such, as ISO/IEC 18004 and `qrcode` choose)."""
    symbols = masked(text, level, version)
    scores = [penalty(s) for s in symbols]
    return symbols[scores.index(min(scores))]


def image(modules: np.ndarray, module_px: int = DEFAULT_MODULE_PX, quiet: int = QUIET_ZONE_MODULES) -> np.ndarray:
    """An 8-bit grey image (0 dark, 255 light) with `module_px` pixels per module and a quiet zone."""
    if module_px < 1:
        raise ValueError("module_px must be at least 1")
    padded = np.pad(~np.asarray(modules, dtype=bool), quiet, constant_values=True)
    return np.kron(padded.astype(np.uint8) * 255, np.ones((module_px, module_px), dtype=np.uint8))


def png(img: np.ndarray) -> bytes:
    """PNG bytes of a black-and-white image (1 bit per pixel: ten times faster to write than 8-bit at
    compression 9, and as small)."""
    import cv2

    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_BILEVEL, 1, cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()
