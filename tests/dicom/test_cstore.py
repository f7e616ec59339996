"""The C-STORE intake against real clients: dcmtk's storescu/echoscu and pynetdicom, through a real gateway
(real mosquitto, real spool, real pipeline; only the lesion model is replaced by "no lesion", which the
listener does not depend on, to keep 500 images inside the test budget)."""

from __future__ import annotations

import io
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from gateway import pipeline
from gateway.broker import EmbeddedBroker
from gateway.config import parse_config
from gateway.crypto.envelope import peek_header
from gateway.daemon import Gateway
from gateway.dicom.hospital import data_set_bytes
from gateway.dicom.listener import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, SUCCESS
from medshield_tools import scanner_sim
from tests.broker.helpers import Collector, wait_until
from tests.dicom.conftest import FAST, OPEN, require_tool
from tests.dicom.reference import pydicom_file

AET = "MEDSHIELD"
MODALITY = "CT-SIM-1"


def _no_lesion(image):  # noqa: ANN001, ANN202
    return np.zeros(image.pixels.shape, bool)


def fast_protect(card):  # noqa: ANN001, ANN201
    def protect(data: bytes, *, message_id: str, source):  # noqa: ANN001, ANN202
        # Small crops and pydicom samples without air around the body: the paper's carrier rule has room in
        # them all; the intake, not the carrier rule, is under test here.
        return [pipeline.protect(data, card, segmenter=_no_lesion, message_id=message_id, source=source,
                                 carrier_rule="non-lesion", **FAST)]

    return protect


def make_gateway(tmp_path: Path, broker_port: int, card, *, cloud_port: int | None = None, **dicom) -> Gateway:  # noqa: ANN001
    data = {
        "gateway": {"device_id": "gw-dicom", "state_dir": str(tmp_path / "state")},
        "inbound": {"port": broker_port, "reconnect_min_s": 1, "reconnect_max_s": 1},
        # One envelope per message (no parts) keeps the counting simple; parts are the daemon's tests' business.
        "cloud": {"port": cloud_port or broker_port, "reconnect_min_s": 1, "reconnect_max_s": 1,
                  "max_message_bytes": 64 * 1024 * 1024},
        "telemetry": {"port": None},
        "spool": {"flush_timeout_s": 2},
        "dicom": {"port": 0, "host": "127.0.0.1", "ae_title": AET, **dicom.pop("listener", {})},
    }
    for key, value in dicom.items():
        data.setdefault(key, {}).update(value)
    gateway = Gateway(parse_config(data, environ={}), fast_protect(card))
    gateway.start()
    return gateway


@pytest.fixture
def running(tmp_path: Path, broker: EmbeddedBroker, dicom_recipient) -> Iterator[tuple[Gateway, Collector]]:  # noqa: ANN001
    _, card = dicom_recipient
    collector = Collector(broker.port, ("medshield/gateways/+/envelopes",), client_id="dicom-collector")
    gateway = make_gateway(
        tmp_path, broker.port, card, listener={"allowed_calling_ae_titles": [MODALITY, "PYNETDICOM"]}
    )
    yield gateway, collector
    gateway.shutdown(flush_timeout_s=2)
    collector.close()


def series(directory: Path, count: int, side: int, shared_data: Path) -> list[Path]:
    """`count` real CT slices (lung1, resampled to side²) as valid CT Image Storage files, one series."""
    with np.load(shared_data / "ct" / "lung1.npz") as npz:
        volume = npz["image_hu"]
    step = 512 // side
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        hu = volume[i % volume.shape[0], ::step, ::step]
        data = scanner_sim.dicom_from_hu(np.ascontiguousarray(hu), instance=i + 1, series_seed="cstore-test")
        path = directory / f"ct{i:04d}.dcm"
        path.write_bytes(data)
        paths.append(path)
    return paths



def envelope_ids(collector: Collector) -> set[str]:
    return {peek_header(e)["message_id"] for e in collector.on("/envelopes")}


def pynetdicom_client(port: int, ae_title: str = "PYNETDICOM", called: str = AET, files: list[Path] | None = None):  # noqa: ANN201
    """An association proposing each file's own SOP class and transfer syntax (default: CT, explicit LE)."""
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

    ae = AE(ae_title=ae_title)
    ae.add_requested_context(CTImageStorage)
    for path in files or []:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title=called)


