"""QR transport: envelopes, recipient cards and recovery keys as numbered sequences of QR codes.

For crossing an air gap (hospital network to workstation) and for printing. The format of each code is in
`gateway.qr.format` and docs/QR.md; this module is the thin file shell the `medshield qr` command calls.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.files import write_atomic
from gateway.qr import render, scan
from gateway.qr.format import (
    DEFAULT_LEVEL,
    DEFAULT_MAX_CODES,
    DEFAULT_MAX_VERSION,
    KINDS,
    LEVELS,
    SECRET_KINDS,
    Joined,
    Kind,
    Level,
    MissingCodesError,
    Part,
    Plan,
    QRError,
    check_content,
    detect_kind,
    envelope_message_id,
    join,
    parse,
    plan,
    split,
)
from gateway.rng import RandomSource, system_random

__all__ = [
    "DEFAULT_LEVEL", "DEFAULT_MAX_CODES", "DEFAULT_MAX_VERSION", "KINDS", "LEVELS", "Decoded", "Encoded",
    "MissingCodesError", "QRError", "decode_files", "encode_bytes", "encode_file", "plan",
]

MAX_INPUT_BYTES = 16 * 1024 * 1024
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Encoded:
    """What `encode_file` wrote."""

    kind: Kind
    message_id: str
    plan: Plan
    module_px: int
    paths: tuple[Path, ...]
    manifest: Path


@dataclass(frozen=True)
class Decoded:
    """What `decode_files` wrote."""

    kind: Kind
    message_id: str
    count: int
    size: int
    path: Path


def encode_bytes(
    data: bytes, kind: Kind, message_id: bytes, p: Plan, module_px: int = render.DEFAULT_MODULE_PX
) -> list[bytes]:
    """PNG bytes of each code of `data`, in index order (no files)."""
    return [render.png(render.image(render.matrix(t, p.level, p.version), module_px))
            for t in split(data, kind, message_id, p)]


def _read_input(path: Path) -> bytes:
    try:
        with Path(path).open("rb") as fh:
            data = fh.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise QRError("qr_unreadable", f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise QRError("qr_too_many",
                      f"{path} is larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB: far too large for QR codes")
    return data


def encode_file(
    path: Path,
    out_dir: Path,
    *,
    kind: Kind | None = None,
    level: Level = DEFAULT_LEVEL,
    max_version: int = DEFAULT_MAX_VERSION,
    max_codes: int = DEFAULT_MAX_CODES,
    module_px: int = render.DEFAULT_MODULE_PX,
    rng: RandomSource = system_random,
) -> Encoded:
    """Write the codes of one envelope, card or recovery key into `out_dir` (new or empty), with a manifest.

    Files are named KIND-MSGID8-NNN-of-MMM.png (1-based, as printed); codes of a recovery key and their
    directory are private (0600/0700), the rest 0644. QRError for an input that is not one of the kinds, or
    would need more than `max_codes` codes.
    """
    data = _read_input(path)
    kind = kind or detect_kind(data, Path(path).name)
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    check_content(data, kind)
    message_id = envelope_message_id(data) if kind == "envelope" else rng(16)
    p = plan(len(data), level, max_version=max_version, max_codes=max_codes)
    secret = kind in SECRET_KINDS
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise QRError("qr_output", f"{out_dir} exists and is not an empty directory; codes go into a new or empty one")
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700 if secret else 0o755)
    if secret:
        os.chmod(out_dir, 0o700)
    mode = 0o600 if secret else 0o644
    width = len(str(p.count))
    stem = f"{kind}-{message_id.hex()[:8]}"
    paths = []
    for i, png in enumerate(encode_bytes(data, kind, message_id, p, module_px)):
        target = out_dir / f"{stem}-{i + 1:0{width}d}-of-{p.count}.png"
        write_atomic(target, png, mode=mode)
        paths.append(target)
    manifest = out_dir / MANIFEST
    doc = {
        "format": "medshield-qr-sequence",
        "version": 1,
        "kind": kind,
        "message_id": message_id.hex(),
        "bytes": p.size,
        "count": p.count,
        "error_correction": p.level,
        "qr_version": p.version,
        "module_px": module_px,
        "files": [q.name for q in paths],
    }
    write_atomic(manifest, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), mode=mode)
    return Encoded(kind=kind, message_id=message_id.hex(), plan=p, module_px=module_px, paths=tuple(paths),
                   manifest=manifest)


def collect(images: Sequence[Path], backend: scan.Backend = scan.DEFAULT_BACKEND) -> list[Part]:
    """Every MedShield part found in the images, in the order found.

    An image where nothing is found is read again with the slower normalisations. If the parts then do not
    form one complete set, each image with room for codes not yet read (a photo or a sheet of several) is
    read once more with every normalisation. zbar releases the GIL,
    so images are read on a few threads.
    """
    from concurrent.futures import ThreadPoolExecutor

    decode = scan.decoder(backend)
    workers = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))

    def first(path: Path) -> tuple[Path, scan.Reading]:
        return path, scan.read(scan.load_gray(path), decode)

    def again(path: Path) -> scan.Reading:
        return scan.read(scan.load_gray(path), decode, thorough=True)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        readings = list(pool.map(first, images))
        parts = [p for _, r in readings for p in map(parse, r.texts) if p is not None]
        if len({p.set_key for p in parts}) == 1 and len({p.index for p in parts}) == parts[0].count:
            return parts
        retry = [path for path, r in readings if r.room_for_more]
        for r in pool.map(again, retry):
            parts += [p for p in map(parse, r.texts) if p is not None]
    return parts


def decode_files(
    images: Sequence[Path], out: Path, *, backend: scan.Backend = scan.DEFAULT_BACKEND
) -> Decoded:
    """Read the codes in `images` (any order, duplicates, several per image), join them and write the file
    to `out` (which must not exist). QRError naming what is wrong: none found, a mixed set, missing codes by
    number, a digest mismatch."""
    if not images:
        raise QRError("qr_none", "no images given")
    out = Path(out)
    if out.exists():
        raise QRError("qr_output", f"{out} exists; not overwriting it")
    joined: Joined = join(collect(images, backend))
    write_atomic(out, joined.data, mode=0o600 if joined.kind in SECRET_KINDS else 0o644)
    return Decoded(kind=joined.kind, message_id=joined.message_id.hex(), count=joined.count, size=len(joined.data),
                   path=out)
