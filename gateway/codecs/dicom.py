"""DICOM in and out (pydicom): monochrome 8/16-bit, native or RLE Lossless, one frame.

Supported transfer syntaxes: Implicit VR Little Endian, Explicit VR Little Endian, Explicit VR Big Endian
(retired) and RLE Lossless. Anything else (JPEG, JPEG-LS, JPEG 2000, deflate...) is refused with
`unsupported_transfer_syntax`: lossy syntaxes would destroy hidden bits, and refusing deflate keeps a small
file from inflating into gigabytes before the size checks run.

Native little-endian inputs are written back in their own transfer syntax, byte for byte the same outside
the pixel values. Big-endian and RLE inputs are written back as uncompressed Explicit VR Little Endian
(the only change to the metadata is the file meta Transfer Syntax UID), because hidden bits must survive
and pydicom has no RLE encoder that needs nothing but numpy.

Pixels are the stored values exactly as in Pixel Data: for native syntaxes the unused high bits (when
Bits Stored < Bits Allocated) are kept as they are, so the original Pixel Data comes back bit for bit.
"""

from __future__ import annotations

import copy
import io
import warnings

import numpy as np

from gateway.codecs.types import DecodedImage, Limits, check_new_pixels
from gateway.errors import InputError

PIXEL_DATA = 0x7FE00010
_EXTENDED_OFFSET_TABLE = (0x7FE00001, 0x7FE00002)
_MAGIC_OFFSET = 128
MAGIC = b"DICM"


def is_dicom(data: bytes) -> bool:
    """True when `data` starts like a DICOM Part 10 file (128-byte preamble, then `DICM`)."""
    return data[_MAGIC_OFFSET : _MAGIC_OFFSET + 4] == MAGIC


def _uids() -> tuple[str, str, str, str]:
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

    return ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless


def decode(data: bytes, limits: Limits) -> DecodedImage:
    """Decode one DICOM Part 10 file (see the module docstring for what is accepted)."""
    limits.check_bytes(len(data))
    import pydicom

    with warnings.catch_warnings():
        # pydicom warns about odd but readable files; warnings can quote element values (patient data).
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
            return _decode_dataset(ds, limits)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - pydicom raises many unrelated types on bad bytes
            raise InputError("malformed", f"not a readable DICOM file ({type(exc).__name__})") from None


