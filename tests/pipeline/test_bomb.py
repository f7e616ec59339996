"""Opening is bounded by the configured limits, never by what the envelope declares.

The attack: a 306 KB authenticated envelope inflated to 679 MB while opening, because the decompression limit
came from the (sender-chosen) image shape. Here the bomb is a genuinely signed envelope whose container is
1 GiB of zeros (about 1 MB compressed); peak memory while opening it is measured.
"""

from __future__ import annotations

import tracemalloc
import zlib

import pytest
from pipeline_samples import GATEWAY, PINNED

from gateway import codecs
from gateway.container import ContainerError, inflate
from gateway.crypto.envelope import Sealer
from gateway.errors import OpenError
from gateway.pipeline import container_limit, open_
from gateway.rng import SeededRandom

BOMB_BYTES = 1 << 30


def _zeros_stream(n_mib: int) -> bytes:
    """A valid zlib stream of n MiB of zeros, built fast: after a full flush each 1 MiB block compresses to the
    same bytes, so one is repeated; the trailer carries the Adler-32 of the whole."""
    block = bytes(1 << 20)
    deflate = zlib.compressobj(9)
    head = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    middle = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    tail = deflate.flush()
    adler = 1
    for _ in range(n_mib):
        adler = zlib.adler32(block, adler)
    return head + middle * (n_mib - 1) + tail[:-4] + adler.to_bytes(4, "big")


@pytest.fixture(scope="module")
def bomb(recipient) -> bytes:  # type: ignore[no-untyped-def]
    stream = _zeros_stream(BOMB_BYTES >> 20)
    assert len(stream) < 2 << 20
    # A real bomb, not a broken stream: it inflates past every limit used below.
    assert container_limit(codecs.DEFAULT_LIMITS) < 256 << 20
    with pytest.raises(ContainerError, match="larger than the limit"):
        inflate(stream, 256 << 20)
    return Sealer(recipient[1], GATEWAY, "aes-256-siv", rng=SeededRandom(b"bomb")).seal(
        stream, compression="zlib"
    ).envelope


def _peak_while_opening(envelope: bytes, private_key, limits: codecs.Limits) -> int:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        with pytest.raises(OpenError):
            open_(envelope, private_key, gateways=PINNED, limits=limits)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "limits",
    [codecs.Limits(max_bytes=1 << 20, max_pixels=1 << 20, max_side=1024), codecs.DEFAULT_LIMITS],
    ids=["small-limits", "default-limits"],
)
def test_decompression_bomb_stays_within_the_configured_limit(bomb: bytes, recipient, limits) -> None:  # type: ignore[no-untyped-def]
    peak = _peak_while_opening(bomb, recipient[0], limits)
    bound = container_limit(limits)
    assert bound < BOMB_BYTES // 4
    # The inflated bytes stop one step (1 MiB) past the limit; the rest is the envelope and its plaintext.
    assert peak < bound * 1.3 + 3 * len(bomb) + (4 << 20), f"peak {peak / 2**20:.1f} MiB, limit {bound / 2**20:.1f} MiB"


@pytest.fixture(scope="module")
def zstd_bomb(recipient) -> bytes:  # type: ignore[no-untyped-def]
    """A signed envelope whose `shuffle2-zstd` container is 1 GiB of zeros (a streamed frame, about 32 KB)."""
    import zstandard

    deflate = zstandard.ZstdCompressor(level=1).compressobj()
    block = bytes(1 << 20)
    stream = b"".join(deflate.compress(block) for _ in range(BOMB_BYTES >> 20)) + deflate.flush()
    assert len(stream) < 1 << 20
    return Sealer(recipient[1], GATEWAY, "aes-256-siv", rng=SeededRandom(b"zstd-bomb")).seal(
        stream, compression="shuffle2-zstd"
    ).envelope


def test_zstd_bomb_stays_within_the_configured_limit(zstd_bomb: bytes, recipient) -> None:  # type: ignore[no-untyped-def]
    limits = codecs.Limits(max_bytes=1 << 20, max_pixels=1 << 20, max_side=1024)
    peak = _peak_while_opening(zstd_bomb, recipient[0], limits)
    bound = container_limit(limits)
    assert peak < bound * 1.3 + 3 * len(zstd_bomb) + (4 << 20), (
        f"peak {peak / 2**20:.1f} MiB, limit {bound / 2**20:.1f} MiB"
    )
