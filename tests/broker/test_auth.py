"""Broker authentication: TLS with client certificates, and username/password from a secret file."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from gateway.broker import current_user, find_mosquitto, free_port
from gateway.config import parse_config
from gateway.mqtt_link import MqttLink


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    d.mkdir()
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=medshield-test-ca",
        cwd=d,
    )
    for name, cn in (("server", "localhost"), ("client", "gw-tls")):
        _openssl(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={cn}",
            cwd=d,
        )
        ext = d / f"{name}.ext"
        ext.write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n" if name == "server" else "extendedKeyUsage=clientAuth\n"
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{name}.pem",
            "-extfile",
            ext.name,
            cwd=d,
        )
    return d


def _mosquitto(conf_lines: list[str], tmp_path: Path, name: str):  # type: ignore[no-untyped-def]
    conf = tmp_path / f"{name}.conf"
    conf.write_text("\n".join([f"user {current_user()}", *conf_lines]) + "\n")
    proc = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.4)
    assert proc.poll() is None, "mosquitto did not start"
    return proc


def _link(section: dict, name: str) -> MqttLink:
    config = parse_config({"gateway": {"device_id": "gw"}, "inbound": section}, environ={})
    assert config.inbound is not None
    return MqttLink(name, config.inbound, f"test-{name}", persistent=False, subscriptions=["a/b"])


def test_tls_with_client_certificate(tmp_path: Path, pki: Path) -> None:
    port = free_port()
    proc = _mosquitto(
        [
            f"listener {port} 127.0.0.1",
            f"cafile {pki / 'ca.pem'}",
            f"certfile {pki / 'server.pem'}",
            f"keyfile {pki / 'server.key'}",
            "require_certificate true",
            "allow_anonymous true",
        ],
        tmp_path,
        "tls",
    )
    try:
        good = _link(
            {
                "port": port,
                "tls": {
                    "ca_file": str(pki / "ca.pem"),
                    "cert_file": str(pki / "client.pem"),
                    "key_file": str(pki / "client.key"),
                },
            },
            "tls-good",
        )
        good.start()
        assert good.wait_connected(10)
        good.stop()
        no_cert = _link({"port": port, "tls": {"ca_file": str(pki / "ca.pem")}}, "tls-nocert")
        no_cert.start()
        assert not no_cert.wait_connected(2)  # the broker demands a client certificate
        no_cert.stop()
    finally:
        proc.terminate()
        proc.wait(10)


def test_username_and_password_file(tmp_path: Path) -> None:
    passwords = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwords), "gw", "right-horse"], check=True, capture_output=True
    )
    port = free_port()
    proc = _mosquitto(
        [f"listener {port} 127.0.0.1", "allow_anonymous false", f"password_file {passwords}"], tmp_path, "auth"
    )
    secret, wrong = tmp_path / "pw", tmp_path / "wrong"
    secret.write_text("right-horse\n")
    wrong.write_text("wrong-horse\n")
    try:
        ok = _link({"port": port, "username": "gw", "password_file": str(secret)}, "pw-ok")
        ok.start()
        assert ok.wait_connected(10)
        ok.stop()
        bad = _link({"port": port, "username": "gw", "password_file": str(wrong)}, "pw-bad")
        bad.start()
        assert not bad.wait_connected(2)
        assert "Not authorized" in bad.state.last_connect_rc or "authori" in bad.state.last_connect_rc.lower()
        bad.stop()
    finally:
        proc.terminate()
        proc.wait(10)
