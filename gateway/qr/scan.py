"""Finding and reading QR codes in images.

Two decoders are wired in, so the benchmark can compare them on the same images: zbar (through pyzbar and
Debian's libzbar0), the default, chosen by measured decode rate (benchmarks/README.md, QR transport), and
OpenCV's QRCodeDetector. `read` tries the image as given, then, where that finds nothing, a few
normalisations that rescue photos and scans (Otsu binarisation, 2x up- or down-scaling, a light blur before
binarising); every variant's results are pooled, so one photo of several codes may yield all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from gateway.qr.format import QRError

Backend = Literal["zbar", "opencv"]
BACKENDS: tuple[Backend, ...] = ("zbar", "opencv")
DEFAULT_BACKEND: Backend = "zbar"
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 64_000_000

ZBAR_MISSING = (
    "QR decoding needs the zbar library, which is not installed (Debian/Ubuntu: apt-get install libzbar0; "
    "`make venv` installs it)"
)


# A decoder maps a grey image to (text, area in pixels) of each code it reads.
Found = list[tuple[bytes, float]]
Decoder = Callable[[np.ndarray], Found]


def _polygon_area(points: np.ndarray) -> float:
    x, y = np.asarray(points, dtype=float).reshape(-1, 2).T
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def _zbar() -> Decoder:
    try:
        from pyzbar import pyzbar
    except (ImportError, OSError):
        raise QRError("qr_no_zbar", ZBAR_MISSING) from None

    def decode(gray: np.ndarray) -> Found:
        found = pyzbar.decode(gray, symbols=[pyzbar.ZBarSymbol.QRCODE])
        return [(s.data, _polygon_area(np.array(s.polygon)) if len(s.polygon) > 2 else 0.0) for s in found]

    return decode


def _opencv() -> Decoder:
    import cv2

    detector = cv2.QRCodeDetector()

    def decode(gray: np.ndarray) -> Found:
        try:
            ok, texts, points, _ = detector.detectAndDecodeMulti(gray)
        except cv2.error:
            return []
        if not ok:
            return []
        return [(t.encode("ascii", "replace"), _polygon_area(p)) for t, p in zip(texts, points) if t]

    return decode


def decoder(backend: Backend = DEFAULT_BACKEND) -> Decoder:
    """A function from a grey image to the texts (and areas) of the QR codes it reads. QRError if zbar is
    missing."""
    if backend == "zbar":
        return _zbar()
    if backend == "opencv":
        return _opencv()
    raise ValueError(f"unknown QR backend {backend!r}")


def variants(gray: np.ndarray) -> list[np.ndarray]:
    """The normalisations tried when the image as given yields nothing."""
    import cv2

    out = [cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1]]
    blurred = cv2.GaussianBlur(gray, (0, 0), 1.0)
    out.append(cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1])
    h, w = gray.shape
    if max(h, w) <= 2000:
        out.append(cv2.resize(gray, (w * 2, h * 2), interpolation=cv2.INTER_CUBIC))
    if min(h, w) >= 400:
        out.append(cv2.resize(gray, (w // 2, h // 2), interpolation=cv2.INTER_AREA))
    return out


@dataclass(frozen=True)
class Reading:
    """The codes read from one image and the share of the image they cover (0..1)."""

    texts: tuple[bytes, ...]
    covered: float


def read(gray: np.ndarray, decode: Decoder, *, thorough: bool = False) -> Reading:
    """The codes in `gray`, deduplicated, in the order found. The variants are tried when the image as given
    yields nothing, or always with `thorough` (a photo where only some of several codes were read)."""
    found: dict[bytes, float] = {}
    for img, scale in [(gray, 1.0)] + ([] if not thorough else _scaled(gray)):
        for text, area in decode(img):
            found.setdefault(text, area / (scale * scale))
    if not found and not thorough:
        for img, scale in _scaled(gray):
            for text, area in decode(img):
                found.setdefault(text, area / (scale * scale))
    return Reading(texts=tuple(found), covered=min(1.0, sum(found.values()) / gray.size))


def _scaled(gray: np.ndarray) -> list[tuple[np.ndarray, float]]:
    # Each variant with its linear scale against the original, to measure coverage in original pixels.
    h = gray.shape[0]
    return [(v, v.shape[0] / h) for v in variants(gray)]


def load_gray(path: Path) -> np.ndarray:
    """An image file (PNG, JPEG, ...) as 8-bit grey; QRError for one that is missing, too large or unreadable."""
    import cv2

    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise QRError("qr_unreadable", f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise QRError("qr_unreadable", f"{path} is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
    buf = np.frombuffer(raw, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION) if raw else None
    if img is None:
        raise QRError("qr_unreadable", f"{path} is not an image OpenCV can read")
    if img.size > MAX_IMAGE_PIXELS:
        raise QRError("qr_unreadable", f"{path} has more than {MAX_IMAGE_PIXELS} pixels")
    return img