def _decode_dataset(ds: object, limits: Limits) -> DecodedImage:
    implicit_le, explicit_le, explicit_be, rle = _uids()
    meta = getattr(ds, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if syntax is None:
        raise InputError("malformed", "the DICOM file has no Transfer Syntax UID")
    if syntax not in (implicit_le, explicit_le, explicit_be, rle):
        raise InputError(
            "unsupported_transfer_syntax",
            f"transfer syntax {syntax} is not supported (native little/big endian and RLE Lossless are)",
        )
    if PIXEL_DATA not in ds:  # type: ignore[operator]
        raise InputError("no_pixel_data", "the DICOM file has no Pixel Data")
    samples = int(ds.get("SamplesPerPixel", 1))  # type: ignore[attr-defined]
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()  # type: ignore[attr-defined]
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputError(
            "not_monochrome",
            f"only grey-scale images are supported (got {samples} samples per pixel, '{photometric}')",
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)  # type: ignore[attr-defined]
    if frames != 1:
        raise InputError("multi_frame", f"only single-frame images are supported (got {frames} frames)")
    bits_allocated = int(ds.BitsAllocated)  # type: ignore[attr-defined]
    bits_stored = int(ds.get("BitsStored", bits_allocated))  # type: ignore[attr-defined]
    representation = int(ds.get("PixelRepresentation", 0))  # type: ignore[attr-defined]
    if bits_allocated not in (8, 16) or not 1 <= bits_stored <= bits_allocated:
        raise InputError(
            "unsupported_bit_depth",
            f"only 8- or 16-bit pixels are supported (allocated {bits_allocated}, stored {bits_stored})",
        )
    if representation not in (0, 1):
        raise InputError("malformed", f"invalid Pixel Representation {representation}")
    rows, cols = int(ds.Rows), int(ds.Columns)  # type: ignore[attr-defined]
    limits.check_shape(rows, cols)

    dtype = np.dtype(np.uint8) if bits_allocated == 8 else np.dtype(np.uint16)
    if syntax == rle:
        decoded = np.asarray(ds.pixel_array)  # type: ignore[attr-defined]
        if decoded.shape != (rows, cols) or decoded.dtype.itemsize != dtype.itemsize:
            raise InputError("malformed", "the RLE pixel data does not match Rows, Columns and Bits Allocated")
        pixels = decoded.astype(decoded.dtype.newbyteorder("=")).view(dtype).copy()
    else:
        raw = ds.PixelData  # type: ignore[attr-defined]
        needed = rows * cols * dtype.itemsize
        if not isinstance(raw, bytes) or len(raw) < needed:
            raise InputError("truncated", f"Pixel Data holds {len(raw)} bytes, {needed} are needed")
        wire = dtype.newbyteorder(">") if syntax == explicit_be else dtype.newbyteorder("<")
        stored = np.frombuffer(raw, dtype=wire, count=rows * cols)
        pixels = stored.astype(dtype).reshape(rows, cols)

    hu = None
    if str(ds.get("Modality", "")).strip().upper() == "CT":  # type: ignore[attr-defined]
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)  # type: ignore[attr-defined]
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)  # type: ignore[attr-defined]
        if not (np.isfinite(slope) and np.isfinite(intercept)):
            raise InputError("malformed", "Rescale Slope/Intercept are not finite numbers")
        values = stored_values(pixels, bits_stored, signed=representation == 1)
        hu = (values.astype(np.float32) * np.float32(slope) + np.float32(intercept)).astype(np.float32)

    uid = ds.get("SOPInstanceUID")  # type: ignore[attr-defined]
    source_ref = str(uid).strip() if uid else None
    return DecodedImage(
        pixels=pixels,
        format="dicom",
        signed=representation == 1,
        hu=hu,
        dataset=ds,
        source_ref=source_ref or None,
    )


def stored_values(pixels: np.ndarray, bits_stored: int, *, signed: bool) -> np.ndarray:
    """The numeric stored values (int32) of raw pixel words: unused high bits dropped, sign extended."""
    words = pixels.astype(np.int32) & ((1 << bits_stored) - 1)
    if signed:
        sign = 1 << (bits_stored - 1)
        words = (words ^ sign) - sign
    return words


def encode(image: DecodedImage, pixels: np.ndarray) -> bytes:
    """Write `image`'s dataset with `pixels` as its Pixel Data (see the module docstring)."""
    from pydicom.dataelem import DataElement
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import ExplicitVRLittleEndian

    pixels = check_new_pixels(image, pixels)
    _, _, explicit_be, rle = _uids()
    ds = image.dataset
    if ds is None:
        raise ValueError("a DICOM image needs its dataset to be encoded")
    syntax = ds.file_meta.TransferSyntaxUID
    # deepcopy shares the (immutable) Pixel Data bytes, so this copies metadata only.
    out = copy.deepcopy(ds)
    new = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
    if syntax in (explicit_be, rle):
        for tag in (PIXEL_DATA, *_EXTENDED_OFFSET_TABLE):
            if tag in out:
                del out[tag]
        if len(new) % 2:
            new += b"\x00"
        out.add(DataElement(PIXEL_DATA, "OB" if pixels.dtype == np.uint8 else "OW", new))
        out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        # Keep whatever follows the pixels (the pad byte of an odd length) exactly as it was.
        old = ds.PixelData
        out.PixelData = new + old[len(new) :]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcmwrite(buffer, out)
    return buffer.getvalue()
