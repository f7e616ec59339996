"""Logging redaction, sd_notify, telemetry, quarantine, scanner simulator inputs."""

from __future__ import annotations

import io
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pydicom
import pytest

from gateway import systemd
from gateway.logging import configure_logging, get_logger, redact_secrets
from gateway.quarantine import Quarantine
from gateway.telemetry import Registry, TelemetryServer
from medshield_tools.scanner_sim import bad_inputs, ct_small, dicom_from_hu, generated_npy, generated_png, png_bomb


def test_redaction_masks_secret_names_and_bytes() -> None:
    event = {
        "event": "x",
        "password": "p",
        "cloud_password": "p",
        "api_key": "k",
        "otp_code": "123456",
        "private_key": "k",
        "key_id": "abc",
        "message_id": "m",
        "blob": b"\x00" * 9,
        "topic": "t",
        "pixels": [1, 2],
        "patient_name": "Doe",
    }
    out = redact_secrets(None, "info", dict(event))
    for name in ("password", "cloud_password", "api_key", "otp_code", "private_key", "pixels", "patient_name"):
        assert out[name] == "[redacted]", name
    assert out["key_id"] == "abc" and out["message_id"] == "m" and out["topic"] == "t"
    assert out["blob"] == "<9 bytes>"


def test_json_log_lines() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    get_logger("t").info("hello", password="hunter2", count=3)
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event"] == "hello" and line["count"] == 3 and line["password"] == "[redacted]"
    assert "hunter2" not in stream.getvalue()


def test_sd_notify_sends_datagrams(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(2)
        assert systemd.notify("READY=1\nSTATUS=ok", environ={"NOTIFY_SOCKET": path})
        assert server.recv(100) == b"READY=1\nSTATUS=ok"
    assert not systemd.notify("READY=1", environ={})
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}) is None


def test_metrics_and_health_endpoints() -> None:
    registry = Registry()
    c = registry.counter("x_total", "help", labels=("reason",))
    h = registry.histogram("lat_seconds", "help", buckets=(0.1, 1.0), labels=("stage",))
    registry.gauge("depth", "help", read=lambda: 7)
    c.inc(reason="bad")
    c.inc(2, reason="bad")
    h.observe(0.05, stage="a")
    h.observe(0.5, stage="a")
    healthy = {"ok": True}
    server = TelemetryServer(registry, lambda: (healthy["ok"], {"spool_rows": 1}), port=0).start()
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics").read().decode()
        assert 'x_total{reason="bad"} 3.0' in text
        assert 'lat_seconds_bucket{le="0.1",stage="a"} 1.0' in text
        assert 'lat_seconds_bucket{le="+Inf",stage="a"} 2.0' in text
        assert 'lat_seconds_count{stage="a"} 2.0' in text
        assert "depth 7.0" in text
        assert json.loads(urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz").read())["ok"] is True
        healthy["ok"] = False
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz")
        assert err.value.code == 503
    finally:
        server.stop()
    assert h.quantile(0.5, stage="a") == 0.05 and h.quantile(0.95, stage="a") == 0.5


def test_quarantine_record_and_event_carry_no_payload(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q", "gw")
    rec = q.put("mid", "medshield/scanners/s/images", b"PATIENT-DATA", "truncated", "cut short", 5)
    assert (tmp_path / "q" / "mid.bin").read_bytes() == b"PATIENT-DATA"
    assert (tmp_path / "q").stat().st_mode & 0o777 == 0o700
    assert b"PATIENT" not in rec.event()
    assert json.loads(rec.event())["reason"] == "truncated"
    assert q.records() == [rec]


def test_simulated_inputs_are_what_they_claim() -> None:
    hu = np.arange(-1024, -1024 + 64 * 64, dtype=np.int16).reshape(64, 64)
    ds = pydicom.dcmread(io.BytesIO(dicom_from_hu(hu, instance=1)))
    assert np.array_equal(ds.pixel_array, hu) and ds.Modality == "CT"
    assert pydicom.dcmread(io.BytesIO(ct_small().data)).Rows == 128
    assert generated_png(64, 1).data.startswith(b"\x89PNG")
    arr = np.load(io.BytesIO(generated_npy(64, 1).data))
    assert arr.dtype == np.uint16 and arr.shape == (64, 64)
    assert len(png_bomb()) < 4096 and int.from_bytes(png_bomb()[16:20], "big") == 30000
    assert {b.name for b in bad_inputs()} >= {"random bytes", "truncated DICOM", "PNG bomb", "empty message"}
