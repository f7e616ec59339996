"""Suite `sbbe-blowfish`: the paper's evolutionary Blowfish cipher (gateway.crypto.sbbe; ENVELOPE.md §5)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway.crypto import sbbe
from gateway.crypto.suites import Prepared
from gateway.encoding import b64url_decode, b64url_encode
from gateway.rng import RandomSource

_FIELDS = {"genome", "population", "generations", "offspring", "sample_shape"}


def _is_int(v: Any, lo: int, hi: int) -> bool:
    return type(v) is int and lo <= v <= hi


class _Sbbe:
    name = sbbe.SUITE
    tag_bytes = sbbe.TAG_BYTES
    header_field: str | None = "sbbe"

    def prepare(
        self, secret: bytes, message_id: bytes, sample: np.ndarray | bytes, params: Any, rng: RandomSource
    ) -> Prepared:
        params = params if isinstance(params, sbbe.SearchParams) else sbbe.SearchParams()
        result = sbbe.search(secret, sample, message_id, params, rng)
        header = {
            "genome": b64url_encode(result.genome),
            "population": params.population,
            "generations": params.generations,
            "offspring": params.offspring_count,
            "sample_shape": list(result.sample_shape),
        }
        return Prepared(key=sbbe.candidate_key(secret, result.genome), header=header, report=result)

    def check_header(self, fields: Any) -> None:
        if not isinstance(fields, dict) or set(fields) != _FIELDS:
            raise ValueError("sbbe fields")
        if len(b64url_decode(fields["genome"])) != sbbe.GENOME_BYTES:
            raise ValueError("genome")
        shape = fields["sample_shape"]
        if not (
            all(_is_int(fields[name], *sbbe.SEARCH_BOUNDS[name]) for name in ("population", "generations", "offspring"))
            and isinstance(shape, list)
            and len(shape) == 2
            and all(_is_int(v, 1, 1 << 20) for v in shape)
        ):
            raise ValueError("search parameters")

    def key_for(self, secret: bytes, fields: Any) -> bytes:
        return sbbe.candidate_key(secret, b64url_decode(fields["genome"]))

    def encrypt(self, key: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        return sbbe.encrypt(key, aad, plaintext)

    def decrypt(self, key: bytes, aad: bytes, tag: bytes, body: bytes) -> bytes:
        return sbbe.decrypt(key, aad, tag, body)


SUITE = _Sbbe()
