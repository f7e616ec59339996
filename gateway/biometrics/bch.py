"""Binary BCH codes of length 63 with batch decoding (numpy only).

Narrow-sense primitive BCH codes over GF(2^6) (primitive polynomial x^6 + x + 1), systematic: bit i of a
codeword is the coefficient of x^i; bits 0 .. n-k-1 are parity, bits n-k .. n-1 the message. `decode_hard` is
a bounded-distance decoder (syndromes, Berlekamp–Massey, Chien search): it returns the codeword within t bit
errors of the received word, or reports a failure; it never returns a codeword farther than t. `decode_chase`
adds soft decisions (Chase-II): the `flips` least reliable positions are flipped in every combination, each
trial is decoded with `decode_hard`, and of the codewords found the one that agrees best with the soft values
wins. Every operation runs on a batch of words at once, because the evaluation decodes millions of them.

Designed distances 2t + 1 give these (k, t); t values that land on the same code are not listed twice.
"""

from __future__ import annotations

from functools import cache

import numpy as np

N = 63
_M = 6
_PRIMITIVE = 0b1000011  # x^6 + x + 1
CODES = {1: 57, 2: 51, 3: 45, 4: 39, 5: 36, 6: 30, 7: 24, 10: 18, 11: 16, 13: 10, 15: 7}  # t -> k
MAX_FLIPS = 8
_CHUNK = 16_384


def _tables() -> tuple[np.ndarray, np.ndarray]:
    exp = np.zeros(2 * N, np.int64)
    x = 1
    for i in range(N):
        exp[i] = x
        x <<= 1
        if x & (1 << _M):
            x ^= _PRIMITIVE
    exp[N:] = exp[:N]
    log = np.zeros(N + 1, np.int64)
    log[exp[:N]] = np.arange(N)
    return exp, log


_EXP, _LOG = _tables()


def _mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.where((a == 0) | (b == 0), 0, _EXP[_LOG[a] + _LOG[b]])
    return out


def _inv(a: np.ndarray) -> np.ndarray:
    """Inverse of non-zero field elements (zero maps to zero; callers never divide by it)."""
    out: np.ndarray = np.where(a == 0, 0, _EXP[(N - _LOG[a]) % N])
    return out


@cache
def generator(t: int) -> np.ndarray:
    """Coefficients (lowest first, 0/1) of the generator polynomial of the t-error-correcting code."""
    if t not in CODES:
        raise ValueError(f"no BCH(63, k) code for t={t}; known t: {sorted(CODES)}")
    roots: set[int] = set()
    for j in range(1, 2 * t + 1):
        e = j % N
        while e not in roots:  # the cyclotomic coset of j: the conjugates of alpha^j
            roots.add(e)
            e = (2 * e) % N
    g = np.array([1], np.int64)
    for e in sorted(roots):  # g(x) = product of (x - alpha^e)
        shifted = np.concatenate([[0], g])
        scaled = np.concatenate([_mul(g, np.full_like(g, _EXP[e])), [0]])
        g = shifted ^ scaled
    if len(g) - 1 != N - CODES[t] or np.any(g > 1):
        raise AssertionError("BCH generator polynomial is not the expected binary polynomial")
    g.flags.writeable = False
    return g


@cache
def _parity_matrix(t: int) -> np.ndarray:
    """(k, n-k) 0/1: row j is the remainder of x^(n-k+j) modulo g(x), so parity = message @ P (mod 2)."""
    g = generator(t)
    k, r = CODES[t], N - CODES[t]
    rows = np.zeros((k, r), np.uint8)
    rem = np.zeros(r, np.int64)
    rem[-1] = 1  # x^(r-1); one more shift gives x^r
    for j in range(k):
        top = rem[-1]
        rem = np.concatenate([[0], rem[:-1]]) ^ (top * g[:r])
        rows[j] = rem
    rows.flags.writeable = False
    return rows


def encode(msg: np.ndarray, t: int) -> np.ndarray:
    """Systematic encoding of message bits (..., k) → codewords (..., 63)."""
    bits = np.asarray(msg, np.uint8)
    parity = (bits.astype(np.int64) @ _parity_matrix(t).astype(np.int64)) & 1
    out: np.ndarray = np.concatenate([parity.astype(np.uint8), bits], axis=-1)
    return out


def message(codewords: np.ndarray, t: int) -> np.ndarray:
    """The message bits (..., k) of codewords (..., 63)."""
    out: np.ndarray = np.asarray(codewords, np.uint8)[..., N - CODES[t]:]
    return out


@cache
def _syndrome_table(t: int) -> np.ndarray:
    """(n, 2t): alpha^(i*j) for position i and syndrome j = 1..2t."""
    i = np.arange(N)[:, None]
    j = np.arange(1, 2 * t + 1)[None, :]
    table: np.ndarray = _EXP[(i * j) % N]
    table.flags.writeable = False
    return table