def test_storescu_500_image_series_is_spooled_once_each(running, tmp_path, shared_data):
    gateway, collector = running
    storescu = require_tool("storescu")
    files = series(tmp_path / "series", 500, 64, shared_data)
    assert gateway.dicom_intake is not None
    done = subprocess.run(
        [storescu, "-aet", MODALITY, "-aec", AET, "127.0.0.1", str(gateway.dicom_intake.port), *map(str, files)],
        capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert wait_until(lambda: len(envelope_ids(collector)) >= 500, 60)
    assert len(envelope_ids(collector)) == 500
    # Sending the series again (a modality retry) spools nothing new.
    again = subprocess.run(
        [storescu, "-aet", MODALITY, "-aec", AET, "127.0.0.1", str(gateway.dicom_intake.port), *map(str, files[:20])],
        capture_output=True, text=True, timeout=120,
    )
    assert again.returncode == 0
    time.sleep(1.0)
    assert len(envelope_ids(collector)) == 500
    assert gateway.quarantine.records() == []


COMPRESSED = ["MR2_J2KI.dcm", "MR_small_jp2klossless.dcm", "JPEG-LL.dcm", "emri_small_jpeg_ls_lossless.dcm"]


def test_compressed_images_arrive_in_their_syntax_and_open_to_what_was_sent(running, dicom_recipient):
    gateway, collector = running
    private_key, _ = dicom_recipient
    assert gateway.dicom_intake is not None
    sent = [pydicom_file(name) for name in COMPRESSED]
    assoc = pynetdicom_client(gateway.dicom_intake.port, files=sent)
    assert assoc.is_established
    statuses = [assoc.send_c_store(path).Status for path in sent]  # a path: its data set bytes as they are
    assoc.release()
    assert statuses == [SUCCESS] * len(sent)
    assert wait_until(lambda: len(envelope_ids(collector)) >= len(sent), 30)
    opened = [pipeline.open_(e, private_key, restore_original=True, **OPEN) for e in collector.on("/envelopes")]
    # Byte for byte the data sets the modality sent, under the file meta of the accepted transfer syntax.
    assert sorted(data_set_bytes(o.original) for o in opened) == sorted(data_set_bytes(p.read_bytes()) for p in sent)
    syntaxes = {
        pydicom.dcmread(io.BytesIO(o.original), stop_before_pixels=True).file_meta.TransferSyntaxUID for o in opened
    }
    assert syntaxes == {pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID for p in sent}


# storescu's option proposing each syntax (with the uncompressed ones), and a real file in that syntax.
STORESCU_COMPRESSED = [
    ("-xs", "JPEG-LL.dcm"),  # JPEG Lossless SV1
    ("-xy", "P14SV1_8b.jpeg-baseline.dcm"),  # JPEG Baseline
    ("-xx", "P14SV1_8b.jpeg-extended.dcm"),  # JPEG Extended, 8-bit samples
    ("-xv", "MR2_J2KR.dcm"),  # JPEG 2000 Lossless
    ("-xw", "JPEG2000.dcm"),  # JPEG 2000
    ("-xt", "emri_small_jpeg_ls_lossless.dcm"),  # JPEG-LS Lossless, 10 frames
    ("-xu", "emri_small.jls-near.dcm"),  # JPEG-LS Near-Lossless, 10 frames
    ("-xr", "emri_small_RLE.dcm"),  # RLE Lossless, 10 frames
    ("-xd", "image_dfl.dcm"),  # Deflated Explicit VR Little Endian
]


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """dcmtk's storescp, writing every data set bit for bit as received (+B), all its syntaxes accepted (+xa):
    the independent record of what storescu puts on the wire."""
    from gateway.broker import free_port

    port, directory = free_port(), tmp_path / "storescp"
    directory.mkdir()
    proc = subprocess.Popen([require_tool("storescp"), "+B", "+xa", "-aet", "RECORDER", "-od", str(directory),
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    echoscu = require_tool("echoscu")
    assert wait_until(lambda: subprocess.run([echoscu, "-aec", "RECORDER", "127.0.0.1", str(port)],
                                             capture_output=True, check=False).returncode == 0, 10)
    yield port, directory
    proc.terminate()
    proc.wait(timeout=10)


def test_storescu_sends_compressed_images_that_open_to_what_was_sent(running, dicom_recipient, dcmtk_files,
                                                                     storescp):
    gateway, collector = running
    private_key, _ = dicom_recipient
    recorder_port, recorded = storescp
    storescu = require_tool("storescu")
    assert gateway.dicom_intake is not None
    port = str(gateway.dicom_intake.port)
    wire: list[tuple[str, bytes]] = []  # (syntax, data set) as storescu sent it, from storescp
    files: list[bytes] = []
    for option, name in STORESCU_COMPRESSED:
        path = dcmtk_files.get(name) or pydicom_file(name)
        files.append(path.read_bytes())
        for called, target in ((AET, port), ("RECORDER", str(recorder_port))):
            done = subprocess.run([storescu, option, "-aet", MODALITY, "-aec", called, "127.0.0.1", target, str(path)],
                                  capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0 and "Store Failed" not in done.stderr, (name, called, done.stderr[-1000:])
        (copy,) = recorded.iterdir()
        data = copy.read_bytes()
        copy.unlink()
        wire.append((pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta.TransferSyntaxUID,
                     data_set_bytes(data)))
    # Each image went in its own syntax: storescu neither decompressed nor transcoded it.
    assert [syntax for syntax, _ in wire] == [
        pydicom.dcmread(io.BytesIO(f), stop_before_pixels=True).file_meta.TransferSyntaxUID for f in files
    ]
    assert wait_until(lambda: len(envelope_ids(collector)) >= len(files), 60)
    assert gateway.quarantine.records() == []
    restored = [
        pipeline.open_(e, private_key, restore_original=True, **OPEN).original for e in collector.on("/envelopes")
    ]
    assert all(r is not None for r in restored)
    # The gateway restores exactly the data set that was on the wire, under the file meta of its syntax ...
    assert sorted(wire) == sorted(
        (pydicom.dcmread(io.BytesIO(r), stop_before_pixels=True).file_meta.TransferSyntaxUID, data_set_bytes(r))
        for r in restored if r is not None
    )
    # ... which holds the file's elements and compressed Pixel Data bytes. (dcmtk rewrites sequence lengths on
    # sending, and gives encapsulated Pixel Data the VR OB the standard requires where a file says OW.)
    def content(part10: bytes) -> tuple[str, list[tuple[object, str, object]], bytes]:
        ds = pydicom.dcmread(io.BytesIO(part10))
        elements = [(e.tag, e.VR, e.value) for e in ds if e.tag != 0x7FE00010]
        return ds.file_meta.TransferSyntaxUID, elements, ds.PixelData

    received = [content(r) for r in restored if r is not None]
    for data in files:
        assert content(data) in received


def test_unprotectable_input_is_refused_and_quarantined_with_its_reason(running):
    gateway, collector = running
    assert gateway.dicom_intake is not None
    assoc = pynetdicom_client(gateway.dicom_intake.port, files=[pydicom_file("SC_rgb_rle.dcm")])
    assert assoc.is_established
    answer = assoc.send_c_store(pydicom_file("SC_rgb_rle.dcm"))  # colour: the gateway protects grey-scale
    again = assoc.send_c_store(pydicom_file("SC_rgb_rle.dcm"))  # the modality retries: refused again
    assoc.release()
    assert answer.Status == again.Status == CANNOT_UNDERSTAND
    (record,) = gateway.quarantine.records()
    assert record.reason == "not_monochrome" and record.topic == "dicom/scanners/PYNETDICOM/images"
    assert envelope_ids(collector) == set()


def test_echoscu_and_wrong_ae_titles(running):
    gateway, _ = running
    assert gateway.dicom_intake is not None
    port = str(gateway.dicom_intake.port)
    echoscu = require_tool("echoscu")
    assert subprocess.run([echoscu, "-aet", MODALITY, "-aec", AET, "127.0.0.1", port], timeout=30).returncode == 0
    # A calling AE title not on the allow-list, and a called AE title that is not the gateway's.
    assert subprocess.run([echoscu, "-aet", "INTRUDER", "-aec", AET, "127.0.0.1", port], timeout=30).returncode != 0
    assert subprocess.run([echoscu, "-aet", MODALITY, "-aec", "OTHER", "127.0.0.1", port], timeout=30).returncode != 0
    assoc = pynetdicom_client(gateway.dicom_intake.port, ae_title="INTRUDER")
    assert not assoc.is_established and assoc.is_rejected


def test_a_host_off_the_allow_list_is_refused(tmp_path, broker, dicom_recipient):
    _, card = dicom_recipient
    gateway = make_gateway(tmp_path, broker.port, card, listener={"allowed_hosts": ["10.255.255.1/32"]})
    try:
        assert gateway.dicom_intake is not None
        assoc = pynetdicom_client(gateway.dicom_intake.port)
        assert not assoc.is_established
    finally:
        gateway.shutdown(flush_timeout_s=0)


def test_a_full_spool_answers_out_of_resources_and_keeps_what_it_answered(
    tmp_path, broker, dicom_recipient, shared_data
):
    _, card = dicom_recipient
    # A port bound but never listening: connections are refused, and no other process can take it meanwhile.
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    dead_cloud = holder.getsockname()[1]
    gateway = make_gateway(tmp_path, broker.port, card, cloud_port=dead_cloud, spool={"max_bytes": 1024})
    try:
        assert gateway.dicom_intake is not None
        files = series(tmp_path / "full", 3, 64, shared_data)
        assoc = pynetdicom_client(gateway.dicom_intake.port)
        assert assoc.is_established
        statuses = [assoc.send_c_store(path).Status for path in files]
        assoc.release()
        assert statuses == [SUCCESS, OUT_OF_RESOURCES, OUT_OF_RESOURCES]
        assert gateway.spool.depth >= 1 and gateway.spool.full()
        depth = gateway.spool.depth
        # dcmtk's storescu is told the same, and nothing is taken from it either.
        done = subprocess.run(
            [require_tool("storescu"), "-v", "-aet", MODALITY, "-aec", AET, "127.0.0.1",
             str(gateway.dicom_intake.port), str(files[1])],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert "Received Store Response (Refused: OutOfResources)" in done.stdout + done.stderr, done.stderr[-500:]
        assert gateway.spool.depth == depth
    finally:
        gateway.shutdown(flush_timeout_s=0)
    # The answered image is durable: it is still in the spool after a restart.
    gateway = make_gateway(tmp_path, broker.port, card, cloud_port=dead_cloud, spool={"max_bytes": 1024})
    try:
        assert gateway.spool.depth >= 1
    finally:
        gateway.shutdown(flush_timeout_s=0)
        holder.close()


def test_a_client_that_aborts_loses_nothing_answered_and_leaves_nothing_half_written(running, tmp_path, shared_data):
    gateway, collector = running
    storescu = require_tool("storescu")
    files = series(tmp_path / "abort", 30, 512, shared_data)
    assert gateway.dicom_intake is not None
    port = str(gateway.dicom_intake.port)
    proc = subprocess.Popen(
        [storescu, "-v", "-aet", MODALITY, "-aec", AET, "127.0.0.1", port, *map(str, files)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    answered = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Received Store Response (Success)" in line:
            answered += 1
            if answered == 3:
                proc.kill()  # the connection drops in the middle of the series
                break
    proc.wait(timeout=30)
    assert answered == 3
    time.sleep(1.0)
    assert wait_until(lambda: len(envelope_ids(collector)) >= 3, 30)
    ids = envelope_ids(collector)
    assert 3 <= len(ids) < len(files)
    assert gateway.quarantine.records() == []
    # The modality resends the whole series: every image arrives exactly once.
    done = subprocess.run(
        [storescu, "-aet", MODALITY, "-aec", AET, "127.0.0.1", port, *map(str, files)],
        capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert wait_until(lambda: len(envelope_ids(collector)) >= len(files), 60)
    assert len(envelope_ids(collector)) == len(files) and ids <= envelope_ids(collector)



def test_tls_listener_takes_tls_clients_only(tmp_path, broker, dicom_recipient):
    import ssl

    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    openssl = require_tool("openssl")
    cert, key = tmp_path / "gw.crt", tmp_path / "gw.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    _, card = dicom_recipient
    gateway = make_gateway(
        tmp_path, broker.port, card, listener={"tls": {"cert_file": str(cert), "key_file": str(key)}}
    )
    try:
        assert gateway.dicom_intake is not None
        port = gateway.dicom_intake.port
        ae = AE(ae_title="PYNETDICOM")
        ae.add_requested_context(Verification)
        client = ssl.create_default_context(cafile=str(cert))
        assoc = ae.associate("127.0.0.1", port, ae_title=AET, tls_args=(client, "127.0.0.1"))
        assert assoc.is_established
        assert assoc.send_c_echo().Status == SUCCESS
        assoc.release()
        ae.network_timeout = ae.acse_timeout = 5
        plain = ae.associate("127.0.0.1", port, ae_title=AET)
        assert not plain.is_established
    finally:
        gateway.shutdown(flush_timeout_s=0)
