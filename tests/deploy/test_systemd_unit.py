"""The gateway's units under a real systemd (PID 1 in a systemd-nspawn container of Debian 12).

The install is the admin's: deploy/host/install.sh with the wheel, then the unit exactly as shipped (no
drop-in). The test sees READY (the unit turns active only on READY=1, Type=notify), watchdog pings arriving,
/healthz, a clean stop with exit status 0, `systemd-analyze verify` clean and `security` at most 2.0.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from gateway.resources import REPO_DIR
from tests.deploy.nspawn import Machine, nspawn_unavailable

pytestmark = [pytest.mark.slow, pytest.mark.systemd]

LOCAL_CONFIG = """
[gateway]
device_id = "unit-test-gw"
state_dir = "/var/lib/medshield"

[protection]
recipients = ["/etc/medshield/recipients/service.card"]
"""

HEALTH = (
    "import sys, urllib.request\n"
    "r = urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=5)\n"
    "print(r.status, r.read().decode())\n"
)


def _journal(m: Machine, unit: str = "medshield.service") -> str:
    return m.run("journalctl", "--no-pager", "-o", "cat", "-u", unit, "-n", "60").stdout


def _wait_state(m: Machine, unit: str, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        props = m.show(unit, "ActiveState", "SubState", "Result", "NRestarts", "StatusText")
        if props.get("ActiveState") in ("active", "failed") or time.monotonic() > deadline:
            return props
        if props.get("NRestarts", "0") != "0":  # a restart loop: the first start failed
            return props
        time.sleep(1)


@pytest.fixture(scope="module")
def machine(wheel: Path, test_root: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    reason = nspawn_unavailable()
    if reason:
        pytest.fail(f"cannot boot the test machine: {reason}")
    from gateway.crypto.recipients import generate_recipient, save_recipient
    from gateway.rng import system_random

    work = tmp_path_factory.mktemp("nspawn")
    binds = {test_root / "wheels": "/mnt/wheels", wheel.parent: "/mnt/dist", REPO_DIR / "deploy" / "host": "/mnt/host"}
    with Machine(work / "machine", binds) as m:
        installed = m.chroot_run(
            "bash", "/mnt/host/install.sh", "install", f"/mnt/dist/{wheel.name}", "--find-links", "/mnt/wheels"
        )
        assert installed.returncode == 0, installed.stdout + installed.stderr
        (m.root / "etc/medshield/gateway.toml").write_text(LOCAL_CONFIG)
        key, _card = generate_recipient("service", system_random)
        save_recipient(m.root / "etc/medshield/recipients", key)
        (m.root / "etc/medshield/recipients/service.key").unlink()  # a gateway holds cards only
        (m.root / "etc/medshield/recipients/service.card").chmod(0o644)
        assert m.chroot_run("systemctl", "enable", "medshield.service").returncode == 0
        m.boot()
        yield m


def test_unit_starts_ready_pings_watchdog_and_stops_cleanly(machine: Machine) -> None:
    m = machine
    props = _wait_state(m, "medshield.service", timeout=300)
    assert props.get("ActiveState") == "active" and props.get("NRestarts") == "0", f"{props}\n{_journal(m)}"
    assert props["SubState"] == "running"

    first = m.show("medshield.service", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
    deadline = time.monotonic() + 45  # WatchdogSec=30: a ping at least every 15 s
    while m.show("medshield.service", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"] == first:
        assert time.monotonic() < deadline, f"no watchdog ping after READY\n{_journal(m)}"
        time.sleep(1)

    health = m.run("/opt/medshield/current/bin/python", "-c", HEALTH)
    assert health.returncode == 0 and health.stdout.startswith("200"), health.stdout + health.stderr

    stop = m.run("systemctl", "stop", "medshield.service", timeout=90)
    assert stop.returncode == 0, stop.stderr
    after = m.show("medshield.service", "ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
    assert after == {"ActiveState": "inactive", "Result": "success", "ExecMainCode": "1", "ExecMainStatus": "0"}, (
        f"{after}\n{_journal(m)}"
    )
    assert "SIGSYS" not in _journal(m) and "code=killed" not in _journal(m)


def test_engine_build_unit_skips_without_a_gpu(machine: Machine) -> None:
    props = machine.show("medshield-build-engines.service", "ActiveState", "ConditionResult")
    assert props == {"ActiveState": "inactive", "ConditionResult": "no"}


def test_units_verify_clean_and_score_at_most_2(machine: Machine) -> None:
    verify = machine.run("systemd-analyze", "verify", "medshield.service", "medshield-build-engines.service")
    assert verify.returncode == 0 and verify.stdout.strip() == "" and verify.stderr.strip() == "", (
        verify.stdout + verify.stderr
    )
    for unit in ("medshield.service", "medshield-build-engines.service"):
        report = machine.run("systemd-analyze", "security", "--no-pager", unit).stdout
        exposure = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", report).group(1))  # type: ignore[union-attr]
        assert exposure <= 2.0, report
