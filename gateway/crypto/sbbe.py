"""SBBE: the paper's evolutionary Blowfish cipher (eqs. 16-24), made sound (DESIGN.md §4).

From the per-message secret S (see `gateway.crypto.envelope`):

- a population of public 16-byte *genomes* g_i; candidate key K_i = HKDF(S, info="sbbe/candidate" ‖ g_i),
  56 bytes (Blowfish-448). Genomes are public; key material never appears in them (eq. 16);
- each candidate encrypts a small sample of the image and its ciphertext is scored on entropy, adjacent-byte
  correlation, NPCR and UACI (eqs. 17-18);
- new genomes come from recombination g_a ⊕ rot(g_b, r) (eq. 19), block mutation (eq. 20) and injection of
  Trunc(SHA-256(message id ‖ fresh randomness)) (eq. 21); parents and offspring compete, the top N survive
  (eq. 22); after G generations the best genome gives K* (eq. 23);
- the image is encrypted under K* SIV-style (eq. 24): tag = HMAC-SHA256(HKDF(K*, "sbbe/mac"), aad ‖ plaintext),
  K_img = HKDF(K*, "sbbe/enc" ‖ tag), body = Blowfish-CTR(K_img, 64-bit counter from 0)(plaintext).

All candidates are PRF outputs of S, so the search adds no strength; it costs a few milliseconds, can be
reduced to N=1, G=0, and its fitness trace is reported. All randomness comes from the injected `rng`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

import numpy as np
from Crypto.Cipher import Blowfish

from gateway.crypto.kdf import hkdf_expand, hkdf_extract
from gateway.errors import InputError, OpenError
from gateway.reasons import Reason
from gateway.rng import RandomSource

SUITE = "sbbe-blowfish"
GENOME_BYTES = 16
KEY_BYTES = 56  # Blowfish's largest key: 448 bits
TAG_BYTES = 32
BLOCK_BYTES = 8
MAX_BLOCKS = 1 << 26  # 64-bit block: at most 2^26 blocks (512 MiB) under one K_img
MAX_PLAINTEXT_BYTES = MAX_BLOCKS * BLOCK_BYTES

INFO_CANDIDATE = b"sbbe/candidate"
INFO_MAC = b"sbbe/mac"
INFO_ENC = b"sbbe/enc"

MUTATION_BLOCK_BYTES = 4
INJECTION_BYTES = 8
# Ideal values for uniformly random bytes: NPCR = 1 - 1/256, UACI = E|X-Y|/255 = (256^2-1)/(3*256*255).
IDEAL_NPCR = 1.0 - 1.0 / 256.0
IDEAL_UACI = (256.0 * 256.0 - 1.0) / (3.0 * 256.0 * 255.0)


SEARCH_BOUNDS: dict[str, tuple[int, int]] = {
    "population": (1, 256),
    "generations": (0, 64),
    "offspring": (1, 256),
    "sample_side": (2, 512),
}
"""Inclusive bounds of each search setting: `SearchParams`, the configuration and an envelope's header obey
the same ones."""


@dataclass(frozen=True)
class SearchParams:
    """Search settings.

    `population` N (paper: 20-50), `generations` G, `offspring` new genomes per generation (None: N/2,
    rounded up), `sample_side`: the fitness sample is the central crop of at most side×side pixels. The
    defaults (20, 1, 6, 32) score 26 candidates; each costs two Blowfish key schedules (about 0.03 ms each on
    a 2-core EPYC), which dominate: about 5.5 ms a search. One generation keeps the population at the
    paper's lower bound (N 20-50) and every operator in play; three generations (50 candidates) took 12-14 ms
    under daemon load, and with 10 offspring (30 candidates) the seal took 10.4 ms p50 in the daemon's bursts
    (benchmarks/results/daemon-s5), above the 10 ms aim. Opening needs only the genome, so envelopes sealed
    with any settings open.
    """

    population: int = 20
    generations: int = 1
    offspring: int | None = 6
    sample_side: int = 32

    def __post_init__(self) -> None:
        for name, (low, high) in SEARCH_BOUNDS.items():
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise ValueError(f"{name} must be {low}..{high}")

    @property
    def offspring_count(self) -> int:
        return (self.population + 1) // 2 if self.offspring is None else self.offspring


@dataclass(frozen=True)
class GenerationStats:
    """Fitness of the surviving population after one generation (generation 0: the initial population)."""

    generation: int
    best: float
    mean: float


@dataclass(frozen=True)
class SearchResult:
    """The winning genome, its fitness, the per-generation trace and how many candidates were scored."""

    genome: bytes
    fitness: float
    trace: list[GenerationStats] = field(default_factory=list)
    evaluations: int = 0
    sample_shape: tuple[int, int] = (0, 0)


# --------------------------------------------------------------------------------------------------------
# Keys and the SIV-style cipher (eq. 24)


def candidate_key(secret: bytes, genome: bytes) -> bytes:
    """K_i = HKDF(S, info="sbbe/candidate" ‖ g_i), 56 bytes."""
    return _candidate_key(hkdf_extract(b"", secret), genome)


def _candidate_key(secret_prk: bytes, genome: bytes) -> bytes:
    """`candidate_key` from S's HKDF-Extract, which every candidate of a search shares."""
    if len(genome) != GENOME_BYTES:
        raise ValueError("a genome is 16 bytes")
    return hkdf_expand(secret_prk, INFO_CANDIDATE + genome, KEY_BYTES)


