"""Real mosquitto brokers for the broker tests: generated config, free loopback port, persistence on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.broker import EmbeddedBroker, find_mosquitto
from gateway.config import GatewayConfig, parse_config


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.broker)


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator:
    find_mosquitto()
    started: list[EmbeddedBroker] = []

    def make(name: str, **kwargs: object) -> EmbeddedBroker:
        broker = EmbeddedBroker(persistence_dir=tmp_path / f"mosquitto-{name}", **kwargs).start()  # type: ignore[arg-type]
        started.append(broker)
        return broker

    yield make
    for broker in started:
        broker.close()


@pytest.fixture
def scanner_broker(mosquitto_factory) -> EmbeddedBroker:  # type: ignore[no-untyped-def]
    return mosquitto_factory("scanner")


@pytest.fixture
def cloud_broker(mosquitto_factory) -> EmbeddedBroker:  # type: ignore[no-untyped-def]
    return mosquitto_factory("cloud")


def gateway_config(tmp_path: Path, scanner_port: int, cloud_port: int, **sections: dict) -> GatewayConfig:
    """A config for a gateway between two test brokers, with fast reconnects and no telemetry port clash."""
    data: dict = {
        "gateway": {"device_id": "gw-test", "state_dir": str(tmp_path / "state")},
        "inbound": {"port": scanner_port, "reconnect_min_s": 1, "reconnect_max_s": 1, "keepalive_s": 10},
        "cloud": {"port": cloud_port, "reconnect_min_s": 1, "reconnect_max_s": 1, "keepalive_s": 10},
        "telemetry": {"port": 0},
        "spool": {"flush_timeout_s": 5},
    }
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return parse_config(data, environ={})



@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator:
    """`make(size_bytes)` mounts a tmpfs of that size (root only; skips cleanly otherwise) and returns it."""
    from tests.faults.disk import DiskUnavailable, TmpfsDisk

    mounted: list[TmpfsDisk] = []

    def make(size_bytes: int, name: str = "disk") -> Path:
        disk = TmpfsDisk(tmp_path / name, size_bytes)
        try:
            where = disk.__enter__()
        except DiskUnavailable as exc:
            pytest.skip(str(exc))
        mounted.append(disk)
        return where

    yield make
    for disk in mounted:
        disk.__exit__(None, None, None)
