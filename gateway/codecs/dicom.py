"""DICOM in and out (pydicom): monochrome 8/16-bit, native, deflated or compressed, one frame or many.

Transfer syntaxes accepted (`ACCEPTED_SYNTAXES`): Implicit VR Little Endian, Explicit VR Little Endian,
Explicit VR Big Endian (retired), Deflated Explicit VR Little Endian, RLE Lossless, JPEG Lossless (processes
14 and 14 SV1), JPEG-LS Lossless and Near-Lossless, JPEG 2000 Lossless and JPEG 2000 (lossy), JPEG Baseline
and Extended with 8-bit samples. Compressed pixel data is decoded by pydicom's `pylibjpeg` plugin family
(pylibjpeg-libjpeg, -openjpeg, -rle), chosen over GDCM by measurement (benchmarks/dicom_decoders.py: it
decodes every syntax above, GDCM neither RLE nor JPEG Extended through pydicom, and it is the faster one on
JPEG 2000, the syntax CT scanners mostly send), except the lossy DCT-based JPEG processes, decoded by
libjpeg-turbo (through OpenCV) because only that gives the same pixels as dcmtk and GDCM (`DCT_JPEG`). Anything else,
12-bit JPEG Extended included, is refused with `unsupported_transfer_syntax`. A deflated file is
inflated under the byte limit first, so a small file cannot inflate into gigabytes before the size checks.

Pixels are the stored values exactly as in Pixel Data (for native syntaxes the unused high bits are kept).
A multi-frame image (enhanced CT/MR, ...) has its frames stacked top to bottom.

Three ways out:
- `encode` writes the dataset back with new pixels: native little-endian inputs in their own syntax, byte
  for byte the same outside the pixel values; every other syntax as uncompressed Explicit VR Little Endian.
- `derive` writes the marked image as a proper derived object (new SOP Instance UID, a derived series,
  ImageType DERIVED\\SECONDARY (DERIVED\\PRIMARY for enhanced IODs), Derivation Description, Source Image
  Sequence; see docs/DICOM_CONFORMANCE.md).
  It is uncompressed, so the hidden bits survive; a lossy input keeps Lossy Image Compression "01".
- `rebuild` gives back the original file bit for bit from the original pixels and the decoder's `recipe`:
  for native, non-deflated syntaxes the recipe is the file without its pixel words (they are spliced back);
  for compressed or deflated files, whose bytes no encoder reproduces, it is the file itself.
"""

from __future__ import annotations

import copy
import io
import struct
import uuid
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from gateway.codecs.types import DecodedImage, Limits, check_new_pixels
from gateway.errors import InputError
from gateway.reasons import Reason

PIXEL_DATA = 0x7FE00010
_EXTENDED_OFFSET_TABLE = (0x7FE00001, 0x7FE00002)
_MAGIC_OFFSET = 128
MAGIC = b"DICM"

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
NATIVE_SYNTAXES = frozenset({IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE})
LOSSLESS_COMPRESSED = frozenset(
    {
        "1.2.840.10008.1.2.5",  # RLE Lossless
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 SV1)
        "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
    }
)
# Lossy syntax -> Lossy Image Compression Method the marked image records.
LOSSY_COMPRESSED = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",  # JPEG 2000
}
ACCEPTED_SYNTAXES = frozenset({*NATIVE_SYNTAXES, DEFLATED_LE, *LOSSLESS_COMPRESSED, *LOSSY_COMPRESSED})
# The DCT-based JPEG processes do not fix the inverse DCT bit for bit. libjpeg-turbo (in OpenCV, already a
# dependency) decodes 8-bit samples exactly as the IJG code in dcmtk and GDCM (what PACS viewers show);
# pylibjpeg-libjpeg differs from them by one grey level in about 1 % of the pixels. No decoder shipped here
# matches them on 12-bit samples, so those are refused rather than marked with pixels a viewer would not show.
DCT_JPEG = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"})
_JPEG_SOI = b"\xff\xd8"
_JPEG_SOF_DCT = (0xC0, 0xC1)  # Baseline, Extended sequential (Huffman): the processes of the two syntaxes
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
DECODING_PLUGIN = "pylibjpeg"

