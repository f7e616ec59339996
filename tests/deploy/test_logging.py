"""Every log line is one valid JSON object: structlog's events and standard-library records (paho's too),
whatever quotes, newlines or exceptions they carry; paho's records name the link and the broker."""

from __future__ import annotations

import io
import json
import logging
import struct
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as paho

from gateway.config import BrokerConfig
from gateway.logging import configure_logging, get_logger
from gateway.mqtt_link import MqttLink

REPO = Path(__file__).resolve().parents[2]


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


def test_what_native_libraries_write_to_stderr_becomes_json(tmp_path: Path) -> None:
    """libpng writes its warnings straight to file descriptor 2; inside a running daemon they must come out as
    JSON events on stdout, and nothing plain may reach stderr."""
    png = _png_with_bad_text_crc(tmp_path)
    script = tmp_path / "native.py"
    script.write_text(
        "import os, sys\n"
        "from gateway.codecs import Limits, decode\n"
        "from gateway.logging import configure_logging, native_stderr_as_log\n"
        "configure_logging('info')\n"
        "with native_stderr_as_log():\n"
        f"    decode(open({str(png)!r}, 'rb').read(), Limits())\n"
        "    os.write(2, b'plain text from C\\n')\n"
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    events = [json.loads(line) for line in run.stdout.splitlines()]
    native = [e["line"] for e in events if e["event"] == "native_stderr"]
    assert any("libpng warning" in line for line in native), events
    assert "plain text from C" in native


def _png_with_bad_text_crc(folder: Path) -> Path:
    """A valid 8×8 PNG with a tEXt chunk whose CRC is wrong: libpng decodes it and warns on stderr."""
    import cv2
    import numpy as np

    ok, encoded = cv2.imencode(".png", np.zeros((8, 8), np.uint8))
    assert ok
    data = encoded.tobytes()
    body = b"tEXt" + b"Comment\x00hello"
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", 12345)
    path = folder / "bad-text-crc.png"
    path.write_bytes(data[:33] + chunk + data[33:])  # after the 8-byte signature and the 25-byte IHDR chunk
    return path