# The MAC key and K_img are HKDF(K*, ...) with one salt (none), so both expand one HKDF-Extract of K*: the
# search seals two samples per candidate and extracts once for its three keys.


def _mac_key(k_prk: bytes) -> bytes:
    return hkdf_expand(k_prk, INFO_MAC, 32)


def _ctr(k_prk: bytes, tag: bytes):  # type: ignore[no-untyped-def]
    k_img = hkdf_expand(k_prk, INFO_ENC + tag, KEY_BYTES)
    # Empty nonce: the whole 64-bit block is the big-endian counter, starting at 0.
    return Blowfish.new(k_img, Blowfish.MODE_CTR, nonce=b"", initial_value=0)


def _tag(mac_key: bytes, aad: bytes, plaintext: bytes) -> bytes:
    if not aad:  # the search's samples: the one-shot C HMAC, without the hmac object's Python layers
        return hmac.digest(mac_key, plaintext, "sha256")
    mac = hmac.new(mac_key, aad, "sha256")
    mac.update(plaintext)  # no concatenated copy of a large plaintext
    return mac.digest()


def _check_length(n: int) -> None:
    if n > MAX_PLAINTEXT_BYTES:
        raise InputError(
            Reason.TOO_LARGE, f"SBBE refuses more than 2^26 Blowfish blocks ({MAX_PLAINTEXT_BYTES} bytes) per key"
        )