# Recipe: "MSR1" | u8 mode | u64 BE splice offset | u8 byte order of the pixel words ("<" or ">") | bytes.
_RECIPE_MAGIC = b"MSR1"
_RECIPE = struct.Struct(">4sBQc")
_VERBATIM, _SPLICE = 0, 1

# Name-based (UUID version 5) UIDs under the 2.25 root: deterministic, so a redelivered image gets the same
# derived UIDs, and every slice of one series lands in one derived series without coordination.
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_OID, "medshield/dicom/derived")
DERIVATION_DESCRIPTION = (
    "MedShield: least significant bits of non-lesion pixels carry an authenticated provenance payload"
    " (message id, keyed timestamp stamp, lesion mask); the source image is restorable bit for bit by its"
    " recipient"
)
# Enhanced (multi-frame functional group) IODs, whose Image Type value 2 may only be PRIMARY.
_ENHANCED_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
        "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT
        "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
        "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color
        "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR
        "1.2.840.10008.5.1.4.1.1.128.1",  # Legacy Converted Enhanced PET
        "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET
    }
)
# Type 1C attributes the enhanced MR IODs require when Image Type value 1 is ORIGINAL or MIXED and allow
# nowhere else (MR Pulse Sequence and Bulk Motion Synchronization modules): they describe an acquisition,
# which a derived image is not. The restored original keeps them.
_ORIGINAL_ONLY = (
    "PulseSequenceName", "MRAcquisitionType", "EchoPulseSequence", "MultipleSpinEcho", "MultiPlanarExcitation",
    "PhaseContrast", "VelocityEncodingAcquisitionSequence", "TimeOfFlightContrast", "ArterialSpinLabelingContrast",
    "SteadyStatePulseSequence", "EchoPlanarPulseSequence", "SaturationRecovery", "SpectrallySelectedSuppression",
    "OversamplingPhase", "GeometryOfKSpaceTraversal", "RectilinearPhaseEncodeReordering",
    "SegmentedKSpaceTraversal", "CoverageOfKSpace", "NumberOfKSpaceTrajectories",
    "BulkMotionCompensationTechnique", "BulkMotionSignalSource",
)
_PURPOSE_SOURCE = ("121322", "DCM", "Source image for image processing operation")


def is_dicom(data: bytes) -> bool:
    """True when `data` starts like a DICOM Part 10 file (128-byte preamble, then `DICM`)."""
    return data[_MAGIC_OFFSET : _MAGIC_OFFSET + 4] == MAGIC


def derived_uid(*parts: str) -> str:
    """A 2.25 UID named by `parts` (UUID version 5 under MedShield's namespace)."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, '/'.join(parts)).int}"


def decode(data: bytes, limits: Limits) -> DecodedImage:
    """Decode one DICOM Part 10 file (see the module docstring for what is accepted)."""
    limits.check_bytes(len(data))
    import pydicom

    with warnings.catch_warnings():
        # pydicom warns about odd but readable files; warnings can quote element values (patient data).
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(data), defer_size=None)
            return _decode_dataset(ds, data, limits)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - pydicom raises many unrelated types on bad bytes
            raise InputError(Reason.MALFORMED, f"not a readable DICOM file ({type(exc).__name__})") from None
        except BaseException as exc:
            # A decoder written in Rust (pylibjpeg-rle) panics on some hostile pixel data, and pyo3 surfaces a
            # panic as PanicException, a BaseException: still bad input, never a reason to stop a worker.
            if type(exc).__name__ != "PanicException":
                raise
            raise InputError(Reason.MALFORMED, "the pixel data could not be decoded (decoder panic)") from None


def _check_inflated_size(data: bytes, limits: Limits) -> None:
    """Refuse a deflated data set that inflates beyond the byte limit, before pydicom inflates it whole."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    fp = io.BytesIO(data)
    read_preamble(fp, False)
    _read_file_meta_info(fp)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = inflater.decompress(data[fp.tell() :], limits.max_bytes + 1)
    if len(inflated) > limits.max_bytes:
        raise InputError(
            Reason.TOO_LARGE, f"the deflated data set inflates beyond the limit of {limits.max_bytes} bytes")


