"""The container's compressions: every value round-trips, `shuffle2-zstd` is safe under concurrent workers, and
what it writes is what docs/ENVELOPE.md §10 says (checked with the zstd library and slicing only)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zstandard

from gateway import container
from gateway.container import COMPRESSIONS, Container, ContainerError


def _box(seed: int, n: int = 40_000) -> Container:
    rng = np.random.default_rng(seed)
    pixels = (rng.normal(1000, 200, n).clip(0, 4095)).astype("<u2").tobytes()
    return Container(marked=pixels + bytes([seed % 256]), record=b"record-%d" % seed, meta={"i": seed}, recipe=b"r")


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_every_compression_round_trips(compression: container.Compression) -> None:
    for seed in (1, 2):  # even and odd container lengths
        box = _box(seed, 40_000 + seed)
        assert container.unpack(container.pack(box, compression), compression, 1 << 24) == box


def test_shuffle2_zstd_is_the_documented_layout() -> None:
    box = _box(3)
    packed = container.pack(box, "shuffle2-zstd")
    raw = container.pack(box, "none")
    shuffled = zstandard.ZstdDecompressor().decompress(packed)  # one frame, content size declared
    even = len(raw) & ~1
    assert shuffled == raw[0:even:2] + raw[1:even:2] + raw[even:]
    assert container.unshuffle2(container.shuffle2(raw + b"x")) == raw + b"x"


def test_shuffle2_zstd_beats_zlib_on_16_bit_pixels(lung1) -> None:  # type: ignore[no-untyped-def]
    hu = lung1["image_hu"][10].astype(np.int16)
    box = Container(marked=hu.astype("<i2").tobytes(), record=b"", meta={})
    assert len(container.pack(box, "shuffle2-zstd")) < len(container.pack(box, "zlib"))


def test_concurrent_packing_from_many_threads() -> None:
    """Two workers sharing one zstd compression context crashed the process: each thread has its own."""
    boxes = [_box(seed) for seed in range(8)]
    expected = [container.pack(b, "none") for b in boxes]
    errors: list[str] = []
    start = threading.Barrier(len(boxes))

    def work(i: int) -> None:
        start.wait()
        for _ in range(30):
            packed = container.pack(boxes[i], "shuffle2-zstd")
            if container.pack(container.unpack(packed, "shuffle2-zstd", 1 << 24), "none") != expected[i]:
                errors.append(f"thread {i}: wrong bytes")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(boxes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_zstd_refuses_over_limit_and_garbage() -> None:
    packed = container.pack(_box(4), "shuffle2-zstd")
    with pytest.raises(ContainerError, match="larger than the limit"):
        container.unpack(packed, "shuffle2-zstd", 10_000)
    with pytest.raises(ContainerError):
        container.unpack(b"\x28\xb5\x2f\xfd" + bytes(40), "shuffle2-zstd", 1 << 24)
    with pytest.raises(ContainerError):
        container.unpack(packed[:-7], "shuffle2-zstd", 1 << 24)
    with pytest.raises(ContainerError):
        container.unpack(packed, "brotli", 1 << 24)
