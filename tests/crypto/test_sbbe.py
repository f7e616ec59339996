from __future__ import annotations

import numpy as np
import pytest
from Crypto.Cipher import Blowfish

from gateway.crypto import sbbe
from gateway.crypto.kdf import hkdf
from gateway.errors import InputError, OpenError
from gateway.rng import SeededRandom

S = bytes(range(32))
MID = bytes(16)


def _image(side: int = 48) -> np.ndarray:
    y, x = np.mgrid[:side, :side]
    return (1000 + 3 * x + 2 * y).astype(np.uint16)


def test_candidate_key_is_hkdf_of_genome() -> None:
    g = bytes(range(16))
    assert sbbe.candidate_key(S, g) == hkdf(S, salt=b"", info=b"sbbe/candidate" + g, length=56)
    assert len(sbbe.candidate_key(S, g)) == 56


def test_encrypt_is_eq24() -> None:
    k = sbbe.candidate_key(S, bytes(16))
    tag, body = sbbe.encrypt(k, b"aad", b"plaintext bytes")
    import hmac

    mk = hkdf(k, salt=b"", info=b"sbbe/mac", length=32)
    assert tag == hmac.digest(mk, b"aad" + b"plaintext bytes", "sha256")
    k_img = hkdf(k, salt=b"", info=b"sbbe/enc" + tag, length=56)
    keystream = Blowfish.new(k_img, Blowfish.MODE_ECB).encrypt(b"".join(i.to_bytes(8, "big") for i in range(2)))
    assert body == bytes(a ^ b for a, b in zip(b"plaintext bytes", keystream, strict=False))
    assert sbbe.decrypt(k, b"aad", tag, body) == b"plaintext bytes"


def test_decrypt_rejects_changes() -> None:
    k = sbbe.candidate_key(S, bytes(16))
    tag, body = sbbe.encrypt(k, b"aad", b"x" * 100)
    with pytest.raises(OpenError):
        sbbe.decrypt(k, b"aaD", tag, body)
    with pytest.raises(OpenError):
        sbbe.decrypt(k, b"aad", tag, body[:-1] + bytes([body[-1] ^ 1]))
    with pytest.raises(OpenError):
        sbbe.decrypt(sbbe.candidate_key(S, b"\x01" * 16), b"aad", tag, body)


def test_one_byte_change_changes_whole_body() -> None:
    k = sbbe.candidate_key(S, bytes(16))
    plain = bytes(4096)
    _, b1 = sbbe.encrypt(k, b"", plain)
    _, b2 = sbbe.encrypt(k, b"", plain[:2000] + b"\x01" + plain[2001:])
    differ = np.mean(np.frombuffer(b1, np.uint8) != np.frombuffer(b2, np.uint8))
    assert differ > 0.98  # ideal 255/256; a stream cipher without SIV would differ in one byte


def test_refuses_more_than_2_pow_26_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sbbe.MAX_PLAINTEXT_BYTES == 2**26 * 8
    monkeypatch.setattr(sbbe, "MAX_PLAINTEXT_BYTES", 64)
    k = sbbe.candidate_key(S, bytes(16))
    sbbe.encrypt(k, b"", bytes(64))
    with pytest.raises(InputError) as err:
        sbbe.encrypt(k, b"", bytes(65))
    assert err.value.reason == "too_large"


def test_operators() -> None:
    a = bytes(range(16))
    assert sbbe.rotate(a, 0) == a and sbbe.rotate(a, 128) == a
    assert sbbe.rotate(sbbe.rotate(a, 5), 123) == a
    assert sbbe.rotate(b"\x80" + bytes(15), 1) == bytes(15) + b"\x01"
    assert sbbe.recombine(a, a, 8) == bytes(x ^ y for x, y in zip(a, a[1:] + a[:1], strict=False))
    m = sbbe.mutate(bytes(16), 0b0101, b"\xff" * 16)
    assert m == b"\xff" * 4 + bytes(4) + b"\xff" * 4 + bytes(4)
    inj = sbbe.inject(a, 3, MID, b"r" * 16)
    import hashlib

    assert inj[:3] == a[:3] and inj[11:] == a[11:]
    assert inj[3:11] == hashlib.sha256(MID + b"r" * 16).digest()[:8]


def test_fitness_prefers_random_ciphertext() -> None:
    rng = np.random.default_rng(0)
    good1 = rng.integers(0, 256, (1, 32, 32), dtype=np.uint8)
    good2 = rng.integers(0, 256, (1, 32, 32), dtype=np.uint8)
    ramp = np.tile(np.arange(32, dtype=np.uint8), (1, 32, 1))
    bad2 = ramp.copy()
    bad2[0, 0, 0] ^= 1
    scores = sbbe.fitness_batch(np.concatenate([good1, ramp]), np.concatenate([good2, bad2]))
    assert scores[0] > 0.95 and scores[1] < 0.6
    assert np.all((scores >= 0) & (scores <= 1))


