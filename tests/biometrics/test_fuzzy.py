"""Fuzzy extractor: Reed–Muller soft decoding, code offset with both codes, reliable-bit selection, rotation."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.biometrics import fuzzy
from gateway.rng import SeededRandom


@pytest.mark.parametrize("m", [3, 4, 5, 6])
def test_rm_decodes_up_to_half_distance_minus_one(m: int) -> None:
    rng = np.random.default_rng(m)
    msg = rng.integers(0, 2, (20, m + 1)).astype(np.uint8)
    code = fuzzy.rm_encode(msg, m)
    t = (1 << (m - 2)) - 1  # d = 2^(m-1), corrects floor((d-1)/2) errors
    for row in code:
        flip = rng.choice(len(row), t, replace=False)
        row[flip] ^= 1
    soft = np.where(code == 0, 1.0, -1.0)
    assert np.array_equal(fuzzy.rm_decode_soft(soft, m), msg)


def test_rm_codewords_have_minimum_distance() -> None:
    m = 4
    msgs = np.array([[(i >> b) & 1 for b in range(m + 1)] for i in range(1 << (m + 1))], np.uint8)
    words = fuzzy.rm_encode(msgs, m)
    d = min(int((words[i] ^ words[j]).sum()) for i in range(len(words)) for j in range(i + 1, len(words)))
    assert d == 1 << (m - 1)


def test_rotation_is_orthogonal_and_deterministic() -> None:
    q = fuzzy.rotation(b"s" * 32, 64)
    assert np.allclose(q @ q.T, np.eye(64), atol=1e-10)
    assert np.array_equal(q, fuzzy.rotation(b"s" * 32, 64))
    assert not np.allclose(q, fuzzy.rotation(b"t" * 32, 64))


def _person(seed: int, dim: int = 256) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("params", [fuzzy.RmCode(m=5, blocks=4), fuzzy.BchCode(t=5, flips=4)], ids=lambda c: c.label)
def test_code_offset_releases_for_close_and_refuses_far_vectors(params: fuzzy.Code) -> None:
    base = _person(1)
    enrol = base + np.random.default_rng(2).normal(0, 0.02, (4, base.size))
    secret, helper = fuzzy.generate(enrol, params, SeededRandom(b"fe"))
    assert len(secret) * 8 >= params.k
    probe = base + np.random.default_rng(3).normal(0, 0.02, base.size)
    assert fuzzy.reproduce(probe, helper) == secret
    for other in range(100, 140):
        assert fuzzy.reproduce(_person(other), helper) != secret


@pytest.mark.parametrize("params", [fuzzy.RmCode(m=4, blocks=8), fuzzy.BchCode(t=3, flips=2)], ids=lambda c: c.label)
def test_altered_helper_does_not_reproduce(params: fuzzy.Code) -> None:
    base = _person(5)
    secret, helper = fuzzy.generate(np.stack([base] * 3), params, SeededRandom(b"fe2"))
    assert fuzzy.reproduce(base, helper) == secret
    import dataclasses

    # Flip 16 offset bits (a whole RM block; more than any BCH code here corrects): another codeword.
    offset = helper.offset.copy()
    offset[:16] ^= 1
    assert fuzzy.reproduce(base, dataclasses.replace(helper, offset=offset)) != secret
    sel = helper.selected.copy()
    sel[0] = 10_000
    assert fuzzy.reproduce(base, dataclasses.replace(helper, selected=sel)) is None
    sel = helper.selected.copy()
    sel[1] = sel[0]
    assert fuzzy.reproduce(base, dataclasses.replace(helper, selected=sel)) is None


def test_selection_keeps_the_most_reliable_coordinates_and_secret_random() -> None:
    params = fuzzy.RmCode(m=3, blocks=4)
    base = _person(9, 64)
    enrol = base + np.random.default_rng(4).normal(0, 0.05, (4, 64))
    s1, h1 = fuzzy.generate(enrol, params, SeededRandom(b"a"))
    s2, h2 = fuzzy.generate(enrol, params, SeededRandom(b"b"))
    assert s1 != s2 and h1.rotation_seed != h2.rotation_seed
    assert len(set(h1.selected.tolist())) == params.n == 32
    z = fuzzy.rotated(enrol, h1.rotation_seed)
    rel = np.abs(z.mean(0)) / (z.std(0) + 0.25 * np.abs(z.mean(0)).mean())
    unselected = np.setdiff1d(np.arange(64), h1.selected)
    assert rel[h1.selected].min() >= rel[unselected].max()


def test_a_code_must_leave_coordinates_unselected() -> None:
    from gateway.errors import BiometricError

    with pytest.raises(BiometricError):
        fuzzy.generate(np.stack([_person(1, 64)] * 3), fuzzy.RmCode(m=3, blocks=5), SeededRandom(b"c"))


def test_bch_code_refuses_a_probe_just_past_its_radius() -> None:
    """Bit errors on the selected coordinates: t (plus the Chase flips, on the weakest bits) still release,
    t + flips + 1 confident errors do not."""
    params = fuzzy.BchCode(t=4, flips=2)
    base = _person(21, 128)
    secret, helper = fuzzy.generate(np.stack([base] * 4), params, SeededRandom(b"radius"))
    q = fuzzy.rotation(helper.rotation_seed, 128)
    z = q @ base
    for errors, released in ((params.t, True), (params.t + params.flips + 1, False)):
        moved = z.copy()
        strongest = helper.selected[np.argsort(-np.abs(z[helper.selected]))[:errors]]
        moved[strongest] = -moved[strongest]
        assert (fuzzy.reproduce(q.T @ moved, helper) == secret) is released
