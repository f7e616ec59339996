"""Reason codes of `InputError`: why an input could not be protected (or an envelope's content not restored).

A protected input that fails is quarantined under its code, and the code, nothing else of the input, is
published in the error event on `medshield/gateways/<device>/errors` and counted in
`medshield_messages_quarantined_total{reason}`: the wire strings are these enum values and never change.
docs/REASON_CODES.md is the table of them, checked against `DESCRIPTIONS` by a test (`python -m
gateway.reasons` prints it).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """One reason code; `str(reason)` is the wire string."""

    # The input file (gateway.codecs).
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_AN_IMAGE = "not_an_image"
    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    TOO_MANY_PIXELS = "too_many_pixels"
    UNSUPPORTED_TRANSFER_SYNTAX = "unsupported_transfer_syntax"
    NO_PIXEL_DATA = "no_pixel_data"
    NOT_MONOCHROME = "not_monochrome"
    UNSUPPORTED_BIT_DEPTH = "unsupported_bit_depth"
    UNSUPPORTED_DTYPE = "unsupported_dtype"
    UNSUPPORTED_SHAPE = "unsupported_shape"
    # Segmentation (gateway.segment).
    UNSUPPORTED_PIXEL_TYPE = "unsupported_pixel_type"
    NOT_A_SLICE = "not_a_slice"
    BAD_DIMENSIONS = "bad_dimensions"
    NON_FINITE = "non_finite"
    BAD_PIXEL_SPACING = "bad_pixel_spacing"
    # Protection (gateway.pipeline, gateway.stego, gateway.crypto).
    MASK_SHAPE = "mask_shape"
    NO_CAPACITY = "no_capacity"
    BAD_SAMPLE = "bad_sample"
    # The daemon (gateway.daemon.intake).
    REPEATED_FAULTS = "repeated_faults"
    REPEATED_CRASHES = "repeated_crashes"
    # Opening: the content of an authenticated envelope (gateway.stego), on the receiving side.
    HIDDEN_PAYLOAD_NOT_FOUND = "hidden_payload_not_found"
    HIDDEN_PAYLOAD_CORRUPT = "hidden_payload_corrupt"
    BAD_HIDDEN_PAYLOAD = "bad_hidden_payload"
    BAD_RESTORATION_RECORD = "bad_restoration_record"
    RECORD_MISMATCH = "record_mismatch"


DESCRIPTIONS: dict[Reason, str] = {
    Reason.EMPTY: "The input has no bytes.",
    Reason.TOO_LARGE: "More bytes than `limits.max_bytes` (the file, a deflated DICOM data set once inflated), or "
    "more plaintext than an envelope or SBBE key may carry.",
    Reason.NOT_AN_IMAGE: "Neither DICOM, PNG nor NPY.",
    Reason.TRUNCATED: "The file ends before the content its header declares.",
    Reason.MALFORMED: "The file's structure is broken: inconsistent header fields, lengths or values, a zero-sized "
    "image.",
    Reason.TOO_MANY_PIXELS: "More than `limits.max_pixels` pixels (all frames), or a side longer than "
    "`limits.max_side`.",
    Reason.UNSUPPORTED_TRANSFER_SYNTAX: "A DICOM transfer syntax the decoder does not read "
    "(docs/DICOM_CONFORMANCE.md).",
    Reason.NO_PIXEL_DATA: "A DICOM data set without Pixel Data.",
    Reason.NOT_MONOCHROME: "Not one grey channel: colour, grey + alpha or palette.",
    Reason.UNSUPPORTED_BIT_DEPTH: "Pixels other than 8 or 16 bits (sub-byte PNG depths included).",
    Reason.UNSUPPORTED_DTYPE: "An NPY array of a type other than uint8, uint16 or int16.",
    Reason.UNSUPPORTED_SHAPE: "An NPY array that is not 2-D.",
    Reason.UNSUPPORTED_PIXEL_TYPE: "Pixels of a type the segmenter cannot convert to Hounsfield units.",
    Reason.NOT_A_SLICE: "The segmenter was given something other than one 2-D slice.",
    Reason.BAD_DIMENSIONS: "A slice smaller than 8 pixels or larger than the segmenter's largest side.",
    Reason.NON_FINITE: "A slice with NaN or infinite values.",
    Reason.BAD_PIXEL_SPACING: "A DICOM Pixel Spacing outside what a CT slice can have.",
    Reason.MASK_SHAPE: "The lesion mask's shape differs from the image's.",
    Reason.NO_CAPACITY: "The hidden payload does not fit in the pixels the carrier rule leaves usable.",
    Reason.BAD_SAMPLE: "The SBBE fitness sample (the central crop of the image) is empty or not numeric.",
    Reason.REPEATED_FAULTS: "Protecting the message raised an unexpected fault `limits.max_attempts` times.",
    Reason.REPEATED_CRASHES: "The process died while protecting the message `limits.max_interrupted` times.",
    Reason.HIDDEN_PAYLOAD_NOT_FOUND: "Opening: no hidden payload under the envelope's key (frame magic absent).",
    Reason.HIDDEN_PAYLOAD_CORRUPT: "Opening: the hidden frame claims more bits than the image holds, or fails its "
    "CRC-32.",
    Reason.BAD_HIDDEN_PAYLOAD: "Opening: the hidden payload's fields do not parse.",
    Reason.BAD_RESTORATION_RECORD: "Opening: the restoration record does not parse.",
    Reason.RECORD_MISMATCH: "Opening: the restoration record is for an image of another type or shape.",
}


def markdown_table() -> str:
    """The table of docs/REASON_CODES.md."""
    rows = ["| code | meaning |", "|---|---|"]
    rows += [f"| `{reason}` | {DESCRIPTIONS[reason]} |" for reason in Reason]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
