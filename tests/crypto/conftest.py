"""Small fixed recipients and sealers for the crypto tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.crypto.envelope import Sealer
from gateway.crypto.origin import GatewayKey, TrustedGateways
from gateway.crypto.recipients import PrivateKey, RecipientCard, generate_recipient
from gateway.crypto.sbbe import SearchParams
from gateway.rng import SeededRandom, fixed_clock

MID = "0b7e3f3a-8a2c-4f7e-9d1b-2c3d4e5f6a7b"
SMALL = SearchParams(population=4, generations=1, sample_side=8)
GATEWAY = GatewayKey.generate("gw-test", SeededRandom(b"gateway"))
GATEWAYS = TrustedGateways([GATEWAY.card])


@pytest.fixture(scope="session")
def alice() -> tuple[PrivateKey, RecipientCard]:
    return generate_recipient("alice", SeededRandom(b"alice"))


@pytest.fixture(scope="session")
def mallory() -> tuple[PrivateKey, RecipientCard]:
    return generate_recipient("mallory", SeededRandom(b"mallory"))


@pytest.fixture
def make_sealer(alice: tuple[PrivateKey, RecipientCard]) -> Callable[..., Sealer]:
    def make(suite: str = "sbbe-blowfish", seed: bytes = b"seed", **kw: object) -> Sealer:
        kw.setdefault("params", SMALL)
        return Sealer(
            alice[1], kw.pop("signer", GATEWAY), suite, kw.pop("message_id", MID),  # type: ignore[arg-type]
            rng=SeededRandom(seed), clock=fixed_clock(1_700_000_000_000_000_000), **kw,  # type: ignore[arg-type]
        )

    return make
