"""DICOM in, marked DICOM out, original DICOM back: the codecs and hiding together on real files."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import numpy as np
import pytest
from dicom_samples import bundled, ct_dataset_bytes, lung1_slice

from gateway.codecs import decode, encode
from gateway.stego import RestorationRecord, embed, exclusion_mask, extract, restore
from gateway.stego.payload import HiddenPayload, make_stamp, pixel_sha256, verify_stamp

ORDER_KEY = hashlib.sha256(b"order").digest()
K_STAMP = hashlib.sha256(b"stamp").digest()


def protect_and_recover(raw: bytes, lesion: np.ndarray, margin: int = 4) -> tuple[bytes, bytes]:
    image = decode(raw)
    message_id = str(uuid.uuid4())
    stamp = make_stamp(K_STAMP, 7, pixel_sha256(image.pixels), message_id)
    hidden = HiddenPayload(message_id, 7, stamp, lesion, image.source_ref)
    exclusion = exclusion_mask(lesion, margin)
    marked, record = embed(image.pixels, exclusion, hidden.to_bytes(), ORDER_KEY)
    marked_file = encode(image, marked)

    # the receiving side: only the marked file, the record's bytes and the key
    received = decode(marked_file)
    parsed = RestorationRecord.from_bytes(record.to_bytes())
    got = HiddenPayload.from_bytes(extract(received.pixels, parsed.exclusion, ORDER_KEY))
    assert got == hidden and got.source_ref == image.source_ref
    original = restore(received.pixels, parsed, ORDER_KEY)
    np.testing.assert_array_equal(original, image.pixels)
    assert verify_stamp(K_STAMP, got.timestamp_ns, pixel_sha256(original), got.message_id, got.stamp)
    if received.hu is not None:
        assert image.hu is not None
        np.testing.assert_array_equal(received.hu[exclusion], image.hu[exclusion])
    return marked_file, encode(received, original)


@pytest.mark.parametrize("signed", [False, True])
def test_real_ct_dicom_protect_and_restore_is_byte_exact(shared_data: Path, signed: bool) -> None:
    hu, lesion = lung1_slice(shared_data)
    raw = ct_dataset_bytes(hu, signed=signed)
    marked_file, restored_file = protect_and_recover(raw, lesion)
    assert marked_file != raw and len(marked_file) == len(raw)
    assert restored_file == raw


def test_ct_small_dicom_protect_and_restore_is_byte_exact() -> None:
    raw = bundled("CT_small.dcm")
    lesion = np.zeros((128, 128), bool)
    lesion[60:70, 40:52] = True
    _, restored_file = protect_and_recover(raw, lesion)
    assert restored_file == raw


def test_rle_dicom_comes_back_as_explicit_le_with_the_original_pixels() -> None:
    raw = bundled("MR_small_RLE.dcm")
    lesion = np.zeros((64, 64), bool)
    lesion[30:34, 30:34] = True
    _, restored_file = protect_and_recover(raw, lesion, margin=2)
    np.testing.assert_array_equal(decode(restored_file).pixels, decode(raw).pixels)
    np.testing.assert_array_equal(decode(restored_file).pixels, decode(bundled("MR_small.dcm")).pixels)
