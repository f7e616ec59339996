"""BCH(63, k): known answers from an independent implementation, bounded-distance and Chase decoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gateway.biometrics import bch

VECTORS = json.loads((Path(__file__).parent / "data" / "bch63_vectors.json").read_text())["codes"]


def _bits(s: str) -> np.ndarray:
    return np.array([int(c) for c in s], np.uint8)


@pytest.mark.parametrize("code", VECTORS, ids=lambda c: f"t{c['t']}")
def test_generator_and_codewords_match_the_independent_vectors(code: dict) -> None:  # type: ignore[type-arg]
    t = code["t"]
    assert bch.CODES[t] == code["k"]
    assert "".join(map(str, bch.generator(t))) == code["generator_lowest_first"]
    for v in code["vectors"]:
        assert np.array_equal(bch.encode(_bits(v["message"]), t), _bits(v["codeword"]))


@pytest.mark.parametrize("code", VECTORS, ids=lambda c: f"t{c['t']}")
def test_decoding_matches_the_independent_vectors_within_and_beyond_t(code: dict) -> None:  # type: ignore[type-arg]
    t = code["t"]
    for v in code["vectors"]:
        fixed, ok = bch.decode_hard(_bits(v["within_t"])[None], t)
        assert ok[0] and np.array_equal(fixed[0], _bits(v["codeword"]))
        # t + 2 errors: the reference either fails or finds another codeword, never the sent one; so must we.
        fixed, ok = bch.decode_hard(_bits(v["beyond_t"])[None], t)
        assert not np.array_equal(bch.message(fixed[0], t), _bits(v["message"]))
        assert bool(ok[0]) == (v["beyond_t_galois_corrects"] >= 0)
        if ok[0]:
            assert np.array_equal(bch.message(fixed[0], t), _bits(v["beyond_t_galois_message"]))


@pytest.mark.parametrize("t", [2, 5, 10])
def test_bounded_distance_decoding_never_goes_past_t(t: int) -> None:
    rng = np.random.default_rng(t)
    msg = rng.integers(0, 2, (400, bch.CODES[t])).astype(np.uint8)
    sent = bch.encode(msg, t)
    for errors in (0, t, t + 1, 2 * t + 3):
        flip = np.zeros_like(sent)
        for row in flip:
            row[rng.choice(bch.N, errors, replace=False)] = 1
        fixed, ok = bch.decode_hard(sent ^ flip, t)
        if errors <= t:
            assert ok.all() and np.array_equal(fixed, sent)
        else:
            assert not np.all(fixed == sent, axis=1).any()
            assert ((fixed[ok] ^ (sent ^ flip)[ok]).sum(axis=1) <= t).all()


def _noisy(sent: np.ndarray, weak: int, strong: int, seed: int) -> np.ndarray:
    """Soft values of `sent` with `weak` barely-wrong and `strong` confidently wrong bits per word."""
    rng = np.random.default_rng(seed)
    soft = (1.0 - 2.0 * sent) * rng.uniform(0.5, 1.0, sent.shape)
    for s in soft:
        w = rng.choice(bch.N, weak, replace=False)
        st = rng.choice(np.setdiff1d(np.arange(bch.N), w), strong, replace=False)
        s[w] = -0.05 * np.sign(s[w])
        s[st] = -s[st]
    return soft


def test_chase_corrects_errors_on_the_least_reliable_bits_beyond_t() -> None:
    t, flips = 3, 4
    msg = np.random.default_rng(7).integers(0, 2, (200, bch.CODES[t])).astype(np.uint8)
    soft = _noisy(bch.encode(msg, t), weak=flips, strong=1, seed=8)  # 5 errors: more than t
    hard, _ = bch.decode_hard((soft < 0).astype(np.uint8), t)
    assert not np.all(bch.message(hard, t) == msg, axis=1).any()
    assert np.array_equal(bch.decode_chase(soft, t, flips), msg)


def test_chase_output_agrees_with_the_soft_values_at_least_as_well_as_the_sent_word() -> None:
    t, flips = 3, 4
    msg = np.random.default_rng(9).integers(0, 2, (200, bch.CODES[t])).astype(np.uint8)
    sent = bch.encode(msg, t)
    soft = _noisy(sent, weak=flips, strong=t, seed=10)  # often nearer another codeword: ML rightly picks it
    got = bch.encode(bch.decode_chase(soft, t, flips), t)
    assert np.all((soft * (1.0 - 2.0 * got)).sum(axis=1) >= (soft * (1.0 - 2.0 * sent)).sum(axis=1) - 1e-9)


def test_chase_without_flips_is_hard_decoding() -> None:
    t = 4
    rng = np.random.default_rng(3)
    soft = rng.normal(size=(300, bch.N))
    hard, _ = bch.decode_hard((soft < 0).astype(np.uint8), t)
    assert np.array_equal(bch.decode_chase(soft, t, 0), bch.message(hard, t))


def test_unknown_t_and_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError):
        bch.generator(8)
    with pytest.raises(ValueError):
        bch.decode_hard(np.zeros((2, 62), np.uint8), 3)
    with pytest.raises(ValueError):
        bch.decode_chase(np.zeros((2, 63)), 3, bch.MAX_FLIPS + 1)
