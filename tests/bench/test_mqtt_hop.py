"""The benchmark's broker hop goes through a real mosquitto (the daemon's embedded broker)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gateway.broker import EmbeddedBroker
from medshield_tools.bench.mqtt import Hop

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


def test_hop_delivers_exact_payloads_and_times_them(broker: EmbeddedBroker) -> None:
    with Hop(broker.host, broker.port) as hop:
        for n in (0, 1, 1000, 300_000):
            payload = os.urandom(n)
            got, seconds, delivered_at = hop.send(payload)
            assert got == payload
            assert 0 < seconds < 30 and delivered_at > 0


def test_hops_on_one_broker_do_not_see_each_other(broker: EmbeddedBroker) -> None:
    with Hop(broker.host, broker.port) as a, Hop(broker.host, broker.port) as b:
        assert a.prefix != b.prefix
        assert a.send(b"to a")[0] == b"to a"
        assert b.send(b"to b")[0] == b"to b"
