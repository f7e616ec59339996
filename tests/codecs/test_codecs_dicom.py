"""DICOM decode/encode on real files: pydicom's bundled CT and MR (native, big endian, RLE) and the real CT."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_samples import bundled, ct_dataset_bytes, lung1_slice
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from gateway.codecs import Limits, decode, encode
from gateway.errors import InputError


def metadata(ds: pydicom.Dataset) -> dict[int, object]:
    return {int(e.tag): e.value for e in ds if e.tag != 0x7FE00010}


def test_ct_small_round_trip_is_byte_identical_and_hu_matches_pydicom() -> None:
    raw = bundled("CT_small.dcm")
    image = decode(raw)
    assert image.format == "dicom" and image.pixels.dtype == np.uint16 and image.signed
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    assert image.source_ref == ds.SOPInstanceUID
    np.testing.assert_array_equal(image.pixels.view(np.int16), ds.pixel_array)
    expected_hu = pydicom.pixels.apply_modality_lut(ds.pixel_array, ds)
    assert image.hu is not None and image.hu.dtype == np.float32
    np.testing.assert_array_equal(image.hu, expected_hu.astype(np.float32))
    assert encode(image, image.pixels) == raw


def test_changed_pixels_come_back_with_all_metadata() -> None:
    raw = bundled("CT_small.dcm")
    image = decode(raw)
    changed = image.pixels ^ np.uint16(1)
    out = decode(encode(image, changed))
    np.testing.assert_array_equal(out.pixels, changed)
    assert metadata(out.dataset) == metadata(image.dataset)
    assert out.dataset.file_meta == image.dataset.file_meta
    # the input's dataset is not touched by encoding
    np.testing.assert_array_equal(decode(raw).pixels, image.pixels)
    assert image.dataset.PixelData == decode(raw).dataset.PixelData


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_bigendian.dcm"])
def test_rle_and_big_endian_decode_like_the_native_file_and_encode_as_explicit_le(name: str) -> None:
    reference = decode(bundled("MR_small.dcm"))
    image = decode(bundled(name))
    np.testing.assert_array_equal(image.pixels, reference.pixels)
    assert image.signed and image.hu is None  # MR: no Hounsfield units
    changed = image.pixels.copy()
    changed[::3, ::5] ^= 1
    out = decode(encode(image, changed))
    assert out.dataset.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(out.pixels, changed)
    before, after = metadata(image.dataset), metadata(out.dataset)
    assert after == before
    meta_before = {int(e.tag): e.value for e in image.dataset.file_meta if e.tag != 0x00020010}
    meta_after = {int(e.tag): e.value for e in out.dataset.file_meta if e.tag not in (0x00020010, 0x00020000)}
    meta_before.pop(0x00020000, None)
    assert meta_after == meta_before


def test_rle_input_is_really_rle() -> None:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small_RLE.dcm"))
    assert ds.file_meta.TransferSyntaxUID == RLELossless


def test_implicit_vr_and_odd_padding_round_trip_identically() -> None:
    for name in ("MR_small_implicit.dcm", "MR_small_padded.dcm"):
        raw = bundled(name)
        image = decode(raw)
        assert encode(image, image.pixels) == raw


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("SC_rgb_rle.dcm", "not_monochrome"),
        ("rtdose_rle.dcm", "unsupported_bit_depth"),
    ],
)
def test_unsupported_dicom_is_refused_with_a_reason(name: str, reason: str) -> None:
    with pytest.raises(InputError) as info:
        decode(bundled(name))
    assert info.value.reason == reason


def test_an_unsupported_transfer_syntax_is_refused() -> None:
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(io.BytesIO(bundled("CT_small.dcm")))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 Main Profile: video, not accepted
    ds.PixelData = encapsulate([ds.PixelData])
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    with pytest.raises(InputError) as info:
        decode(buffer.getvalue())
    assert info.value.reason == "unsupported_transfer_syntax"


def test_truncated_dicom_is_an_input_error() -> None:
    raw = bundled("CT_small.dcm")
    # CT_small.dcm ends with 138 bytes of Data Set Trailing Padding, after the Pixel Data
    for cut in (132, 200, 1000, len(raw) // 2, len(raw) - 139):
        with pytest.raises(InputError) as info:
            decode(raw[:cut])
        assert info.value.reason in ("truncated", "malformed", "no_pixel_data")


def test_dicom_dimensions_are_checked_against_limits() -> None:
    with pytest.raises(InputError) as info:
        decode(bundled("CT_small.dcm"), Limits(max_pixels=128 * 127))
    assert info.value.reason == "too_many_pixels"
    with pytest.raises(InputError) as info:
        decode(bundled("CT_small.dcm"), Limits(max_bytes=1000))
    assert info.value.reason == "too_large"


@pytest.mark.parametrize("signed", [False, True])
def test_real_ct_wrapped_as_dicom_gives_its_hu_and_round_trips(shared_data: Path, signed: bool) -> None:
    hu, _ = lung1_slice(shared_data)
    raw = ct_dataset_bytes(hu, signed=signed)
    image = decode(raw)
    assert image.signed is signed and image.pixels.shape == (512, 512)
    assert image.hu is not None
    np.testing.assert_array_equal(image.hu, hu.astype(np.float32))
    assert image.source_ref == pydicom.dcmread(io.BytesIO(raw)).SOPInstanceUID
    assert encode(image, image.pixels) == raw
    marked = image.pixels ^ np.uint16(1)
    again = decode(encode(image, marked))
    np.testing.assert_array_equal(again.pixels, marked)
    assert metadata(again.dataset) == metadata(image.dataset)
    # a flipped LSB moves HU by exactly one, never wraps around
    assert np.abs(again.hu - image.hu).max() == 1.0
