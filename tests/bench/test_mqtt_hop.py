"""The benchmark's broker hop goes through a real mosquitto."""

from __future__ import annotations

import os

import pytest

from gateway.bench.mqtt import Hop, LocalBroker, find_mosquitto

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def broker():  # type: ignore[no-untyped-def]
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed (make mosquitto)")
    with LocalBroker() as b:
        yield b


def test_hop_delivers_exact_payloads_in_order(broker: LocalBroker) -> None:
    with Hop(broker.host, broker.port) as hop:
        for n in (0, 1, 1000, 300_000):
            payload = os.urandom(n)
            got, seconds, _ = hop.send(payload)
            assert got == payload
            assert 0 < seconds < 30


def test_broker_listens_on_loopback_only(broker: LocalBroker) -> None:
    assert broker.host == "127.0.0.1" and broker.port > 0
