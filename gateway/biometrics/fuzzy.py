"""Binarisation of MSE-Net embeddings and a code-offset fuzzy extractor (numpy only).

Binarisation. Each modality's key features are rotated by a random orthogonal matrix Q drawn from a
per-profile public seed, and the sign of each rotated coordinate is one bit. Because Q is orthogonal,
selecting the *reliable* coordinates (largest |mean| / spread over several enrolment captures) reveals only
which coordinates have large magnitude, not their signs, so the selection in the helper data does not give
away the bits. A non-orthogonal or overcomplete projection with magnitude-based selection would reveal the
embedding's direction outright (measured: with four rotations, the top eigenvector of the selected
directions lies at cosine 0.9 to the enrolment and reproduces its bits; models/msenet/MODEL_CARD.md). A new
seed gives a new, unlinkable template of the same person (revocation).

Code offset (Dodis et al.): at enrolment a random raw secret r (k bits) is encoded with an error-correcting
code C; the helper P = w ⊕ C(r) is public. At release, w' ⊕ P = C(r) ⊕ (w ⊕ w') is decoded back to r when w' is
close enough to w. Two codes, both decoded with soft decisions (the fresh capture's |coordinate| is the
confidence):

* `BchCode`: one BCH(63, k) word correcting t errors (`gateway.biometrics.bch`), Chase-II decoding over the
  `flips` least reliable bits. The decision it makes (at most t disagreeing bits outside the least reliable
  few) is close to a threshold on the distance between the enrolled and the fresh bits, which is what
  separates people best;
* `RmCode`: a concatenation of first-order Reed–Muller codes RM(1, m) (length 2^m, m + 1 message bits),
  each block decoded by a fast Hadamard transform (maximum likelihood); every block must decode, so one
  unlucky block refuses a genuine capture while a near-miss elsewhere lets an impostor through.

Selected bits are put in code-bit order by a public random permutation so that errors spread.

Selection really selects: a code may use at most `MAX_SELECTED_FRACTION` of the coordinates, so the n bits kept
are the most reliable of a larger set. The helper carries no commitment to r: `reproduce` always returns its
decoding, and whether that was the enrolled secret is decided only after r is stretched with Argon2id, by the
key-release service's verifier or the recipient's key id (`gateway.biometrics.keyrelease`). A commitment in
the profile would give whoever steals it an offline oracle for the biometric.
The code of each modality is chosen on validation identities (models/msenet/evaluate.py) and recorded in each
profile.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from gateway.biometrics import bch
from gateway.errors import BiometricError
from gateway.rng import RandomSource

MAX_SELECTED_FRACTION = 0.5


@dataclass(frozen=True)
class RmCode:
    """RM(1, m) blocks: n = blocks * 2^m code bits carry k = blocks * (m + 1) secret bits."""

    m: int
    blocks: int

    @property
    def n(self) -> int:
        return self.blocks * (1 << self.m)

    @property
    def k(self) -> int:
        return self.blocks * (self.m + 1)

    @property
    def label(self) -> str:
        return f"RM(1,{self.m}) x {self.blocks}"

    def check(self) -> None:
        if not (2 <= self.m <= 10 and 1 <= self.blocks <= 256):
            raise BiometricError("bad_profile", "fuzzy extractor code parameters out of range")

    def encode(self, secret: np.ndarray) -> np.ndarray:
        """Secret bits (k,) → code bits (n,)."""
        return rm_encode(secret.reshape(self.blocks, self.m + 1), self.m).reshape(-1)

    def decode(self, soft: np.ndarray) -> np.ndarray:
        """Soft values (batch, n), + meaning bit 0 → secret bits (batch, k)."""
        bits = rm_decode_soft(soft.reshape(-1, 1 << self.m), self.m)
        return bits.reshape(soft.shape[0], self.k)


@dataclass(frozen=True)
class BchCode:
    """One BCH(63, k) word correcting t errors; Chase-II decoding flips the `flips` least reliable bits."""

    t: int
    flips: int

    @property
    def n(self) -> int:
        return bch.N

    @property
    def k(self) -> int:
        return bch.CODES[self.t]

    @property
    def label(self) -> str:
        return f"BCH(63,{self.k}) t={self.t} chase {self.flips}"

    def check(self) -> None:
        if self.t not in bch.CODES or not 0 <= self.flips <= bch.MAX_FLIPS:
            raise BiometricError("bad_profile", "fuzzy extractor code parameters out of range")

    def encode(self, secret: np.ndarray) -> np.ndarray:
        """Secret bits (k,) → code bits (n,)."""
        return bch.encode(secret, self.t)

    def decode(self, soft: np.ndarray) -> np.ndarray:
        """Soft values (batch, n), + meaning bit 0 → secret bits (batch, k)."""
        return bch.decode_chase(soft, self.t, self.flips)


Code = RmCode | BchCode


@dataclass(frozen=True)
class Helper:
    """Public helper data of one enrolment (stored inside the encrypted profile)."""

    params: Code
    rotation_seed: bytes  # 32 bytes, public: seeds the orthogonal rotation Q
    selected: np.ndarray = field(repr=False)  # int (n,): rotated coordinates used, in code-bit order
    offset: np.ndarray = field(repr=False)  # uint8 bits (n,): w XOR C(r)


def rotation(seed: bytes, dim: int) -> np.ndarray:
    """A random orthogonal (dim x dim) matrix, deterministic from `seed` (SHAKE-256 → Gaussian → QR)."""
    q = _rotation(bytes(seed), int(dim))
    return q.copy()


@lru_cache(maxsize=64)
def _rotation(seed: bytes, dim: int) -> np.ndarray:
    raw = hashlib.shake_256(b"medshield/fe/rotation/v1" + seed + dim.to_bytes(4, "big")).digest(8 * dim * dim)
    u = (np.frombuffer(raw, "<u8") >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    u = u.reshape(2, -1)
    # Box–Muller from exact byte-derived uniforms: the same matrix on every platform and numpy version.
    r = np.sqrt(-2.0 * np.log1p(-u[0]))
    g = np.concatenate([r * np.cos(2 * np.pi * u[1]), r * np.sin(2 * np.pi * u[1])])[: dim * dim]
    q, rr = np.linalg.qr(g.reshape(dim, dim))
    return q * np.sign(np.diag(rr))[None, :]


def rm_encode(msg: np.ndarray, m: int) -> np.ndarray:
    """Encode (blocks, m+1) bits with RM(1, m): bit j of codeword = a0 ⊕ <a, binary(j)>."""
    j = np.arange(1 << m)
    basis = ((j[None, :] >> np.arange(m)[:, None]) & 1).astype(np.uint8)  # (m, 2^m)
    lin = (msg[:, 1:].astype(np.int64) @ basis.astype(np.int64)) & 1
    code: np.ndarray = (lin ^ msg[:, :1]).astype(np.uint8)
    return code


def _fht(x: np.ndarray) -> np.ndarray:
    """Fast Walsh–Hadamard transform along the last axis (length a power of two)."""
    x = x.astype(np.float64).copy()
    h = 1
    n = x.shape[-1]
    while h < n:
        y = x.reshape(*x.shape[:-1], n // (2 * h), 2, h)
        a, b = y[..., 0, :].copy(), y[..., 1, :].copy()
        y[..., 0, :], y[..., 1, :] = a + b, a - b
        x = y.reshape(*x.shape[:-1], n)
        h *= 2
    return x


def rm_decode_soft(soft: np.ndarray, m: int) -> np.ndarray:
    """Maximum-likelihood RM(1, m) decoding of (blocks, 2^m) soft values (+ means bit 0) → (blocks, m+1) bits."""
    spec = _fht(soft)
    idx = np.argmax(np.abs(spec), axis=1)
    a0 = (spec[np.arange(len(idx)), idx] < 0).astype(np.uint8)
    lin = ((idx[:, None] >> np.arange(m)[None, :]) & 1).astype(np.uint8)
    return np.concatenate([a0[:, None], lin], axis=1)


def bits_to_bytes(bits: np.ndarray) -> bytes:
    return np.packbits(bits.astype(np.uint8)).tobytes()


def rotated(features: np.ndarray, seed: bytes) -> np.ndarray:
    """Rotate feature vectors (rows) by the profile's orthogonal Q."""
    f = np.atleast_2d(np.asarray(features, np.float64))
    out: np.ndarray = f @ _rotation(bytes(seed), f.shape[1]).T
    return out


