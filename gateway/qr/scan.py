"""Finding and reading QR codes in images.

Three decoders are wired in, so the benchmark can compare them on the same images: zbar (through pyzbar and
Debian's libzbar0), the default, chosen by measured decode rate (benchmarks/README.md, QR transport),
OpenCV's QRCodeDetector and OpenCV's QRCodeDetectorAruco. `read` tries zbar on the image as given, then,
where that finds nothing, the ArUco detector and zbar on a few normalisations that rescue photos and scans
(Otsu binarisation, a light blur before binarising, 2x up- or down-scaling); every result is pooled, so one
photo of several codes may yield all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

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


def _opencv(aruco: bool = False) -> Decoder:
    import cv2

    def decode(gray: np.ndarray) -> Found:
        # One detector per call: they are not safe to share between threads.
        detector = cv2.QRCodeDetectorAruco() if aruco else cv2.QRCodeDetector()
        try:
            ok, texts, points, _ = detector.detectAndDecodeMulti(gray)
        except cv2.error:
            return []
        if not ok:
            return []
        return [(t.encode("ascii", "replace"), _polygon_area(p)) for t, p in zip(texts, points, strict=True) if t]

    return decode


def decoder(backend: Backend | Literal["opencv-aruco"] = DEFAULT_BACKEND) -> Decoder:
    """A function from a grey image to the texts (and areas) of the QR codes it reads. QRError if zbar is
    missing."""
    if backend == "zbar":
        return _zbar()
    if backend == "opencv":
        return _opencv()
    if backend == "opencv-aruco":
        return _opencv(aruco=True)
    raise ValueError(f"unknown QR backend {backend!r}")


def _otsu(gray: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1]


def variants(gray: np.ndarray) -> list[np.ndarray]:
    """The normalisations tried when the image as given yields nothing."""
    import cv2

    out = [_otsu(gray)]
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
    """The codes read from one image, the area (pixels) each covers, and the image's size in pixels."""

    texts: tuple[bytes, ...]
    areas: tuple[float, ...]
    pixels: int

    @property
    def room_for_more(self) -> bool:
        """Whether the part of the image no code read covers could hold another code as large as the
        smallest one read (a sheet or photo of several codes), so reading it harder may find more."""
        return bool(self.areas) and self.pixels - sum(self.areas) >= min(self.areas)


def read(gray: np.ndarray, decode: Decoder, *, thorough: bool = False) -> Reading:
    """The codes in `gray`, deduplicated, in the order found.

    Where `decode` reads nothing in the image as given (or always, with `thorough`: a photo where only some
    of several codes were read), OpenCV's ArUco-based detector, which finds codes under perspective and
    noise that zbar misses, reads the image as given, then `decode` reads each normalised variant.
    """
    found: dict[bytes, float] = {}

    def add(img: np.ndarray, scale: float, dec: Decoder) -> None:
        for text, area in dec(img):
            found.setdefault(text, area / (scale * scale))

    add(gray, 1.0, decode)
    if thorough or not found:
        add(gray, 1.0, _second())
        for img, scale in _scaled(gray):
            add(img, scale, decode)
    if thorough:
        # Overlapping windows of half the image's side: zbar misses some codes of a crowded photo that it
        # reads when they fill more of its input.
        h, w = gray.shape
        th, tw = max(h // 2, 1), max(w // 2, 1)
        for y in range(0, max(h - th, 0) + 1, max(th // 2, 1)):
            for x in range(0, max(w - tw, 0) + 1, max(tw // 2, 1)):
                tile = gray[y : y + th, x : x + tw]
                add(tile, 1.0, decode)
                add(_otsu(tile), 1.0, decode)
    return Reading(texts=tuple(found), areas=tuple(found.values()), pixels=int(gray.size))


@lru_cache(maxsize=1)
def _second() -> Decoder:
    return _opencv(aruco=True)


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
