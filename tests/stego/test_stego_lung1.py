"""On the real lung CT: lesion pixels and their margin are never changed, and everything comes back."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import numpy as np
import pytest

from gateway.image_metrics import psnr, ssim
from gateway.stego import embed, exclusion_mask, extract, restore
from gateway.stego.payload import HiddenPayload, make_stamp, pixel_sha256, verify_stamp

ORDER_KEY = hashlib.sha256(b"lung1 order key").digest()
K_STAMP = hashlib.sha256(b"lung1 stamp key").digest()


@pytest.mark.parametrize(("index", "margin"), [(32, 3), (33, 5), (34, 8)])
def test_lesion_and_margin_untouched_on_real_ct(shared_data: Path, index: int, margin: int) -> None:
    with np.load(shared_data / "ct" / "lung1.npz") as data:
        hu = data["image_hu"][index]
        lesion = data["lesion_mask"][index].astype(bool)
    assert lesion.any()
    stored = (hu.astype(np.int32) + 1024).astype(np.uint16)
    message_id = str(uuid.UUID(int=index))
    stamp = make_stamp(K_STAMP, 1_750_000_000_000_000_000, pixel_sha256(stored), message_id)
    hidden = HiddenPayload(message_id, 1_750_000_000_000_000_000, stamp, lesion, "1.2.3.4")
    exclusion = exclusion_mask(lesion, margin)
    marked, record = embed(stored, exclusion, hidden.to_bytes(), ORDER_KEY)

    changed = np.argwhere(marked != stored)
    assert changed.size > 0
    lesion_points = np.argwhere(lesion)
    # distance from every changed pixel to the nearest lesion pixel, computed without exclusion_mask
    nearest = np.sqrt(((changed[:, None, :] - lesion_points[None, :, :]) ** 2).sum(-1)).min(axis=1)
    assert nearest.min() > margin
    np.testing.assert_array_equal(marked[exclusion], stored[exclusion])

    recovered = HiddenPayload.from_bytes(extract(marked, exclusion, ORDER_KEY))
    assert recovered == hidden
    np.testing.assert_array_equal(recovered.lesion_mask, lesion)
    original = restore(marked, record, ORDER_KEY)
    np.testing.assert_array_equal(original, stored)
    assert verify_stamp(K_STAMP, recovered.timestamp_ns, pixel_sha256(original), recovered.message_id, recovered.stamp)
    assert not verify_stamp(
        K_STAMP, recovered.timestamp_ns, pixel_sha256(marked), recovered.message_id, recovered.stamp
    )
    # an LSB mark in a 12-bit CT is invisible: PSNR far above 80 dB over the 16-bit range
    assert psnr(stored, marked) > 80 and ssim(stored, marked) > 0.9999