def _decode_dataset(ds: Any, data: bytes, limits: Limits) -> DecodedImage:
    meta = getattr(ds, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if syntax is None:
        raise InputError(Reason.MALFORMED, "the DICOM file has no Transfer Syntax UID")
    if syntax not in ACCEPTED_SYNTAXES:
        raise InputError(
            Reason.UNSUPPORTED_TRANSFER_SYNTAX,
            f"transfer syntax {syntax} is not supported (see docs/DICOM_CONFORMANCE.md for those that are)",
        )
    if syntax == DEFLATED_LE:
        _check_inflated_size(data, limits)
    if PIXEL_DATA not in ds:
        raise InputError(Reason.NO_PIXEL_DATA, "the DICOM file has no Pixel Data")
    samples = int(ds.get("SamplesPerPixel", 1))
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputError(
            Reason.NOT_MONOCHROME,
            f"only grey-scale images are supported (got {samples} samples per pixel, '{photometric}')",
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames < 1:
        raise InputError(Reason.MALFORMED, f"invalid Number of Frames {frames}")
    bits_allocated = int(ds.BitsAllocated)
    bits_stored = int(ds.get("BitsStored", bits_allocated))
    representation = int(ds.get("PixelRepresentation", 0))
    if bits_allocated not in (8, 16) or not 1 <= bits_stored <= bits_allocated:
        raise InputError(
            Reason.UNSUPPORTED_BIT_DEPTH,
            f"only 8- or 16-bit pixels are supported (allocated {bits_allocated}, stored {bits_stored})",
        )
    if representation not in (0, 1):
        raise InputError(Reason.MALFORMED, f"invalid Pixel Representation {representation}")
    if syntax in DCT_JPEG and bits_stored > 8:
        raise InputError(
            Reason.UNSUPPORTED_TRANSFER_SYNTAX,
            f"JPEG Extended with {bits_stored}-bit samples is not supported; send it JPEG Lossless, JPEG-LS,"
            " JPEG 2000 or uncompressed (see docs/DICOM_CONFORMANCE.md)",
        )
    rows, cols = int(ds.Rows), int(ds.Columns)
    limits.check_shape(rows, cols)
    if frames * rows * cols > limits.max_pixels:
        raise InputError(
            Reason.TOO_MANY_PIXELS,
            f"the image has {frames} frames of {rows} x {cols}, more than the limit of {limits.max_pixels} pixels",
        )

    dtype = np.dtype(np.uint8) if bits_allocated == 8 else np.dtype(np.uint16)
    count = frames * rows * cols
    if syntax in NATIVE_SYNTAXES:
        element = ds.get_item(PIXEL_DATA)
        raw = ds.PixelData
        needed = count * dtype.itemsize
        if not isinstance(raw, bytes) or len(raw) < needed:
            raise InputError(Reason.TRUNCATED, f"Pixel Data holds {len(raw)} bytes, {needed} are needed")
        wire = dtype.newbyteorder(">") if syntax == EXPLICIT_BE else dtype.newbyteorder("<")
        pixels = np.frombuffer(raw, dtype=wire, count=count).astype(dtype).reshape(frames * rows, cols)
        offset = getattr(element, "value_tell", None)
        if offset is None or data[offset : offset + needed] != raw[:needed]:
            raise InputError(Reason.MALFORMED, "the Pixel Data could not be located in the file")
        order = b">" if syntax == EXPLICIT_BE else b"<"
        recipe = _RECIPE.pack(_RECIPE_MAGIC, _SPLICE, offset, order) + (
            data[:offset] + data[offset + needed :]
        )
    else:
        if syntax in DCT_JPEG:
            decoded = decode_dct_jpeg(ds.PixelData, frames, rows, cols)
        else:
            ds.pixel_array_options(decoding_plugin=DECODING_PLUGIN)
            decoded = np.asarray(ds.pixel_array)
        expected = (frames, rows, cols) if frames > 1 else (rows, cols)
        if decoded.shape != expected or decoded.dtype.itemsize != dtype.itemsize:
            raise InputError(Reason.MALFORMED, "the decoded pixel data does not match Rows, Columns, Frames and Bits")
        pixels = decoded.astype(decoded.dtype.newbyteorder("="), copy=False).view(dtype).reshape(frames * rows, cols)
        pixels = np.ascontiguousarray(pixels)
        recipe = _RECIPE.pack(_RECIPE_MAGIC, _VERBATIM, 0, b"<") + data

    hu = None
    if str(ds.get("Modality", "")).strip().upper() == "CT":
        values = stored_values(pixels, bits_stored, signed=representation == 1).astype(np.float32)
        hu = np.empty_like(values)
        for i, (slope, intercept) in enumerate(_rescale_per_frame(ds, frames)):
            if not (np.isfinite(slope) and np.isfinite(intercept)):
                raise InputError(Reason.MALFORMED, "Rescale Slope/Intercept are not finite numbers")
            band = slice(i * rows, (i + 1) * rows)
            hu[band] = values[band] * np.float32(slope) + np.float32(intercept)

    source_ref = _sop_instance_uid(ds)
    return DecodedImage(
        pixels=pixels,
        format="dicom",
        signed=representation == 1,
        hu=hu,
        dataset=ds,
        source_ref=source_ref or None,
        frames=frames,
        recipe=recipe,
    )


def _jpeg_frame_header(stream: bytes) -> tuple[int, int, int, int, int]:
    """(SOF marker, sample precision, lines, samples per line, components) of a JPEG codestream."""
    if not stream.startswith(_JPEG_SOI):
        raise InputError(Reason.MALFORMED, "a JPEG frame does not start with a JPEG codestream")
    i = len(_JPEG_SOI)
    while i + 4 <= len(stream) and stream[i] == 0xFF:
        marker = stream[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF and i + 10 <= len(stream):
            precision, lines, samples, components = struct.unpack_from(">BHHB", stream, i + 4)
            return marker, precision, lines, samples, components
        (length,) = struct.unpack_from(">H", stream, i + 2)
        i += 2 + length
    raise InputError(Reason.MALFORMED, "a JPEG frame has no frame header")


def decode_dct_jpeg(pixel_data: bytes, frames: int, rows: int, cols: int) -> np.ndarray:
    """8-bit grey-scale JPEG Baseline/Extended frames, decoded by libjpeg-turbo (OpenCV); (frames, rows, cols)
    or (rows, cols). Each frame header must say what the data set says before anything is decoded."""
    import cv2
    from pydicom.encaps import generate_frames

    out = np.empty((frames, rows, cols), np.uint8)
    count = 0
    for stream in generate_frames(pixel_data, number_of_frames=frames):
        if count == frames:
            raise InputError(Reason.MALFORMED, f"the Pixel Data holds more than its {frames} frames")
        marker, precision, lines, samples, components = _jpeg_frame_header(stream)
        if marker not in _JPEG_SOF_DCT or precision != 8 or components != 1 or (lines, samples) != (rows, cols):
            raise InputError(Reason.MALFORMED, "a JPEG frame header does not match the syntax, Rows, Columns and Bits")
        decoded = cv2.imdecode(np.frombuffer(stream, np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        if decoded is None or decoded.shape != (rows, cols) or decoded.dtype != np.uint8:
            raise InputError(Reason.MALFORMED, "a JPEG frame could not be decoded")
        out[count] = decoded
        count += 1
    if count != frames:
        raise InputError(Reason.TRUNCATED, f"the Pixel Data holds {count} of its {frames} frames")
    return out if frames > 1 else out[0]


def _rescale_per_frame(ds: Any, frames: int) -> list[tuple[float, float]]:
    """(slope, intercept) of each frame: the per-frame functional group, else the shared one, else the
    top-level Rescale Slope/Intercept (single-frame images), else identity."""

    def from_item(item: Any) -> tuple[float, float] | None:
        seq = item.get("PixelValueTransformationSequence") if item is not None else None
        if not seq:
            return None
        transform = seq[0]
        return float(transform.get("RescaleSlope", 1.0) or 1.0), float(transform.get("RescaleIntercept", 0.0) or 0.0)

    top = (float(ds.get("RescaleSlope", 1.0) or 1.0), float(ds.get("RescaleIntercept", 0.0) or 0.0))
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = from_item(shared_seq[0]) if shared_seq else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    out = []
    for i in range(frames):
        own = from_item(per_frame[i]) if i < len(per_frame) else None
        out.append(own or shared or top)
    return out


def stored_values(pixels: np.ndarray, bits_stored: int, *, signed: bool) -> np.ndarray:
    """The numeric stored values (int32) of raw pixel words: unused high bits dropped, sign extended."""
    words = pixels.astype(np.int32) & ((1 << bits_stored) - 1)
    if signed:
        sign = 1 << (bits_stored - 1)
        words = (words ^ sign) - sign
    return words


def _with_pixels(image: DecodedImage, pixels: np.ndarray) -> Any:
    """A copy of the image's dataset holding `pixels` (native syntaxes in place; others as Explicit VR LE)."""
    from pydicom.dataelem import DataElement
    from pydicom.uid import ExplicitVRLittleEndian

    pixels = check_new_pixels(image, pixels)
    ds = image.dataset
    if ds is None:
        raise ValueError("a DICOM image needs its dataset to be encoded")
    syntax = ds.file_meta.TransferSyntaxUID
    # deepcopy shares the (immutable) Pixel Data bytes, so this copies metadata only.
    out = copy.deepcopy(ds)
    new = _little_endian_words(pixels)
    if syntax in (IMPLICIT_LE, EXPLICIT_LE):
        # Keep whatever follows the pixels (the pad byte of an odd length) exactly as it was.
        old = ds.PixelData
        out.PixelData = new + old[len(new) :]
        return out
    for tag in (PIXEL_DATA, *_EXTENDED_OFFSET_TABLE):
        if tag in out:
            del out[tag]
    if len(new) % 2:
        new += b"\x00"
    out.add(DataElement(PIXEL_DATA, "OB" if pixels.dtype == np.uint8 else "OW", new))
    out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if syntax in LOSSY_COMPRESSED:
        # Once lossy, always flagged lossy (PS3.3 C.7.6.1.1.5), even though this copy is uncompressed.
        out.LossyImageCompression = "01"
        if "LossyImageCompressionMethod" not in out:
            out.LossyImageCompressionMethod = LOSSY_COMPRESSED[syntax]
    return out


def _write(ds: Any) -> bytes:
    from pydicom.filewriter import dcmwrite

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcmwrite(buffer, ds)
    return buffer.getvalue()


def encode(image: DecodedImage, pixels: np.ndarray) -> bytes:
    """Write `image`'s dataset with `pixels` as its Pixel Data (see the module docstring)."""
    return _write(_with_pixels(image, pixels))


def derive(image: DecodedImage, pixels: np.ndarray, message_id: str) -> bytes:
    """The marked image as a derived object of `image` (UID policy in docs/DICOM_CONFORMANCE.md).

    SOP Instance UID: named by the message id and the source's SOP Instance UID. Series Instance UID: named
    by the source's Series Instance UID, so a whole marked series shares one derived series. Study and Frame
    of Reference are kept (same patient, same geometry).
    """
    return _write(_derived_dataset(image, pixels, message_id))


def derive_later(image: DecodedImage, message_id: str) -> Callable[[np.ndarray], bytes]:
    """`derive(image, ·, message_id)` with the file written now and the pixels spliced in when they come.

    The derived object is written with the original pixels; its Pixel Data holds them as little-endian words,
    which the marked ones replace. Where that value is not found where it should be, this falls back to
    `derive`.
    """
    ds = _derived_dataset(image, image.pixels, message_id)
    data, value = _write(ds), bytes(ds.PixelData)
    # What follows Pixel Data (Data Set Trailing Padding, say), written as the file writes it, gives the offset.
    start = len(data) - _written_length(ds, [tag for tag in ds.keys() if int(tag) > PIXEL_DATA]) - len(value)
    if data[start : start + len(value)] != value:
        return lambda pixels: derive(image, pixels, message_id)
    head, tail = data[:start], data[start + image.pixels.nbytes :]

    def splice(pixels: np.ndarray) -> bytes:
        pixels = check_new_pixels(image, pixels)
        return head + _little_endian_words(pixels) + tail

    return splice


def _written_length(ds: Any, tags: list[Any]) -> int:
    """How many bytes the top-level elements `tags` of `ds` take in its file (little endian, its own VR mode)."""
    if not tags:
        return 0
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = ds.file_meta.TransferSyntaxUID == IMPLICIT_LE
    part = Dataset({tag: ds[tag] for tag in tags})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_dataset(buffer, part)
    return len(buffer.getvalue())


def _little_endian_words(pixels: np.ndarray) -> bytes:
    return pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()


def _derived_dataset(image: DecodedImage, pixels: np.ndarray, message_id: str) -> Any:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = _with_pixels(image, pixels)
    source_sop = _sop_instance_uid(ds)
    source_class = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
    new_sop = derived_uid("sop", message_id, source_sop)
    ds.SOPInstanceUID = new_sop
    ds.file_meta.MediaStorageSOPInstanceUID = new_sop
    ds.SeriesInstanceUID = derived_uid("series", *_series_key(ds))
    image_type = [str(v) for v in (ds.get("ImageType") or [])]
    enhanced = source_class in _ENHANCED_CLASSES
    # Enhanced IODs allow only PRIMARY as value 2 (PS3.3 C.8.16.1.1).
    ds.ImageType = ["DERIVED", "PRIMARY" if enhanced else "SECONDARY", *image_type[2:]]
    if enhanced:
        for keyword in _ORIGINAL_ONLY:
            if keyword in ds:
                delattr(ds, keyword)
    for group in _functional_groups(ds):
        for element in group:
            if element.VR == "SQ" and element.keyword.endswith("FrameTypeSequence"):
                for item in element.value:
                    frame_type = [str(v) for v in (item.get("FrameType") or [])]
                    item.FrameType = ["DERIVED", *frame_type[1:]] if frame_type else ["DERIVED", "PRIMARY"]
    ds.DerivationDescription = DERIVATION_DESCRIPTION
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = _PURPOSE_SOURCE
    reference = Dataset()
    reference.ReferencedSOPClassUID = source_class
    reference.ReferencedSOPInstanceUID = source_sop
    reference.PurposeOfReferenceCodeSequence = Sequence([purpose])
    ds.SourceImageSequence = Sequence([reference])
    return ds


def _sop_instance_uid(ds: Any) -> str:
    """The data set's SOP Instance UID, or the file meta's where an anonymiser emptied the data set's."""
    meta = getattr(ds, "file_meta", None)
    fallback = meta.get("MediaStorageSOPInstanceUID", "") if meta is not None else ""
    return str(ds.get("SOPInstanceUID", "") or fallback or "").strip()


def _series_key(ds: Any) -> list[str]:
    """What names the derived series: the source's Series Instance UID; where it is empty, what the slices of
    one series share (study UID, series number, date, time, modality), so they still share one derived series."""
    series = str(ds.get("SeriesInstanceUID", "") or "").strip()
    if series:
        return [series]
    keywords = ("StudyInstanceUID", "SeriesNumber", "SeriesDate", "SeriesTime", "Modality")
    return ["no-series-uid", *(str(ds.get(k, "") or "") for k in keywords)]


def _functional_groups(ds: Any) -> list[Any]:
    items = list(ds.get("SharedFunctionalGroupsSequence") or [])
    items += list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    return items


def rebuild(recipe: bytes, pixels: np.ndarray) -> bytes:
    """The original file, byte for byte, from its decoder `recipe` and its original (stacked) pixels."""
    if len(recipe) < _RECIPE.size:
        raise ValueError("truncated DICOM recipe")
    magic, mode, offset, order = _RECIPE.unpack_from(recipe)
    body = recipe[_RECIPE.size :]
    if magic != _RECIPE_MAGIC or order not in (b"<", b">"):
        raise ValueError("not a DICOM recipe")
    if mode == _VERBATIM:
        return body
    if mode != _SPLICE or offset > len(body):
        raise ValueError("invalid DICOM recipe")
    words = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder(order.decode()), copy=False).tobytes()
    return body[:offset] + words + body[offset:]
