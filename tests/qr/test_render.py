"""The numpy mask choice builds exactly the symbol the qrcode library builds."""

from __future__ import annotations

import numpy as np
import pytest
import qrcode
from qrcode import util

from gateway.qr import render
from gateway.qr.base45 import b45encode
from gateway.qr.format import _alnum_capacity_chars


@pytest.mark.parametrize("version, level", [(2, "H"), (9, "M"), (40, "Q")])
def test_every_mask_matches_the_library(version: int, level: str) -> None:
    text = b45encode(bytes(range(1, 256)) * 20)[: _alnum_capacity_chars(version, level)]  # type: ignore[arg-type]
    symbols = render.masked(text, level, version)  # type: ignore[arg-type]
    for k, ours in enumerate(symbols):
        code = qrcode.QRCode(version=version, error_correction=render._ec(level), border=0, mask_pattern=k)  # type: ignore[arg-type]
        code.add_data(util.QRData(text.encode(), mode=util.MODE_ALPHA_NUM))
        code.make(fit=False)
        assert np.array_equal(np.asarray(code.modules, dtype=bool), ours), k
        assert render.penalty(ours) == util.lost_point(code.modules), k


def test_matrix_takes_the_lowest_penalty() -> None:
    text = b45encode(b'{"format": "x", "name": "y"}' * 3)
    scores = [render.penalty(s) for s in render.masked(text, "M", 6)]
    assert len(set(scores)) > 1
    assert render.penalty(render.matrix(text, "M", 6)) == min(scores)


def test_a_zero_run_the_library_cannot_encode_is_a_clear_error() -> None:
    from gateway.qr.format import QRError

    with pytest.raises(QRError, match="zero bytes") as err:
        render.matrix(b45encode(bytes(100)), "M", 6)
    assert err.value.reason == "qr_encoder"
