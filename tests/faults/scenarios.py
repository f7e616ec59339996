"""Fault scenarios. Each runs once on a fresh rig and returns its `Result`; `n` is the number of images.

The short suite (`test_faults.py`) runs each once with small `n`; `make faults` (`tests.faults.run`) runs
each many times with larger `n` and writes docs/RELIABILITY.md.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gateway.config import BrokerConfig
from gateway.receiver import ReceiverService
from tests.broker.helpers import publish_all
from tests.faults.rig import Result, Rig, wait_until

DRAIN_S = 90.0
Scenario = Callable[[Path, int, int], Result]


def _stream(rig: Rig, seeds: range, pace_s: float) -> threading.Thread:
    thread = threading.Thread(target=rig.send_images, args=(seeds,), kwargs={"pace_s": pace_s}, daemon=True)
    thread.start()
    return thread


def _finish(rig: Rig, kind: str, fault_end: float | None = None, drain_s: float = DRAIN_S) -> Result:
    start = fault_end if fault_end is not None else time.monotonic()
    rig.wait_delivered(drain_s)
    result = rig.account(kind, recovery_s=time.monotonic() - start)
    code, took = rig.gateway.terminate()
    if code != 0:
        result.notes.append(f"SIGTERM exit {code} after {took:.1f} s")
    result.crashes = sum(gw.unexpected_exits for gw in rig.gateways)
    return result


def sigkill_random(root: Path, n: int, seed: int) -> Result:
    """SIGKILL at random moments of a steady stream (images keep coming while the gateway is down)."""
    rnd = random.Random(seed)
    rig = Rig(root)
    try:
        rig.start_all()
        feeder = _stream(rig, range(seed * 1000, seed * 1000 + n), pace_s=max(0.02, 3.0 / n))
        end = time.monotonic()
        for _ in range(2):
            time.sleep(rnd.uniform(0.2, 1.5))
            rig.gateway.kill()
            time.sleep(rnd.uniform(0.0, 1.0))
            rig.gateway.start()
            end = time.monotonic()
            rig.gateway.wait_running()
        feeder.join()
        return _finish(rig, "SIGKILL at random moments", end)
    finally:
        rig.close()


def sigkill_at(step: str) -> Scenario:
    def run(root: Path, n: int, seed: int) -> Result:
        rnd = random.Random(seed)
        rig = Rig(root)
        try:
            at = rnd.randint(2, max(2, n - 2))
            rig.start_all(MEDSHIELD_FAULT_KILL_AT=f"{step}:{at}")
            rig.send_images(range(seed * 1000, seed * 1000 + n), pace_s=0.02)
            died = rig.gateway.wait_killed(60)
            rig.gateway.start()
            result = _finish(rig, f"SIGKILL at {step}", time.monotonic())
            if not died:
                result.notes.append(f"the kill at {step} #{at} never came")
                result.crashes += 1
            return result
        finally:
            rig.close()

    run.__name__ = f"sigkill_at_{step}"
    return run


def cloud_outage(root: Path, n: int, seed: int) -> Result:
    """The cloud broker goes away mid-stream; during the outage the gateway is also restarted (SIGKILL), so
    rows that only lived in the MQTT client's memory would be lost."""
    rig = Rig(root)
    try:
        rig.start_all()
        rig.send_images(range(seed * 1000, seed * 1000 + n // 2))
        time.sleep(1.0)
        rig.cloud_broker.stop()
        rig.send_images(range(seed * 1000 + n // 2, seed * 1000 + n))
        wait_until(rig.scanner.all_acknowledged, 20)
        time.sleep(2.0)  # protected and spooled, published into a link that is down
        rig.gateway.kill()
        rig.gateway.start()
        time.sleep(1.0)
        rig.cloud_broker.start()
        return _finish(rig, "cloud outage (with a restart)", time.monotonic())
    finally:
        rig.close()


def scanner_outage(root: Path, n: int, seed: int) -> Result:
    """The scanner broker restarts (with its persistence) mid-stream."""
    rig = Rig(root)
    try:
        rig.start_all(MEDSHIELD_FAULT_PROTECT_DELAY_S="0.05")
        feeder = _stream(rig, range(seed * 1000, seed * 1000 + n), pace_s=0.03)
        time.sleep(1.0)
        rig.scanner_broker.stop()
        time.sleep(2.0)
        rig.scanner_broker.start()
        end = time.monotonic()
        feeder.join()
        return _finish(rig, "scanner broker outage", end)
    finally:
        rig.close()


def scanner_state_lost(root: Path, n: int, seed: int) -> Result:
    """The scanner broker is replaced and loses every session while the gateway still holds messages of the
    old connection; the gateway then dies. Packet ids of the old connection name other messages on the new
    one: acknowledging with them would drop those."""
    rig = Rig(root, scanner_persistent=False)
    try:
        # Slow enough that most of the first half is still waiting for a worker when the new connection is up.
        rig.start_all(MEDSHIELD_FAULT_PROTECT_DELAY_S="0.4")
        half = max(16, n // 2)
        rig.send_images(range(seed * 1000, seed * 1000 + half))
        wait_until(rig.scanner.all_acknowledged, 10)
        time.sleep(1.0)  # all delivered to the gateway, most still waiting for a worker
        mark = len(rig.gateway.log_lines())
        rig.scanner_broker.stop()
        rig.scanner_broker.start()
        # The new broker knows no subscription until the gateway is back: only then is anything kept for it.
        assert wait_until(lambda: rig.gateway.connected_since(mark), 30)
        rig.send_images(range(seed * 1000 + half, seed * 1000 + 2 * half))
        first = {p for _, p in rig.sent[:half]}
        wait_until(lambda: rig.counter.copies >= len(first), 30)
        rig.gateway.kill()
        rig.gateway.start()
        return _finish(rig, "scanner broker lost its state", time.monotonic())
    finally:
        rig.close()


def disk_full(root: Path, n: int, seed: int) -> Result:
    """Another writer fills the state disk (a small tmpfs) mid-stream; later the space comes back."""
    from tests.faults.disk import TmpfsDisk, fill

    with TmpfsDisk(root / "disk", 48 * 1024 * 1024) as disk:
        rig = Rig(root, state_dir=disk / "state", sections={"spool": {"min_free_bytes": 0}})
        try:
            rig.start_all()
            rig.send_images(range(seed * 1000, seed * 1000 + n // 2))
            time.sleep(1.0)
            filler = fill(disk)
            rig.send_images(range(seed * 1000 + n // 2, seed * 1000 + n))
            time.sleep(3.0)
            filler.unlink()
            return _finish(rig, "state disk full (another writer)", time.monotonic())
        finally:
            rig.close()


def start_on_full_disk(root: Path, n: int, seed: int) -> Result:
    """The gateway starts on a state disk with no room; it waits (one log line), then runs once freed."""
    from tests.faults.disk import TmpfsDisk, fill

    with TmpfsDisk(root / "disk", 4 * 1024 * 1024) as disk:
        rig = Rig(root, state_dir=disk / "state", sections={"spool": {"min_free_bytes": 0}})
        try:
            filler = fill(disk)
            rig.start_all(wait=False)
            told = wait_until(lambda: any("state_disk_full" in line for line in rig.gateway.log_lines()), 30)
            time.sleep(1.0)
            rig.gateway.check_alive()
            freed = time.monotonic()
            filler.unlink()
            wait_until(lambda: rig.gateway.connected_since(0), 30)
            rig.send_images(range(seed * 1000, seed * 1000 + n))
            result = _finish(rig, "start on a full disk", freed)
            if not told:
                result.notes.append("no state_disk_full line")
                result.crashes += 1
            return result
        finally:
            rig.close()


def sigterm_full_queue(root: Path, n: int, seed: int) -> Result:
    """SIGTERM while the queue is full and the cloud is down: exit 0 within the stop bound, nothing lost."""
    rig = Rig(root, sections={"limits": {"queue_size": 4}})
    try:
        rig.cloud_broker.stop()
        rig.start_all(MEDSHIELD_FAULT_PROTECT_DELAY_S="0.2")
        rig.send_images(range(seed * 1000, seed * 1000 + n))
        time.sleep(2.0)
        code, took = rig.gateway.terminate(60)
        rig.cloud_broker.start()
        rig.gateway.start()
        result = _finish(rig, "SIGTERM under a full queue", time.monotonic())
        result.notes.append(f"SIGTERM: exit {code} in {took:.1f} s (bound: flush 5 s + one image)")
        if code != 0 or took > 15:
            result.crashes += 1
        return result
    finally:
        rig.close()


def slow_cloud(root: Path, n: int, seed: int) -> Result:
    """Every chunk to and from the cloud broker is held 100 ms."""
    rig = Rig(root, cloud_delay_s=0.1)
    try:
        rig.start_all()
        rig.send_images(range(seed * 1000, seed * 1000 + n), pace_s=0.02)
        return _finish(rig, "slow cloud link (100 ms per chunk)")
    finally:
        rig.close()


def burst(root: Path, n: int, seed: int) -> Result:
    """Five times the gateway's capacity (queue and spool cap) at once."""
    rig = Rig(root, sections={"limits": {"queue_size": 4}, "spool": {"max_bytes": 64 * 1024}})
    try:
        rig.start_all()
        rig.send_images(range(seed * 1000, seed * 1000 + max(n, 40)))
        return _finish(rig, "burst of 5x capacity")
    finally:
        rig.close()


def hostile(root: Path, n: int, seed: int) -> Result:
    """Every bad-input class interleaved with good images."""
    rig = Rig(root)
    try:
        rig.start_all()
        for i in range(max(1, n // 10)):
            rig.send_images(range(seed * 1000 + 10 * i, seed * 1000 + 10 * i + 5))
            rig.send_hostile(seed * 100 + i)
            rig.send_images(range(seed * 1000 + 10 * i + 5, seed * 1000 + 10 * i + 10))
        return _finish(rig, "hostile inputs interleaved")
    finally:
        rig.close()


def dedup_poisoning(root: Path, n: int, seed: int) -> Result:
    """A copy of a genuine envelope with one byte flipped reaches the receiver before the genuine one (the
    genuine one arrives again as an at-least-once re-send). The genuine image must still be received."""
    rig = Rig(root)
    try:
        rig.service.stop()  # the receiver is away; the independent subscriber sees the envelope
        rig.start_all()
        rig.send_images(range(seed * 1000, seed * 1000 + 1))
        assert wait_until(lambda: rig.counter.copies >= 1, 30)
        genuine = rig.counter.raw[0]
        forged = bytearray(genuine)
        forged[-20] ^= 0x01
        rig.forged.add(hashlib.sha256(bytes(forged)).hexdigest())
        rig.service = ReceiverService(
            rig.receiver, BrokerConfig(port=rig.cloud_broker.port), client_id="fault-receiver-late"
        ).start()
        assert wait_until(lambda: rig.service.link.connected, 10)
        topic = "medshield/gateways/gw-0/envelopes"
        publish_all(rig.cloud_broker.port, [(topic, bytes(forged)), (topic, genuine)], client_id="fault-forger")
        return _finish(rig, "forged copy first (receiver de-duplication)", drain_s=15)
    finally:
        rig.close()


def scale_out(root: Path, n: int, seed: int) -> Result:
    """Three gateways on one shared subscription: every image exactly once at the receiver."""
    rig = Rig(root, gateways=3)
    try:
        rig.start_all()
        time.sleep(2.0)  # all three subscribed before the feed starts
        rig.send_images(range(seed * 1000, seed * 1000 + n), pace_s=0.01)
        rig.wait_delivered(DRAIN_S)
        result = rig.account("scale-out: 3 gateways, one shared subscription")
        for gw in rig.gateways:
            code, _ = gw.terminate()
        result.crashes = sum(gw.unexpected_exits for gw in rig.gateways)
        return result
    finally:
        rig.close()


def ready_with_backlog(root: Path, n: int, seed: int) -> Result:
    """`n` images wait at the scanner broker and the cloud is down when the gateway starts: READY must come
    within 10 s of the start all the same (issue 19 D3), then everything is delivered."""
    import socket

    rig = Rig(root)
    try:
        rig.start_all()
        rig.gateway.kill()
        rig.cloud_broker.stop()
        rig.send_images(range(seed * 1000, seed * 1000 + n))
        assert wait_until(rig.scanner.all_acknowledged, 60)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(root / "notify.sock"))
        notify.settimeout(0.5)
        t0 = time.monotonic()
        rig.gateway.start(NOTIFY_SOCKET=str(root / "notify.sock"))
        ready_s = None
        while time.monotonic() - t0 < 60 and ready_s is None:
            try:
                if notify.recv(512).startswith(b"READY=1"):
                    ready_s = time.monotonic() - t0
            except TimeoutError:
                continue
        notify.close()
        rig.cloud_broker.start()
        result = _finish(rig, f"READY with {n} images waiting, cloud down", time.monotonic())
        result.notes.append(f"READY {ready_s:.1f} s after start" if ready_s is not None else "no READY in 60 s")
        if ready_s is None or ready_s > 10:
            result.crashes += 1
        return result
    finally:
        rig.close()


def packet_id_wrap(root: Path, n: int, seed: int) -> Result:
    """The D4 regression (65,535 settled publishes, then a row reusing packet id 1 while the cloud is down),
    run by its test in tests/broker/test_packet_ids.py."""
    import subprocess
    import sys

    from tests.faults.rig import REPO

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/broker/test_packet_ids.py"],
        cwd=REPO, capture_output=True, text=True,
    )
    ok = done.returncode == 0
    return Result("packet-id wrap (65,535 publishes)", runs=1, sent=1, received=int(ok), lost=int(not ok))


SCENARIOS: dict[str, Scenario] = {
    "sigkill_random": sigkill_random,
    **{f"sigkill_{step}": sigkill_at(step) for step in ("intake", "protect", "commit", "publish", "delete")},
    "cloud_outage": cloud_outage,
    "scanner_outage": scanner_outage,
    "scanner_state_lost": scanner_state_lost,
    "disk_full": disk_full,
    "start_on_full_disk": start_on_full_disk,
    "sigterm_full_queue": sigterm_full_queue,
    "slow_cloud": slow_cloud,
    "burst": burst,
    "hostile": hostile,
    "dedup_poisoning": dedup_poisoning,
    "scale_out": scale_out,
    "ready_with_backlog": ready_with_backlog,
    "packet_id_wrap": packet_id_wrap,
}