def encrypt(k_star: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    """(tag, body) for `plaintext` under K*, with `aad` authenticated but not encrypted."""
    _check_length(len(plaintext))
    k_prk = hkdf_extract(b"", k_star)
    return _seal(k_prk, _mac_key(k_prk), aad, plaintext)


def _seal(k_prk: bytes, mac_key: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    tag = _tag(mac_key, aad, plaintext)
    body: bytes = _ctr(k_prk, tag).encrypt(plaintext)
    return tag, body


def decrypt(k_star: bytes, aad: bytes, tag: bytes, body: bytes) -> bytes:
    """The plaintext, or OpenError if the tag does not match (checked in constant time)."""
    if len(tag) != TAG_BYTES or len(body) > MAX_PLAINTEXT_BYTES:
        raise OpenError()
    k_prk = hkdf_extract(b"", k_star)
    plaintext: bytes = _ctr(k_prk, tag).decrypt(body)
    expected = _tag(_mac_key(k_prk), aad, plaintext)
    if not hmac.compare_digest(expected, tag):
        raise OpenError()
    return plaintext


# --------------------------------------------------------------------------------------------------------
# The sample and the fitness (eqs. 17-18)


def sample_matrix(sample: np.ndarray | bytes, side: int) -> np.ndarray:
    """The bytes the fitness is measured on, as a 2-D uint8 matrix.

    An image array: its central crop of at most side×side pixels, each pixel as little-endian bytes side by
    side (a uint16 64×64 crop becomes 64×128 bytes). Raw bytes: the first side² bytes in rows of `side`.
    """
    if isinstance(sample, (bytes, bytearray, memoryview)):
        raw = np.frombuffer(bytes(sample[: side * side]), dtype=np.uint8)
        if raw.size == 0:
            return np.zeros((1, 1), dtype=np.uint8)
        rows = max(1, raw.size // side)
        width = side if raw.size >= side else raw.size
        return raw[: rows * width].reshape(rows, width).copy()
    arr = np.asarray(sample)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    elif arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], -1)
    if arr.size == 0 or arr.dtype.kind not in "uif":
        raise InputError(Reason.BAD_SAMPLE, "the SBBE sample must be a non-empty numeric array")
    h, w = arr.shape
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    crop = arr[top : top + side, left : left + side]
    crop = np.ascontiguousarray(crop, dtype=crop.dtype.newbyteorder("<"))
    return crop.view(np.uint8).reshape(crop.shape[0], -1).copy()


def _flip_one(matrix: np.ndarray) -> np.ndarray:
    """The sample with the least significant bit of its central byte flipped (the differential probe)."""
    other = matrix.copy()
    other[matrix.shape[0] // 2, matrix.shape[1] // 2] ^= 1
    return other


def _entropy(c: np.ndarray) -> np.ndarray:
    m = c.shape[0]
    # Candidate i's bytes count in bins 256*i..256*i+255 of one histogram. The offsets are added in the
    # narrowest type that holds them: widening the bytes to intp first took 0.6 of 0.7 ms for 20 candidates.
    wide = np.dtype(np.uint16 if m <= 256 else np.uint32)
    flat = c.reshape(m, -1).astype(wide) + (np.arange(m, dtype=wide) * wide.type(256))[:, None]
    counts = np.bincount(flat.ravel(), minlength=m * 256).reshape(m, 256).astype(np.float64)
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p), 0.0)
    entropy: np.ndarray = -terms.sum(axis=1)
    return entropy


def _abs_correlation(n: int, sx: np.ndarray, sy: np.ndarray, sxy: np.ndarray, sxx: np.ndarray, syy: np.ndarray,
                     ) -> np.ndarray:
    """|Pearson correlation| per candidate from the sums over `n` pairs; an undefined one (constant data) counts
    as 1, the worst."""
    cov = sxy - sx * sy / n
    vx = sxx - sx * sx / n
    vy = syy - sy * sy / n
    den = np.sqrt(np.maximum(vx, 0.0) * np.maximum(vy, 0.0))
    ok = den > 1e-9
    r = np.where(ok, cov / np.where(ok, den, 1.0), 1.0)
    return np.abs(r)


def _adjacent_correlations(c: np.ndarray) -> list[np.ndarray]:
    """|correlation| of horizontally, vertically and diagonally adjacent bytes (those the shape allows) per
    candidate of (M, h, w) uint8.

    Every sum is of integers below 2^53, so float64 holds it exactly whatever the order of summation: the sums
    over a shifted view are the whole matrix's less its edge rows and columns, and only the cross products need
    a pass per direction (5 passes over the data instead of 15, the same values)."""
    m, h, w = c.shape
    f = c.astype(np.float64)
    q = f * f
    s, sq = f.sum(axis=(1, 2)), q.sum(axis=(1, 2))
    first_row, last_row = f[:, 0, :].sum(axis=1), f[:, -1, :].sum(axis=1)
    first_col, last_col = f[:, :, 0].sum(axis=1), f[:, :, -1].sum(axis=1)
    q_first_row, q_last_row = q[:, 0, :].sum(axis=1), q[:, -1, :].sum(axis=1)
    q_first_col, q_last_col = q[:, :, 0].sum(axis=1), q[:, :, -1].sum(axis=1)
    out = []
    if w > 1:  # x = every column but the last, y = every column but the first
        sxy = np.einsum("mij,mij->m", f[:, :, :-1], f[:, :, 1:])
        out.append(_abs_correlation(h * (w - 1), s - last_col, s - first_col, sxy, sq - q_last_col,
                                    sq - q_first_col))
    if h > 1:
        sxy = np.einsum("mij,mij->m", f[:, :-1, :], f[:, 1:, :])
        out.append(_abs_correlation((h - 1) * w, s - last_row, s - first_row, sxy, sq - q_last_row,
                                    sq - q_first_row))
    if h > 1 and w > 1:  # x drops the last row and column, y the first: the shared corner comes back once
        sxy = np.einsum("mij,mij->m", f[:, :-1, :-1], f[:, 1:, 1:])
        sx = s - last_row - last_col + f[:, -1, -1]
        sy = s - first_row - first_col + f[:, 0, 0]
        sxx = sq - q_last_row - q_last_col + q[:, -1, -1]
        syy = sq - q_first_row - q_first_col + q[:, 0, 0]
        out.append(_abs_correlation((h - 1) * (w - 1), sx, sy, sxy, sxx, syy))
    return out