def generate(enrol_features: np.ndarray, params: Code, rng: RandomSource) -> tuple[bytes, Helper]:
    """Gen: from several enrolment feature vectors (rows) → (raw secret r as bytes, public helper P)."""
    params.check()
    feats = np.atleast_2d(np.asarray(enrol_features, np.float64))
    if feats.shape[0] < 1 or not np.all(np.isfinite(feats)):
        raise BiometricError("bad_capture", "enrolment features are empty or not finite")
    dim = feats.shape[1]
    if params.n > MAX_SELECTED_FRACTION * dim:
        raise BiometricError("bad_profile", f"code needs {params.n} bits: more than {MAX_SELECTED_FRACTION:.0%} of "
                                        f"the {dim} coordinates, so no selection would happen")
    seed = rng(32)
    z = rotated(feats, seed)
    mean = z.mean(axis=0)
    spread = z.std(axis=0) if feats.shape[0] > 1 else np.zeros(dim)
    # Reliability: how far the mean sits from the sign boundary relative to capture-to-capture variation.
    reliability = np.abs(mean) / (spread + 0.25 * np.abs(mean).mean() + 1e-12)
    best = np.argsort(-reliability, kind="stable")[: params.n]
    perm = np.frombuffer(rng(4 * params.n), "<u4").argsort(kind="stable")
    selected = best[perm].astype(np.int64)
    w = (mean[selected] < 0).astype(np.uint8)
    secret = np.unpackbits(np.frombuffer(rng((params.k + 7) // 8), np.uint8))[: params.k]
    code = params.encode(secret)
    helper = Helper(params=params, rotation_seed=seed, selected=selected, offset=(w ^ code).astype(np.uint8))
    return bits_to_bytes(secret), helper


def reproduce(features: np.ndarray, helper: Helper) -> bytes | None:
    """Rep: fresh feature vector(s) (averaged when several) + helper → the decoded r (None on a malformed
    helper). Decoding always yields some r; only the caller's check says whether it is the enrolled one."""
    p = helper.params
    p.check()
    feats = np.atleast_2d(np.asarray(features, np.float64))
    if not np.all(np.isfinite(feats)) or helper.selected.shape != (p.n,) or helper.offset.shape != (p.n,):
        return None
    if helper.selected.min(initial=0) < 0 or helper.selected.max(initial=0) >= feats.shape[1]:
        return None
    if len(np.unique(helper.selected)) != p.n:
        return None
    z = rotated(feats, helper.rotation_seed).mean(axis=0)[helper.selected]
    return bits_to_bytes(decode(z, helper))


def decode(z: np.ndarray, helper: Helper) -> np.ndarray:
    """Soft-decision decoding of rotated, selected coordinates `z` (..., n) → secret bits (..., k)."""
    p = helper.params
    fresh = (z < 0).astype(np.uint8)
    soft = np.where((fresh ^ helper.offset) == 0, 1.0, -1.0) * np.abs(z)
    lead = soft.shape[:-1]
    bits = p.decode(soft.reshape(-1, p.n))
    return bits.reshape(*lead, p.k)


def fractional_hamming(features_a: np.ndarray, features_b: np.ndarray, helper: Helper) -> float:
    """Bit-error rate between two captures on the helper's selected coordinates (evaluation only)."""
    za = rotated(features_a, helper.rotation_seed).mean(axis=0)[helper.selected]
    zb = rotated(features_b, helper.rotation_seed).mean(axis=0)[helper.selected]
    return float(np.mean((za < 0) != (zb < 0)))

