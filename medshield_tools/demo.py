"""`medshield demo`: everything on one machine, CPU only, from a fresh clone.

An embedded mosquitto on a free loopback port; a raw-key *service* recipient generated for the run; the
gateway (the same `Gateway` and protection step as `medshield run`); a scanner simulator publishing real CT
slices (lung1.npz wrapped as DICOM, pydicom's CT_small.dcm), generated PNG/NPY images and malformed inputs;
a receiver that reassembles, stores, opens every envelope and checks its hidden payload. Prints a summary.

Where dcmtk's storescu and Orthanc are installed, also the hospital loop (`gateway.dicom.hospital`): storescu
sends a CT series to the gateway's C-STORE listener, and the receiver delivers every restored original to a
private Orthanc, where each image storescu sent is checked to be the same image.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.broker import EmbeddedBroker
from gateway.config import BrokerConfig, GatewayConfig, parse_config
from gateway.crypto.origin import GatewayKey, TrustedGateways
from gateway.daemon import Gateway, ProtectFn, pipeline_protect_fn
from gateway.dicom import hospital as hospital_loop
from gateway.dicom.hospital import HospitalResult
from gateway.receiver import Receiver, ReceiverService, Verifier, key_verifier
from gateway.telemetry import Histogram
from medshield_tools.scanner_sim import ScannerSimulator, SimImage, demo_feed


@dataclass
class DemoSummary:
    published: int = 0
    expected_protected: int = 0
    expected_quarantined: int = 0
    protected: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    stored: int = 0
    parts: int = 0
    verified: int = 0
    verify_failed: int = 0
    duplicates: int = 0
    stage_ms: dict[str, tuple[float, float]] = field(default_factory=dict)
    end_to_end_ms: tuple[float, float] | None = None
    elapsed_s: float = 0.0
    ledger_entries: int = 0
    ledger_ok: bool = False
    hospital: HospitalResult | None = None

    @property
    def ok(self) -> bool:
        return (
            self.stored == self.expected_protected
            and self.verified == self.expected_protected
            and self.verify_failed == 0
            and self.ledger_ok
            and sum(self.quarantined.values()) == self.expected_quarantined
            and (self.hospital is None or self.hospital.ok)
        )

    def render(self) -> str:
        lines = [
            "MedShield demo — summary",
            f"  images published by the scanner simulator : {self.published}",
            f"  protected and sent to the cloud            : {self.protected} (expected {self.expected_protected})",
            f"  quarantined (bad inputs)                   : {sum(self.quarantined.values())} "
            f"(expected {self.expected_quarantined}) {dict(sorted(self.quarantined.items()))}",
            f"  envelopes stored by the receiver           : {self.stored} ({self.parts} MQTT parts reassembled, "
            f"{self.duplicates} redeliveries ignored)",
            f"  opened with the service key and verified   : {self.verified} ok, {self.verify_failed} failed",
            f"  signed ledger entries (chain, signatures)  : {self.ledger_entries} "
            f"{'valid, every envelope recorded' if self.ledger_ok else 'NOT VALID'}",
            "  latency per stage (ms)        p50       p95",
        ]
        for stage, (p50, p95) in sorted(self.stage_ms.items()):
            name = "protect (all stages)" if stage == "protect" else stage
            lines.append(f"    {name:<24} {p50:8.2f}  {p95:8.2f}")
        if self.hospital is not None:
            h = self.hospital
            lines.append(
                f"  storescu → gateway (C-STORE) → Orthanc     : {h.sent} sent, {h.answered_success} answered Success, "
                f"{h.in_orthanc} in Orthanc, {h.identical} the same image (elements, pixels), "
                f"{h.bit_exact} bit-exact data sets"
            )
        if self.end_to_end_ms:
            p50, p95 = self.end_to_end_ms
            lines.append(
                f"  receipt → cloud PUBACK (ms)    {p50:8.2f}  {p95:8.2f}   (all sent at once: queueing counts)"
            )
        lines.append(f"  wall time {self.elapsed_s:.1f} s — {'OK' if self.ok else 'FAILED'}")
        return "\n".join(lines)


def _service_recipient(directory: Path) -> tuple[Path, Path]:
    from gateway.crypto.recipients import generate_recipient, save_recipient
    from gateway.rng import system_random

    private_key, _card = generate_recipient("demo-service", system_random)
    key_path, card_path = save_recipient(directory, private_key)
    return key_path, card_path


def run_demo(
    images: list[SimImage] | None = None,
    *,
    workdir: Path | None = None,
    timeout_s: float = 300.0,
    protect_factory: Callable[[GatewayConfig], ProtectFn] = pipeline_protect_fn,
    verifier_factory: Callable[[Path, TrustedGateways], Verifier] | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
    hospital: bool = False,
) -> DemoSummary:
    """Run the whole chain once and return what happened (`hospital`: the storescu → C-STORE → Orthanc loop
    too; it needs storescu and Orthanc, `gateway.dicom.hospital.available()`)."""
    feed = images if images is not None else demo_feed()
    with_hospital = hospital
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="medshield-demo-") as tmp:
        root = workdir or Path(tmp)
        keys = root / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        key_path, card_path = _service_recipient(keys)
        broker = EmbeddedBroker(persistence_dir=root / "broker").start()
        progress(f"embedded mosquitto on 127.0.0.1:{broker.port}")
        config = parse_config(
            {
                "gateway": {"device_id": "demo-gateway", "state_dir": str(root / "state")},
                "inbound": {"port": broker.port},
                "cloud": {"port": broker.port},
                "protection": {"recipients": [str(card_path)]},
                "telemetry": {"port": None},
                "dicom": (
                    {"port": 0, "host": "127.0.0.1", "allowed_calling_ae_titles": [hospital_loop.MODALITY_AE]}
                    if with_hospital
                    else {}
                ),
            },
            environ={},
        )
        # The receiver pins the gateway's card, as an operator would copy it from the gateway's state directory.
        gateways = TrustedGateways([GatewayKey.load_or_create(config.ledger_key_path, config.gateway.device_id).card])
        gateway = Gateway(config, protect_factory(config))
        loop = hospital_loop.HospitalLoop(root, key_path, gateways).start() if with_hospital else None
        if loop is not None:
            progress(f"Orthanc on 127.0.0.1:{loop.orthanc.dicom_port} (DICOM), :{loop.orthanc.http_port} (REST)")
        receiver = Receiver(
            root / "received",
            gateways,
            (verifier_factory or _key_verifier)(key_path, gateways),
            on_stored=loop.delivery.offer if loop is not None else None,
        )
        service = ReceiverService(receiver, BrokerConfig(port=broker.port), client_id="demo-receiver").start()
        try:
            gateway.start()
            if not gateway.wait_connected(20) or not service.link.wait_connected(20):
                raise TimeoutError("demo could not connect to its embedded broker")
            progress("gateway and receiver connected; publishing")
            scanner = ScannerSimulator("127.0.0.1", broker.port)
            for image in feed:
                scanner.publish(image.data)
            scanner.close()
            summary = DemoSummary(
                published=len(feed),
                expected_protected=sum(1 for i in feed if i.expect == "protected"),
                expected_quarantined=sum(1 for i in feed if i.expect != "protected"),
            )
            if loop is not None and gateway.dicom_intake is not None:
                files = _modality_series(root / "modality")
                progress(f"storescu sends {len(files)} CT images to the gateway's C-STORE listener")
                loop.send(files, gateway.dicom_intake.port, config.dicom.ae_title)
                summary.expected_protected += len(files)
            deadline = time.monotonic() + timeout_s
            m = gateway.metrics
            while time.monotonic() < deadline:
                quarantined = m.quarantined.total()
                if (
                    receiver.stats.stored >= summary.expected_protected
                    and quarantined >= summary.expected_quarantined
                    and len(receiver.verifications) >= summary.expected_protected
                    and receiver.ledger_count(config.gateway.device_id) >= summary.expected_protected
                    and (loop is None or loop.delivery.queue.depth(held=False) == 0)
                ):
                    break
                time.sleep(0.1)
            summary.protected = int(m.protected.value())
            summary.quarantined = {ls["reason"]: int(m.quarantined.value(**ls)) for ls in m.quarantined.label_sets()}
            for labels in m.stage.label_sets():
                summary.stage_ms[labels["stage"]] = _p50_p95(m.stage, **labels)
            for labels in m.seal_part.label_sets():
                summary.stage_ms[f"seal.{labels['part']}"] = _p50_p95(m.seal_part, **labels)
            if m.protect.count():
                summary.stage_ms["protect"] = _p50_p95(m.protect)
            if loop is not None:
                summary.hospital = loop.check()
        finally:
            gateway.shutdown(flush_timeout_s=5)  # publishes the ledger's final signed checkpoint
            end = time.monotonic() + 5
            device = config.gateway.device_id
            while time.monotonic() < end and (receiver.ledger_checkpoint(device) or 0) < receiver.ledger_count(device):
                time.sleep(0.05)
            service.stop()
            if loop is not None:
                loop.stop()
            broker.close()
        s = receiver.stats
        summary.stored, summary.parts, summary.duplicates = s.stored, s.parts, s.duplicates
        summary.verified, summary.verify_failed = s.verified, s.verify_failed
        if m.end_to_end.count():
            summary.end_to_end_ms = _p50_p95(m.end_to_end)
        summary.ledger_entries, summary.ledger_ok = _check_ledger(root, config)
        summary.elapsed_s = time.monotonic() - started
        return summary


def _modality_series(directory: Path, count: int = 6) -> list[Path]:
    """A CT series as a modality would send it: real lung CT slices (lung1.npz 28–33) as valid DICOM files."""
    import numpy as np

    from gateway.resources import shared_data_dir
    from medshield_tools.scanner_sim import dicom_from_hu

    with np.load(shared_data_dir() / "ct" / "lung1.npz") as data:
        volume, spacing = data["image_hu"], [float(v) for v in data["spacing_zyx_mm"]]
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for z in range(34 - count, 34):
        path = directory / f"CT{z:03d}.dcm"
        path.write_bytes(
            dicom_from_hu(volume[z], instance=z + 1, spacing_mm=spacing[1:], thickness_mm=spacing[0],
                          series_seed="demo-modality")
        )
        files.append(path)
    return files


def _check_ledger(root: Path, config: GatewayConfig) -> tuple[int, bool]:
    """Verify the ledger the receiver collected against the gateway's public key and the stored envelopes."""
    from gateway.crypto.origin import GatewayKey
    from gateway.ledger import read_ledger, verify_ledger

    collected = root / "received" / "ledger" / f"{config.gateway.device_id}.jsonl"
    if not collected.is_file():
        return 0, False
    entries, checkpoints = read_ledger(collected)
    entries.sort(key=lambda e: e.seq)  # collected in arrival order
    envelopes = [p.read_bytes() for p in (root / "received").glob("*.msh")]
    public_key = GatewayKey.load(config.ledger_key_path, config.gateway.device_id).public_key
    report = verify_ledger(entries, public_key, checkpoints, envelopes)
    return report.entries, report.ok


def _p50_p95(histogram: Histogram, **labels: str) -> tuple[float, float]:
    return (1000 * (histogram.quantile(0.5, **labels) or 0.0), 1000 * (histogram.quantile(0.95, **labels) or 0.0))


def _key_verifier(key_path: Path, gateways: TrustedGateways) -> Verifier:
    from gateway.crypto.recipients import PrivateKey

    return key_verifier(PrivateKey.load(key_path), gateways)