def test_search_is_deterministic_and_traced() -> None:
    params = sbbe.SearchParams(population=6, generations=3, offspring=3, sample_side=16)
    r1 = sbbe.search(S, _image(), MID, params, SeededRandom(b"r"))
    r2 = sbbe.search(S, _image(), MID, params, SeededRandom(b"r"))
    r3 = sbbe.search(S, _image(), MID, params, SeededRandom(b"other"))
    assert r1 == r2 and r1.genome != r3.genome
    assert len(r1.trace) == 4 and [t.generation for t in r1.trace] == [0, 1, 2, 3]
    bests = [t.best for t in r1.trace]
    assert bests == sorted(bests)  # elitist: the best never gets worse
    assert all(t.mean <= t.best for t in r1.trace)
    assert r1.fitness == bests[-1]
    assert 6 < r1.evaluations <= 6 + 3 * 3
    assert r1.sample_shape == (16, 32)  # 16x16 uint16 pixels as bytes


def test_search_minimal_params() -> None:
    r = sbbe.search(S, b"", MID, sbbe.SearchParams(population=1, generations=0), SeededRandom(b"r"))
    assert r.evaluations == 1 and len(r.trace) == 1 and len(r.genome) == 16


@pytest.mark.parametrize(
    "sample",
    [np.zeros((1, 1), np.uint8), np.ones((3, 100), np.uint16), np.zeros(50, np.uint8), np.zeros((4, 4, 3), np.uint8),
     np.zeros((5, 5), bool), b"abc"],
)
def test_search_odd_samples(sample: object) -> None:
    r = sbbe.search(S, sample, MID, sbbe.SearchParams(population=2, generations=1), SeededRandom(b"r"))  # type: ignore[arg-type]
    assert 0.0 <= r.fitness <= 1.0


def test_bad_sample() -> None:
    with pytest.raises(InputError):
        sbbe.sample_matrix(np.zeros((0, 4)), 32)
    with pytest.raises(InputError):
        sbbe.sample_matrix(np.array([["a"]]), 32)


@pytest.mark.parametrize(
    "kw", [{"population": 0}, {"generations": -1}, {"offspring": 0}, {"sample_side": 1}, {"population": 257}]
)
def test_bad_params(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        sbbe.SearchParams(**kw)


def test_default_search_stays_in_the_papers_range_at_26_candidates() -> None:
    """The defaults bound the seal's cost by the number of candidates scored (two key schedules each), and the
    daemon's configuration defaults are the same settings."""
    from gateway.config import SBBEParams

    params = sbbe.SearchParams()
    assert 20 <= params.population <= 50  # BioMedShield's N
    sample = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    r = sbbe.search(S, sample, MID, params, SeededRandom(b"defaults"))
    assert r.evaluations <= 26 and len(r.trace) == params.generations + 1
    configured = SBBEParams().model_dump()
    assert sbbe.SearchParams(**{k: v for k, v in configured.items() if v is not None}) == params


def test_fitness_of_a_batch_is_each_candidates_own_at_any_batch_size() -> None:
    # 300 candidates: the histogram offsets need more than 16 bits; each row scores as it does alone.
    rng = np.random.default_rng(7)
    c1 = rng.integers(0, 256, (300, 8, 16), dtype=np.uint8)
    c2 = rng.integers(0, 256, (300, 8, 16), dtype=np.uint8)
    c1[5] = 0  # a constant ciphertext: zero entropy, undefined correlation
    batch = sbbe.fitness_batch(c1, c2)
    for i in (0, 5, 255, 256, 299):
        assert batch[i] == sbbe.fitness_batch(c1[i : i + 1], c2[i : i + 1])[0]


def test_adjacent_correlations_are_those_of_the_shifted_views() -> None:
    # The search takes the sums over each shifted view from the whole matrix's less its edges; this is the
    # direct definition, pair by pair.
    rng = np.random.default_rng(11)
    for shape in ((4, 32, 64), (3, 2, 5), (2, 7, 2), (5, 16, 16)):
        c = rng.integers(0, 256, shape, dtype=np.uint8)
        got = sbbe._adjacent_correlations(c)
        for i in range(shape[0]):
            f = c[i].astype(np.float64)
            pairs = [(f[:, :-1], f[:, 1:]), (f[:-1, :], f[1:, :]), (f[:-1, :-1], f[1:, 1:])]
            for direction, (x, y) in zip(got, pairs, strict=True):
                assert direction[i] == pytest.approx(abs(np.corrcoef(x.ravel(), y.ravel())[0, 1]), abs=1e-12)
    flat = np.zeros((1, 1, 9), np.uint8)
    flat[0, 0, ::2] = 255  # horizontal neighbours alternate: correlation -1, so |r| = 1; no vertical pairs
    (horizontal,) = sbbe._adjacent_correlations(flat)
    assert horizontal[0] == pytest.approx(1.0)
