"""Every accepted transfer syntax, on real files, through the real pipeline: the original FILE comes back
byte for byte, the marked image is uncompressed DICOM carrying the hidden payload."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from gateway import codecs
from gateway.codecs import dicom
from gateway.codecs.types import Limits
from gateway.errors import InputError
from gateway.pipeline import open_, protect
from tests.dicom.conftest import FAST, OPEN, require_tool
from tests.dicom.reference import DCMTK_ENCODED, PYDICOM_FILES, pydicom_file

CASES = [(syntax, name) for syntax, names in PYDICOM_FILES.items() for name in names] + [
    (syntax, name) for syntax, cases in DCMTK_ENCODED.items() for name, _, _ in cases
]


def _centre_lesion(shape: tuple[int, int]) -> np.ndarray:
    lesion = np.zeros(shape, bool)
    h, w = shape
    lesion[h // 2 - h // 16 : h // 2 + h // 16, w // 2 - w // 16 : w // 2 + w // 16] = True
    return lesion


def _round_trip(data: bytes, recipient, *, message_id: str | None = None):
    private_key, card = recipient
    image = codecs.decode(data)
    lesion = _centre_lesion(image.pixels.shape)
    # pydicom's samples are small crops (MR, CT_small) with little or no air around the body: the paper's
    # carrier rule leaves room in every one of them; the syntax, not the carrier rule, is under test here.
    result = protect(data, card, mask=lesion, message_id=message_id, carrier_rule="non-lesion", **FAST)
    opened = open_(result.envelope, private_key, restore_original=True, **OPEN)
    return image, lesion, opened


def real_file(name: str, dcmtk_files: dict[str, Path]) -> Path:
    return dcmtk_files[name] if name in dcmtk_files else pydicom_file(name)


def test_every_accepted_syntax_has_a_real_file():
    assert set(PYDICOM_FILES) == set(dicom.ACCEPTED_SYNTAXES)
    assert {syntax for syntax, _ in CASES} == set(dicom.ACCEPTED_SYNTAXES)


@pytest.mark.parametrize(("syntax", "name"), CASES, ids=[name for _, name in CASES])
def test_real_file_round_trips_bit_exact(syntax, name, dicom_recipient, dcmtk_files):
    data = real_file(name, dcmtk_files).read_bytes()
    assert pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    image, lesion, opened = _round_trip(data, dicom_recipient)

    assert opened.original == data
    marked = codecs.decode(opened.marked)
    assert marked.frames == image.frames
    changed = marked.pixels != image.pixels
    assert changed.any() and not (changed & lesion).any()
    assert opened.hidden.source_ref == image.source_ref
    marked_ds = pydicom.dcmread(io.BytesIO(opened.marked))
    if syntax in dicom.NATIVE_SYNTAXES - {dicom.EXPLICIT_BE}:
        assert marked_ds.file_meta.TransferSyntaxUID == syntax
    else:
        assert marked_ds.file_meta.TransferSyntaxUID == dicom.EXPLICIT_LE
    # pydicom's own decoding of the marked file agrees with ours (frames stacked top to bottom).
    np.testing.assert_array_equal(
        marked_ds.pixel_array.astype(marked_ds.pixel_array.dtype.newbyteorder("=")).view(image.pixels.dtype).reshape(
            image.pixels.shape
        ),
        marked.pixels,
    )
    if syntax in dicom.LOSSY_COMPRESSED:
        assert marked_ds.LossyImageCompression == "01"
        assert marked_ds.get("LossyImageCompressionMethod")  # the source's own, or the syntax's where it had none


def test_totalsegmentator_ct_series_round_trips_bit_exact(ct_series, dicom_recipient):
    for path in ct_series:
        data = path.read_bytes()
        image, _, opened = _round_trip(data, dicom_recipient)
        assert opened.original == data, path.name
        assert image.hu is not None and image.pixels.shape == (512, 512)
        assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"


def test_compressed_pixels_decode_as_pydicom_does(ct_series):
    data = ct_series[0].read_bytes()
    image = codecs.decode(data)
    ds = pydicom.dcmread(io.BytesIO(data))
    expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert image.hu is not None
    np.testing.assert_array_equal(image.hu, expected)


def test_enhanced_ct_frames_are_stacked_with_their_own_rescale():
    data = pydicom_file("eCT_Supplemental.dcm").read_bytes()
    image = codecs.decode(data)
    ds = pydicom.dcmread(io.BytesIO(data))
    assert image.frames == 2 and image.pixels.shape == (1024, 512) and image.hu is not None
    frames = codecs.frames_of(image)
    transform = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    for i, frame in enumerate(frames):
        expected = ds.pixel_array[i].astype(np.float32) * float(transform.RescaleSlope) + float(
            transform.RescaleIntercept
        )
        assert frame.hu is not None
        np.testing.assert_array_equal(frame.hu, expected)


def test_multi_frame_images_are_segmented_frame_by_frame(dicom_recipient):
    data = pydicom_file("emri_small_jpeg_2k_lossless.dcm").read_bytes()
    seen: list[tuple[int, int]] = []

    def segmenter(frame: codecs.DecodedImage) -> np.ndarray:
        seen.append(frame.pixels.shape)
        return np.zeros(frame.pixels.shape, bool)

    private_key, card = dicom_recipient
    result = protect(data, card, segmenter=segmenter, **FAST)
    assert seen == [(64, 64)] * 10
    assert open_(result.envelope, private_key, restore_original=True, **OPEN).original == data


def test_a_deflated_file_may_not_inflate_past_the_byte_limit():
    data = pydicom_file("image_dfl.dcm").read_bytes()  # 4.6 kB that inflate to 262 kB
    limits = Limits(max_bytes=100_000)
    with pytest.raises(InputError) as info:
        codecs.decode(data, limits)
    assert info.value.reason == "too_large"
    assert codecs.decode(data, Limits(max_bytes=300_000)).pixels.shape == (512, 512)


def test_a_recipe_rebuilds_only_from_the_original_pixels():
    data = pydicom_file("CT_small.dcm").read_bytes()
    image = codecs.decode(data)
    assert image.recipe is not None and len(image.recipe) < len(data) - image.pixels.nbytes + 64
    assert codecs.rebuild(image.recipe, image.pixels) == data
    assert codecs.rebuild(image.recipe, image.pixels ^ np.uint16(1)) != data


def test_frames_limit_counts_every_frame():
    data = pydicom_file("emri_small.dcm").read_bytes()
    with pytest.raises(InputError) as info:
        codecs.decode(data, Limits(max_pixels=64 * 64 * 9))
    assert info.value.reason == "too_many_pixels"


def test_a_truncated_compressed_file_is_an_input_error():
    data = Path(pydicom_file("MR_small_jp2klossless.dcm")).read_bytes()
    with pytest.raises(InputError):
        codecs.decode(data[: len(data) - 2000])


# Decoders that share no code with the gateway's: dcmtk (IJG libjpeg, CharLS-derived JPEG-LS, its own RLE) and
# GDCM (its own IJG copies, CharLS, OpenJPEG), both from Debian, each writing the pixels uncompressed.
INDEPENDENT = {
    "1.2.840.10008.1.2.5": ["dcmdrle"],
    "1.2.840.10008.1.2.4.57": ["dcmdjpeg"],
    "1.2.840.10008.1.2.4.70": ["dcmdjpeg"],
    "1.2.840.10008.1.2.4.50": ["dcmdjpeg"],
    "1.2.840.10008.1.2.4.51": ["dcmdjpeg"],
    "1.2.840.10008.1.2.4.80": ["dcmdjpls"],
    "1.2.840.10008.1.2.4.81": ["dcmdjpls"],
}
COMPRESSED_CASES = [(s, n) for s, n in CASES if s not in dicom.NATIVE_SYNTAXES | {dicom.DEFLATED_LE}] + [
    # Too small to carry the payload, still real near-lossless pixels to decode.
    ("1.2.840.10008.1.2.4.81", "JPEGLSNearLossless_08.dcm"),
    ("1.2.840.10008.1.2.4.81", "JPEGLSNearLossless_16.dcm"),
]


def independent_pixels(path: Path, syntax: str, directory: Path) -> dict[str, bytes]:
    """Pixel Data as each independent decoder writes it uncompressed (tool name -> bytes)."""
    out = {}
    for tool, *options in [[name] for name in INDEPENDENT.get(syntax, [])] + [["gdcmconv", "--raw"]]:
        target = directory / f"{path.name}.{tool}.dcm"
        subprocess.run([require_tool(tool), *options, str(path), str(target)], check=True, capture_output=True,
                       timeout=120)
        out[tool] = pydicom.dcmread(target).PixelData
    return out


@pytest.mark.parametrize(("syntax", "name"), COMPRESSED_CASES, ids=[name for _, name in COMPRESSED_CASES])
def test_compressed_pixels_equal_independent_decoders(syntax, name, dcmtk_files, tmp_path):
    path = real_file(name, dcmtk_files)
    image = codecs.decode(path.read_bytes())
    ours = image.pixels.astype(image.pixels.dtype.newbyteorder("<"), copy=False).tobytes()
    decoded = independent_pixels(path, syntax, tmp_path)
    assert len(decoded) == (2 if syntax in INDEPENDENT else 1)
    for tool, theirs in decoded.items():
        # An odd pixel count ends in one pad byte.
        assert theirs[: len(ours)] == ours and len(theirs) - len(ours) in (0, 1), tool


def test_totalsegmentator_pixels_equal_gdcm(ct_series, tmp_path):
    for path in ct_series[::5]:
        image = codecs.decode(path.read_bytes())
        # The anonymiser emptied SOP Class and Instance UID, which GDCM will not write out: a copy names them
        # (dcmodify leaves the encapsulated Pixel Data as it is).
        copy = tmp_path / path.name
        copy.write_bytes(path.read_bytes())
        uid = pydicom.dcmread(path, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID
        subprocess.run([require_tool("dcmodify"), "-nb", "-m", "(0008,0016)=1.2.840.10008.5.1.4.1.1.2",
                        "-m", f"(0008,0018)={uid}", str(copy)], check=True, capture_output=True, timeout=60)
        theirs = independent_pixels(copy, "1.2.840.10008.1.2.4.90", tmp_path)["gdcmconv"]
        assert theirs == image.pixels.astype("<u2").tobytes(), path.name


@pytest.mark.parametrize("name", ["JPGExtended.dcm", "JPEG-lossy.dcm"])
def test_12_bit_jpeg_extended_is_refused_as_unsupported(name):
    data = pydicom_file(name).read_bytes()
    with pytest.raises(InputError) as info:
        codecs.decode(data)
    assert info.value.reason == "unsupported_transfer_syntax" and "12-bit" in str(info.value)


def _lie(path: Path, **attributes: object) -> bytes:
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def test_a_jpeg_frame_must_be_what_the_data_set_says(dcmtk_files):
    baseline = dcmtk_files["P14SV1_8b.jpeg-baseline.dcm"]
    colour = pydicom_file("SC_rgb_jpeg_dcmtk.dcm")  # three components, said to be one below
    for data in (_lie(baseline, Rows=384), _lie(colour, SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2")):
        with pytest.raises(InputError) as info:
            codecs.decode(data)
        assert info.value.reason == "malformed" and "frame header" in str(info.value)


@pytest.mark.parametrize(("syntax", "name"), CASES, ids=[name for _, name in CASES])
def test_marked_file_written_ahead_equals_the_derived_object(syntax, name, dcmtk_files, monkeypatch):
    image = codecs.decode(real_file(name, dcmtk_files).read_bytes())
    marked = image.pixels ^ np.asarray(1, image.pixels.dtype)  # every pixel's low bit changed
    message_id = "00000000-0000-4000-8000-000000000001"
    expected = codecs.encode_marked(image, marked, message_id)
    write = codecs.marked_writer(image, message_id)

    def not_again(*args: object) -> bytes:
        raise AssertionError("the marked pixels were not spliced in: the file was derived again")

    monkeypatch.setattr(dicom, "derive", not_again)
    assert write(marked) == expected