def fitness_batch(c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Scores in [0, 1] (1 = ideal random cipher) for M candidates' ciphertexts of the sample (`c1`) and of
    the one-byte-changed sample (`c2`), both (M, h, w) uint8.

    score = mean of: entropy / 8; 1 - mean |adjacent correlation| (horizontal, vertical, diagonal, those the
    sample's shape allows); NPCR / ideal NPCR; 1 - |UACI - ideal UACI| / ideal UACI.
    """
    entropy = _entropy(c1) / 8.0
    corrs = _adjacent_correlations(c1)
    corr = np.mean(corrs, axis=0) if corrs else np.ones(c1.shape[0])
    m = c1.shape[0]
    a = c1.reshape(m, -1)
    b = c2.reshape(m, -1)
    npcr = (a != b).mean(axis=1)
    uaci = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=1) / 255.0
    parts = np.stack(
        [
            entropy,
            1.0 - corr,
            np.minimum(npcr / IDEAL_NPCR, 1.0),
            np.clip(1.0 - np.abs(uaci - IDEAL_UACI) / IDEAL_UACI, 0.0, 1.0),
        ]
    )
    fitness: np.ndarray = parts.mean(axis=0)
    return fitness


def _score(secret: bytes, genomes: list[bytes], sample: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """Encrypt the sample and its one-byte-changed twin under each candidate with the real cipher; score.

    The cipher is `_seal`'s, written out for many small messages: the CTR keystream is Blowfish-ECB of the
    big-endian block counters, XORed with the messages in one numpy pass for all candidates. Building a CTR
    cipher object per message cost more than the key schedule it wraps."""
    s1, s2 = sample.tobytes(), probe.tobytes()
    blocks = -(-len(s1) // BLOCK_BYTES)
    counters = np.arange(blocks, dtype=">u8").tobytes()
    secret_prk = hkdf_extract(b"", secret)
    streams = []
    for genome in genomes:
        k_prk = hkdf_extract(b"", _candidate_key(secret_prk, genome))
        mk = _mac_key(k_prk)
        for message in (s1, s2):
            k_img = hkdf_expand(k_prk, INFO_ENC + _tag(mk, b"", message), KEY_BYTES)
            streams.append(Blowfish.new(k_img, Blowfish.MODE_ECB).encrypt(counters))
    keystream = np.frombuffer(b"".join(streams), dtype=np.uint8).reshape(len(genomes), 2, -1)[:, :, : len(s1)]
    c1 = (keystream[:, 0] ^ sample.reshape(-1)).reshape((len(genomes),) + sample.shape)
    c2 = (keystream[:, 1] ^ probe.reshape(-1)).reshape((len(genomes),) + sample.shape)
    # Rounded so that summation-order differences between numpy builds cannot reorder candidates.
    return np.round(fitness_batch(c1, c2), 9)


# --------------------------------------------------------------------------------------------------------
# Genome operators (eqs. 19-21)


def _randbelow(rng: RandomSource, n: int) -> int:
    """Uniform integer in [0, n) from `rng` (rejection sampling, no modulo bias)."""
    if n <= 1:
        return 0
    limit = (1 << 32) - ((1 << 32) % n)
    while True:
        v = int.from_bytes(rng(4), "big")
        if v < limit:
            return v % n


def rotate(genome: bytes, r: int) -> bytes:
    """Rotate a 128-bit genome left by r bits."""
    bits = GENOME_BYTES * 8
    v = int.from_bytes(genome, "big")
    r %= bits
    v = ((v << r) | (v >> (bits - r))) & ((1 << bits) - 1)
    return v.to_bytes(GENOME_BYTES, "big")


def recombine(a: bytes, b: bytes, r: int) -> bytes:
    """Eq. 19: g_a ⊕ rot(g_b, r)."""
    return bytes(x ^ y for x, y in zip(a, rotate(b, r), strict=True))


def mutate(genome: bytes, blocks: int, mask: bytes) -> bytes:
    """Eq. 20: XOR the 4-byte blocks selected by the bits of `blocks` with the matching bytes of `mask`."""
    out = bytearray(genome)
    for blk in range(GENOME_BYTES // MUTATION_BLOCK_BYTES):
        if blocks >> blk & 1:
            for j in range(blk * MUTATION_BLOCK_BYTES, (blk + 1) * MUTATION_BLOCK_BYTES):
                out[j] ^= mask[j]
    return bytes(out)


def inject(genome: bytes, pos: int, message_id: bytes, fresh: bytes) -> bytes:
    """Eq. 21: replace 8 bytes at `pos` with Trunc_8(SHA-256(message id ‖ fresh randomness))."""
    seed = hashlib.sha256(message_id + fresh).digest()[:INJECTION_BYTES]
    return genome[:pos] + seed + genome[pos + INJECTION_BYTES :]


def _offspring(population: list[bytes], message_id: bytes, rng: RandomSource) -> bytes:
    op = _randbelow(rng, 4)  # recombination 1/2, mutation 1/4, injection 1/4
    parent = population[_randbelow(rng, len(population))]
    if op < 2:
        other = population[_randbelow(rng, len(population))]
        return recombine(parent, other, 1 + _randbelow(rng, GENOME_BYTES * 8 - 1))
    if op == 2:
        blocks = rng(1)[0] & 0x0F or 1 << _randbelow(rng, GENOME_BYTES // MUTATION_BLOCK_BYTES)
        return mutate(parent, blocks, rng(GENOME_BYTES))
    pos = _randbelow(rng, GENOME_BYTES - INJECTION_BYTES + 1)
    return inject(parent, pos, message_id, rng(16))


# --------------------------------------------------------------------------------------------------------
# The search (eqs. 16, 22, 23)


def search(
    secret: bytes,
    sample: np.ndarray | bytes,
    message_id: bytes,
    params: SearchParams,
    rng: RandomSource,
) -> SearchResult:
    """Run the evolutionary search; returns the best genome (K* = candidate_key(S, genome))."""
    matrix = sample_matrix(sample, params.sample_side)
    probe = _flip_one(matrix)
    n = params.population
    genomes = [rng(GENOME_BYTES) for _ in range(n)]  # eq. 16
    scores = list(_score(secret, genomes, matrix, probe))
    evaluations = len(genomes)
    order = sorted(range(len(genomes)), key=lambda i: -scores[i])
    genomes = [genomes[i] for i in order]
    scores = [scores[i] for i in order]
    trace = [GenerationStats(0, float(scores[0]), float(np.mean(scores)))]
    for gen in range(1, params.generations + 1):
        seen = set(genomes)
        children: list[bytes] = []
        for _ in range(params.offspring_count):
            child = _offspring(genomes, message_id, rng)
            if child not in seen:  # an identical genome is the identical key: nothing new to score
                seen.add(child)
                children.append(child)
        if children:
            genomes += children
            scores += list(_score(secret, children, matrix, probe))
            evaluations += len(children)
        # Eq. 22: top N; stable sort keeps the earlier (older) genome on ties.
        order = sorted(range(len(genomes)), key=lambda i: -scores[i])[:n]
        genomes = [genomes[i] for i in order]
        scores = [scores[i] for i in order]
        trace.append(GenerationStats(gen, float(scores[0]), float(np.mean(scores))))
    return SearchResult(
        genome=genomes[0],
        fitness=float(scores[0]),
        trace=trace,
        evaluations=evaluations,
        sample_shape=(int(matrix.shape[0]), int(matrix.shape[1])),
    )
