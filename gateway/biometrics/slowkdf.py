"""Argon2id (RFC 9106, argon2-cffi): the one slow, memory-hard KDF of the biometric key model.

Two secrets with little entropy go through it, so that every offline guess costs an attacker one Argon2id
evaluation (tens of MiB of memory, about half a second on a 2-core x86 box):

- the profile passphrase (the key that seals the recipient profile), and
- the fuzzy extractor's raw biometric secret (the stretched value is R of eq. 15, and the key-release
  service's verifier is derived from R, so testing a guessed biometric against it costs an Argon2id too).

Defaults are RFC 9106 §4's second recommended option (t = 3 passes, m = 64 MiB, p = 4 lanes). Parameters are
recorded next to every output (profile header, profile body) and bounded when read back, so a tampered or
hostile file can neither weaken them below `MIN` nor make a reader allocate more than `MAX_MEMORY_KIB`.
Tests pass cheaper parameters explicitly; nothing in production lowers them.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2.low_level import Type, hash_secret_raw

from gateway.errors import BiometricError

MAX_MEMORY_KIB = 1 << 20  # 1 GiB: the most a profile may ask a workstation to allocate
MIN_MEMORY_KIB = 8  # argon2's own floor is 8 * p KiB; test parameters sit here
SALT_BYTES = 16


@dataclass(frozen=True)
class Argon2Params:
    """Argon2id cost: `t` passes over `m_kib` KiB of memory in `p` lanes."""

    t: int = 3
    m_kib: int = 64 * 1024
    p: int = 4

    def check(self) -> None:
        """BiometricError when outside what this implementation accepts (a hostile or corrupted record)."""
        if not (1 <= self.t <= 16 and 1 <= self.p <= 16 and 8 * self.p <= self.m_kib <= MAX_MEMORY_KIB
                and self.m_kib >= MIN_MEMORY_KIB):
            raise BiometricError("bad_profile", "Argon2id parameters out of range")

    def to_doc(self) -> dict[str, int | str]:
        return {"name": "argon2id", "version": 19, "t": self.t, "m_kib": self.m_kib, "p": self.p}

    @classmethod
    def from_doc(cls, doc: dict) -> Argon2Params:  # type: ignore[type-arg]
        """Parse and bound-check a recorded parameter set (BiometricError on anything else)."""
        try:
            if doc["name"] != "argon2id" or int(doc["version"]) != 19:
                raise BiometricError("bad_profile", "unsupported KDF")
            params = cls(t=int(doc["t"]), m_kib=int(doc["m_kib"]), p=int(doc["p"]))
        except (KeyError, TypeError, ValueError):
            raise BiometricError("bad_profile", "malformed KDF parameters") from None
        params.check()
        return params


DEFAULT = Argon2Params()
TEST_PARAMS = Argon2Params(t=1, m_kib=64, p=1)  # for tests only: fast, and far too weak for real use


def derive(secret: bytes, salt: bytes, params: Argon2Params, *, length: int = 32) -> bytes:
    """Argon2id(secret, salt) → `length` bytes; `salt` must be 16 bytes, `params` in range."""
    params.check()
    if len(salt) != SALT_BYTES:
        raise BiometricError("bad_profile", "Argon2id salt must be 16 bytes")
    return hash_secret_raw(bytes(secret), bytes(salt), time_cost=params.t, memory_cost=params.m_kib,
                           parallelism=params.p, hash_len=length, type=Type.ID, version=19)