def _syndromes(words: np.ndarray, t: int) -> np.ndarray:
    table = _syndrome_table(t)
    out = np.zeros((words.shape[0], 2 * t), np.int64)
    for i in range(N):
        out ^= words[:, i:i + 1].astype(np.int64) * table[i]
    return out


def _berlekamp_massey(s: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Error-locator polynomials (batch, 2t+1) and their lengths L from syndromes (batch, 2t)."""
    batch, size = s.shape[0], 2 * t + 1
    c = np.zeros((batch, size), np.int64)
    c[:, 0] = 1
    prev = c.copy()
    length = np.zeros(batch, np.int64)
    shift = np.ones(batch, np.int64)
    last = np.ones(batch, np.int64)
    cols = np.arange(size)[None, :]
    for r in range(2 * t):
        d = s[:, r].copy()
        for i in range(1, r + 1):
            d ^= _mul(c[:, i], s[:, r - i])
        src = cols - shift[:, None]
        shifted = np.where(src >= 0, np.take_along_axis(prev, np.clip(src, 0, None), axis=1), 0)
        updated = c ^ _mul(_mul(d, _inv(last))[:, None], shifted)
        nonzero = d != 0
        grow = nonzero & (2 * length <= r)
        prev = np.where(grow[:, None], c, prev)
        c = np.where(nonzero[:, None], updated, c)
        length = np.where(grow, r + 1 - length, length)
        last = np.where(grow, d, last)
        shift = np.where(grow, 1, shift + 1)
    return c, length


@cache
def _chien_table(t: int) -> np.ndarray:
    """(2t+1, n): alpha^(-i*j), to evaluate the locator at alpha^(-i) for every position i."""
    j = np.arange(2 * t + 1)[:, None]
    i = np.arange(N)[None, :]
    table: np.ndarray = _EXP[(-(i * j)) % N]
    table.flags.writeable = False
    return table


def decode_hard(words: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounded-distance decoding of received bits (batch, 63) → (codewords (batch, 63), ok (batch,)).

    Where ok is False the word is more than t errors from every codeword and is returned unchanged."""
    words = np.asarray(words, np.uint8)
    if words.ndim != 2 or words.shape[1] != N:
        raise ValueError("decode_hard wants (batch, 63) bits")
    out = words.copy()
    ok = np.zeros(words.shape[0], bool)
    for lo in range(0, words.shape[0], _CHUNK):
        w = words[lo:lo + _CHUNK]
        s = _syndromes(w, t)
        clean = np.logical_not(s.any(axis=1))
        locator, length = _berlekamp_massey(s, t)
        table = _chien_table(t)
        value = np.zeros((w.shape[0], N), np.int64)
        for j in range(2 * t + 1):
            value ^= _mul(locator[:, j:j + 1], table[j][None, :])
        errors = value == 0
        found = errors.sum(axis=1)
        fixed = w ^ errors.astype(np.uint8)
        good: np.ndarray = clean | ((found == length) & (length <= t) & ~_syndromes(fixed, t).any(axis=1))
        out[lo:lo + _CHUNK] = np.where(good[:, None] & ~clean[:, None], fixed, w)
        ok[lo:lo + _CHUNK] = good
    return out, ok


def decode_chase(soft: np.ndarray, t: int, flips: int) -> np.ndarray:
    """Chase-II soft-decision decoding of soft values (batch, 63), positive meaning bit 0, |value| the
    confidence → message bits (batch, k). Where no trial decodes, the hard decision's message bits."""
    soft = np.asarray(soft, np.float64)
    if soft.ndim != 2 or soft.shape[1] != N:
        raise ValueError("decode_chase wants (batch, 63) soft values")
    if not 0 <= flips <= MAX_FLIPS:
        raise ValueError(f"Chase decoding flips 0..{MAX_FLIPS} positions")
    batch = soft.shape[0]
    hard = (soft < 0).astype(np.uint8)
    weakest = np.argsort(np.abs(soft), axis=1, kind="stable")[:, :flips]
    best = hard.copy()
    best_score = np.full(batch, -np.inf)
    rows = np.arange(batch)[:, None]
    for pattern in range(1 << flips):
        trial = hard.copy()
        mask = np.array([(pattern >> b) & 1 for b in range(flips)], np.uint8)
        if flips:
            trial[rows, weakest] ^= mask[None, :]
        codeword, ok = decode_hard(trial, t)
        score = np.where(ok, (soft * (1.0 - 2.0 * codeword)).sum(axis=1), -np.inf)
        better = score > best_score
        best = np.where(better[:, None], codeword, best)
        best_score = np.where(better, score, best_score)
    return message(best, t)
