"""`medshield quarantine list|show|release`: a released input goes back through the spool and is delivered."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from gateway.cli import main as cli
from gateway.config import load_config
from gateway.daemon import Gateway
from gateway.errors import InputError
from gateway.reasons import Reason
from tests.broker.helpers import Collector, Tagged, TaggingProtect, publish_all, untag

TOPIC = "medshield/scanners/ct3/images"


class RejectsUntilFixed(TaggingProtect):
    """Quarantines every input while `broken` (as a codec bug or a missing model would), then protects."""

    broken = True

    def __call__(self, data: bytes, *, message_id: str, source: Mapping[str, str]) -> list[Tagged]:
        if self.broken:
            raise InputError(Reason.UNSUPPORTED_TRANSFER_SYNTAX, "not supported (yet)")
        return super().__call__(data, message_id=message_id, source=source)


def _config(tmp_path: Path, scanner_port: int, cloud_port: int) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[gateway]
device_id = "gw-q"
state_dir = "{tmp_path / "state"}"
[inbound]
port = {scanner_port}
[cloud]
port = {cloud_port}
[telemetry]
port = 0
[limits]
# One worker quarantines slice A before slice B, the order the assertions name them in.
workers = 1
"""
    )
    return path


def test_release_reinjects_through_the_spool(tmp_path, scanner_broker, cloud_broker, capsys) -> None:  # type: ignore[no-untyped-def]
    path = _config(tmp_path, scanner_broker.port, cloud_broker.port)
    protect = RejectsUntilFixed()
    gw = Gateway(load_config(path), protect)
    gw.start()
    try:
        assert gw.wait_connected(10)
        collector = Collector(cloud_broker.port, ("medshield/gateways/+/#",), client_id="cq")
        publish_all(scanner_broker.port, [(TOPIC, b"slice A"), (TOPIC, b"slice B")])
        assert collector.wait_for(lambda: len(collector.on("/errors")) == 2)
        ids = [json.loads(e)["message_id"] for e in collector.on("/errors")]

        capsys.readouterr()
        assert cli(["quarantine", "--config", str(path), "list"]) == 0
        listed = capsys.readouterr().out.splitlines()
        assert [line.split()[0] for line in listed] == ids
        assert all("unsupported_transfer_syntax" in line for line in listed)
        assert cli(["quarantine", "--config", str(path), "show", ids[0]]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["topic"] == TOPIC and shown["size"] == len(b"slice A") and "slice A" not in json.dumps(shown)

        protect.broken = False
        assert cli(["quarantine", "--config", str(path), "release", ids[0]]) == 0
        assert collector.wait_for(lambda: len(collector.on("/envelopes")) == 1, 15)
        header, payload = untag(collector.on("/envelopes")[0])
        assert payload == b"slice A" and header["message_id"] == ids[0]  # the same keyed id as before
        assert [r.message_id for r in gw.quarantine.records()] == [ids[1]]
        assert cli(["quarantine", "--config", str(path), "release", "no-such-id"]) == 2
        collector.close()
    finally:
        gw.shutdown(flush_timeout_s=1)


def test_release_while_the_daemon_is_down_is_processed_at_the_next_start(
    tmp_path, scanner_broker, cloud_broker
) -> None:  # type: ignore[no-untyped-def]
    path = _config(tmp_path, scanner_broker.port, cloud_broker.port)
    protect = RejectsUntilFixed()
    gw = Gateway(load_config(path), protect)
    gw.start()
    assert gw.wait_connected(10)
    publish_all(scanner_broker.port, [(TOPIC, b"slice C")])
    assert Collector(cloud_broker.port, ("x/#",), client_id="noop").wait_for(lambda: len(gw.quarantine.records()) == 1)
    [record] = gw.quarantine.records()
    gw.shutdown(flush_timeout_s=1)
    assert cli(["quarantine", "--config", str(path), "release", record.message_id]) == 0
    collector = Collector(cloud_broker.port, ("medshield/gateways/+/envelopes",), client_id="cq2")
    protect.broken = False
    again = Gateway(load_config(path), protect)
    again.start()
    try:
        assert collector.wait_for(lambda: [untag(p)[1] for p in collector.on("/envelopes")] == [b"slice C"], 15)
        assert again.quarantine.records() == [] and again.spool.inbox() == []
    finally:
        again.shutdown(flush_timeout_s=1)
        collector.close()


@pytest.mark.parametrize("action", [["list"], ["show", "x"], ["release", "x"]])
def test_without_a_state_directory_it_says_so(tmp_path: Path, action: list[str], capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "g.toml"
    path.write_text(f'[gateway]\ndevice_id = "g"\nstate_dir = "{tmp_path / "none"}"\n')
    assert cli(["quarantine", "--config", str(path), *action]) == 2
    assert "no quarantine here" in capsys.readouterr().err
