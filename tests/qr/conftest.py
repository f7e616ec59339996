"""Real inputs for the QR tests: recipient cards and keys from `medshield keygen`, envelopes from
`medshield protect` (the project's own path), and code images written by `medshield qr encode`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.cli import main


def _noise_png(path: Path, side: int, seed: int) -> None:
    # Noise does not compress, so the envelope's size follows the image's.
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)


@pytest.fixture(scope="session")
def recipient(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(alice.key, alice.card) written by `medshield keygen`."""
    d = tmp_path_factory.mktemp("keys")
    assert main(["keygen", "alice", "--out", str(d)]) == 0
    return d / "alice.key", d / "alice.card"


@pytest.fixture(scope="session")
def make_envelope(recipient: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[int, int], Path]:
    """An envelope of an image `side` pixels square, made by `medshield protect` (seeded, fixed mask)."""
    _, card = recipient
    d = tmp_path_factory.mktemp("envelopes")
    mask = d / "mask.png"
    assert main(["gateway-key", "--device-id", "gw-qr", "--key", str(d / "gw.key")]) == 0

    def make(side: int, seed: int) -> Path:
        img, env = d / f"img-{side}-{seed}.png", d / f"env-{side}-{seed}.msh"
        if not env.exists():
            _noise_png(img, side, seed)
            m = np.zeros((side, side), np.uint8)
            m[: side // 8, : side // 8] = 255
            assert cv2.imwrite(str(mask), m)
            # Noise has no air around a body: the paper's carrier rule (every non-lesion pixel) hides the payload.
            argv = ["protect", str(img), "-r", str(card), "-o", str(env), "--mask", str(mask), "--suite", "aes-256-siv",
                    "--carriers", "non-lesion", "--seed", f"{seed:08x}", "--testing-deterministic",
                    "--device-key", str(d / "gw.key"), "--device-id", "gw-qr"]
            assert main(argv) == 0
        return env

    return make


@pytest.fixture(scope="session")
def encode_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., list[Path]]:
    """Run `medshield qr encode` into a fresh directory; the code PNGs in index order."""

    def encode(path: Path, *extra: str) -> list[Path]:
        out = tmp_path_factory.mktemp("codes") / "codes"
        assert main(["qr", "encode", str(path), "-o", str(out), *extra]) == 0
        return sorted(out.glob("*.png"))

    return encode
