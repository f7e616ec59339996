"""Every log line is one valid JSON object: structlog's events and standard-library records (paho's too),
whatever quotes, newlines or exceptions they carry; paho's records name the link and the broker."""

from __future__ import annotations

import io
import json
import logging

import paho.mqtt.client as paho

from gateway.config import BrokerConfig
from gateway.logging import configure_logging, get_logger
from gateway.mqtt import MqttLink


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_stdlib_records_with_quotes_newlines_and_tracebacks_stay_json() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    logging.getLogger("some.library").warning('he said "stop"\nand left \\ %s', "now")
    try:
        raise ValueError('bad "value"')
    except ValueError:
        logging.getLogger("some.library").exception("failed")
    get_logger("t").info("event", detail='quote " and\nnewline')
    lines = _lines(stream)  # raises on any line that is not JSON
    assert lines[0]["event"] == 'he said "stop"\nand left \\ now' and lines[0]["logger"] == "some.library"
    assert lines[0]["level"] == "warning" and "timestamp" in lines[0]
    assert 'ValueError: bad "value"' in str(lines[1]["exception"])
    assert lines[2]["detail"] == 'quote " and\nnewline'


def test_stdlib_extra_fields_are_redacted_like_structlog_ones() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    logging.getLogger("x").warning("login", extra={"password": "hunter2"})
    assert "hunter2" not in stream.getvalue()
    assert _lines(stream)[0]["password"] == "[redacted]"


def test_paho_records_name_the_link_and_host() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    link = MqttLink("cloud", BrokerConfig(host="iot.example.org", port=8883), client_id="t", persistent=False)
    # paho's own logging path (every record paho writes goes through it).
    link._client._easy_log(paho.MQTT_LOG_ERR, 'failed to receive on socket: "%s"', "reset")
    (line,) = _lines(stream)
    assert line["link"] == "cloud" and line["host"] == "iot.example.org" and line["port"] == 8883
    assert line["event"] == 'failed to receive on socket: "reset"' and line["level"] == "error"
