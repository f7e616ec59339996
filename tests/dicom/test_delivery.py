"""Delivery into a real Orthanc by C-STORE and by DICOMweb STOW-RS, each destination with a durable queue:
nothing is lost while the PACS is down, and what Orthanc stores (read back over its REST API) is the image."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from gateway import pipeline
from gateway.dicom.delivery import Delivery, Destination, key_opener, load_destinations
from gateway.dicom.orthanc import ORTHANC_AET, Orthanc, same_elements
from gateway.errors import ConfigError
from tests.broker.helpers import wait_until
from tests.dicom.conftest import FAST, OPEN
from tests.dicom.reference import pydicom_file

# Real files whose encapsulated Pixel Data has the VR the standard requires (OB): MR_small_jp2klossless.dcm
# says OW, which Orthanc (dcmtk) corrects on storage.
FILES = ["CT_small.dcm", "MR2_J2KI.dcm", "JPEG-LL.dcm"]



@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    server = Orthanc(tmp_path / "orthanc")
    yield server
    server.stop()


def envelopes(card) -> list[tuple[str, bytes, bytes]]:  # noqa: ANN001
    """(message id, envelope, original file) for the test files, protected for `card`."""
    out = []
    for name in FILES:
        data = pydicom_file(name).read_bytes()
        image = pydicom.dcmread(io.BytesIO(data))
        mask = np.zeros((int(image.Rows) * int(image.get("NumberOfFrames", 1) or 1), int(image.Columns)), bool)
        # pydicom's samples have little air around the body: the paper's carrier rule has room in them.
        result = pipeline.protect(data, card, mask=mask, carrier_rule="non-lesion", **FAST)
        out.append((result.message_id, result.envelope, data))
    return out


def destinations(orthanc: Orthanc) -> list[Destination]:
    return [
        Destination(name="pacs-dimse", kind="cstore", what="original", host="127.0.0.1", port=orthanc.dicom_port,
                    called_ae_title=ORTHANC_AET, timeout_s=10),
        Destination(name="pacs-web", kind="stow", what="marked", url=orthanc.dicomweb, timeout_s=10),
    ]


def test_orthanc_stores_the_original_by_cstore_and_the_marked_image_by_stow(orthanc, tmp_path, dicom_recipient):
    private_key, card = dicom_recipient
    orthanc.start()
    delivery = Delivery(
        destinations(orthanc), tmp_path / "queue.sqlite3", key_opener(private_key, True, OPEN["gateways"])
    ).start()
    sent = envelopes(card)
    try:
        for message_id, envelope, _ in sent:
            delivery.offer(message_id, envelope)
            delivery.offer(message_id, envelope)  # a redelivered envelope is queued once
        assert wait_until(lambda: delivery.queue.depth() == 0, 60)
    finally:
        delivery.stop()
    stored = {orthanc.tags(i)["SOPInstanceUID"]: orthanc.file(i) for i in orthanc.instances()}
    assert len(stored) == 2 * len(FILES)
    for _message_id, envelope, original in sent:
        opened = pipeline.open_(envelope, private_key, **OPEN)
        source_uid = pydicom.dcmread(io.BytesIO(original), stop_before_pixels=True).SOPInstanceUID
        marked_uid = pydicom.dcmread(io.BytesIO(opened.marked), stop_before_pixels=True).SOPInstanceUID
        # The restored original and the marked derived object: every data element (tag, VR, value) and the
        # Pixel Data bytes as sent. (Orthanc stores through dcmtk, which may re-encode sequence lengths, so
        # the data set bytes themselves are compared only where it keeps them.)
        assert same_elements(stored[source_uid], original)
        assert same_elements(stored[marked_uid], opened.marked)


def test_nothing_is_lost_while_the_pacs_is_down(orthanc, tmp_path, dicom_recipient):
    private_key, card = dicom_recipient
    queue = tmp_path / "queue.sqlite3"
    sent = envelopes(card)
    delivery = Delivery(destinations(orthanc), queue, key_opener(private_key, True, OPEN["gateways"])).start()
    for message_id, envelope, _ in sent:
        delivery.offer(message_id, envelope)
    # Orthanc is not running: every send fails, every row stays.
    assert wait_until(lambda: all(n == 0 for n in delivery.delivered.values()) and delivery.queue.depth() == 6, 5)
    delivery.stop()  # the receiver goes away too; the queue is on disk
    orthanc.start()
    delivery = Delivery(destinations(orthanc), queue, key_opener(private_key, True, OPEN["gateways"])).start()
    try:
        assert delivery.queue.depth() == 2 * len(FILES)
        assert wait_until(lambda: delivery.queue.depth() == 0, 90)
    finally:
        delivery.stop()
    assert len(orthanc.instances()) == 2 * len(FILES)


def test_catch_up_offers_stored_envelopes_the_queue_never_took(orthanc, tmp_path, dicom_recipient):
    private_key, card = dicom_recipient
    out = tmp_path / "received"
    out.mkdir()
    for message_id, envelope, _ in envelopes(card)[:2]:
        (out / f"{message_id}.msh").write_bytes(envelope)
    orthanc.start()
    delivery = Delivery(
        destinations(orthanc)[:1], tmp_path / "queue.sqlite3", key_opener(private_key, True, OPEN["gateways"])
    )
    assert delivery.catch_up(out) == 2 and delivery.catch_up(out) == 0
    delivery.start()
    try:
        assert wait_until(lambda: delivery.queue.depth() == 0, 60)
    finally:
        delivery.stop()
    assert len(orthanc.instances()) == 2


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (openssl, as an administrator makes one) and its key."""
    import subprocess

    from tests.dicom.conftest import require_tool

    cert, key = directory / "pacs.crt", directory / "pacs.key"
    subprocess.run(
        [require_tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def fewest_attempts(queue: Path, destination: str) -> int:
    """The fewest tries any queued row of `destination` has had (read beside the running queue, WAL)."""
    import sqlite3

    with sqlite3.connect(f"file:{queue}?mode=ro", uri=True) as db:
        (value,) = db.execute("SELECT MIN(attempts) FROM queue WHERE destination=?", (destination,)).fetchone()
    return int(value or 0)


def test_tls_pacs_with_a_bearer_token(tmp_path, dicom_recipient):
    """Orthanc as a hospital runs it: HTTPS with a bearer token for STOW-RS, DICOM TLS for C-STORE."""
    private_key, card = dicom_recipient
    cert, key = self_signed(tmp_path)
    token = tmp_path / "pacs.token"
    token.write_text("medshield-test-token-4b1d\n")
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token\n")
    orthanc = Orthanc(tmp_path / "orthanc", tls=(cert, key), token="medshield-test-token-4b1d").start()
    web = orthanc.dicomweb
    assert web.startswith("https://")
    good = [
        Destination(name="stow", kind="stow", what="marked", url=web, token_file=token, ca_file=cert, timeout_s=10),
        Destination(name="tls", kind="cstore", what="original", host="127.0.0.1", port=orthanc.dicom_port,
                    called_ae_title=ORTHANC_AET, ca_file=cert, timeout_s=10),
    ]
    bad = [
        Destination(name="no-token", kind="stow", what="marked", url=web, ca_file=cert, timeout_s=10),
        Destination(name="wrong-token", kind="stow", what="marked", url=web, token_file=wrong, ca_file=cert,
                    timeout_s=10),
        Destination(name="untrusted", kind="stow", what="marked", url=web, token_file=token, timeout_s=10),
        Destination(name="plain-dimse", kind="cstore", what="original", host="127.0.0.1", port=orthanc.dicom_port,
                    called_ae_title=ORTHANC_AET, timeout_s=5),
    ]
    delivery = Delivery(good + bad, tmp_path / "queue.sqlite3", key_opener(private_key, True, OPEN["gateways"]))
    sent = envelopes(card)[:2]  # a native and a compressed image; every row of a refused destination tries 3 times
    try:
        delivery.start()
        for message_id, envelope, _ in sent:
            delivery.offer(message_id, envelope)
        assert wait_until(lambda: all(delivery.queue.depth(d.name) == 0 for d in good), 60)
        # Refused (no token, a wrong one, a certificate it cannot verify, plain DIMSE on a TLS port): nothing
        # of theirs is stored, and every row is still queued for a retry (not held: fixing the setting helps).
        assert wait_until(lambda: all(fewest_attempts(tmp_path / "queue.sqlite3", d.name) >= 3 for d in bad), 60)
        for d in bad:
            assert delivery.delivered[d.name] == 0
            assert delivery.queue.depth(d.name, held=False) == len(sent), d.name
    finally:
        delivery.stop()
        stored = orthanc.stored_by_sop_instance()
        orthanc.stop()
    assert len(stored) == 2 * len(sent)
    for _, envelope, original in sent:
        opened = pipeline.open_(envelope, private_key, **OPEN)
        for data in (original, opened.marked):
            uid = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID
            assert same_elements(stored[uid], data)


def test_held_rows_are_tried_again_at_the_next_start(orthanc, tmp_path, dicom_recipient):
    private_key, card = dicom_recipient
    orthanc.start()
    queue, opener = tmp_path / "queue.sqlite3", key_opener(private_key, True, OPEN["gateways"])
    message_id, envelope, _ = envelopes(card)[0]
    # A wrong service root: Orthanc answers 404, which no retry changes; the row is held after 3 tries.
    wrong = Destination(name="web", kind="stow", what="marked", url=orthanc.url + "/no-such-root", timeout_s=10)
    delivery = Delivery([wrong], queue, opener).start()
    try:
        delivery.offer(message_id, envelope)
        assert wait_until(lambda: delivery.queue.depth("web", held=True) == 1, 30)
    finally:
        delivery.stop()
    assert orthanc.instances() == []
    # The administrator fixes the URL and restarts the receiver: the held image is delivered.
    fixed = Destination(name="web", kind="stow", what="marked", url=orthanc.dicomweb, timeout_s=10)
    delivery = Delivery([fixed], queue, opener).start()
    try:
        assert wait_until(lambda: delivery.queue.depth() == 0, 30)
    finally:
        delivery.stop()
    assert len(orthanc.instances()) == 1


def test_destination_files_are_checked(tmp_path):
    good = tmp_path / "pacs.toml"
    good.write_text('[[destination]]\nname = "a"\nkind = "stow"\nurl = "http://127.0.0.1:8042/dicom-web"\n')
    assert load_destinations(good)[0].what == "original"
    bad = tmp_path / "bad.toml"
    bad.write_text('[[destination]]\nname = "a"\nkind = "cstore"\n')
    with pytest.raises(ConfigError, match="host and port"):
        load_destinations(bad)


def test_receive_command_delivers_to_orthanc(orthanc, tmp_path, dicom_recipient, broker):
    """`medshield receive --key --pacs` as a user runs it: envelopes from the cloud broker end up in Orthanc."""
    from gateway.cli import main
    from gateway.crypto.recipients import save_recipient
    from tests.broker.helpers import publish_all

    private_key, card = dicom_recipient
    key_path, _ = save_recipient(tmp_path / "keys", private_key)
    orthanc.start()
    pacs = tmp_path / "pacs.toml"
    pacs.write_text(
        f'[[destination]]\nname = "orthanc"\nkind = "cstore"\nhost = "127.0.0.1"\nport = {orthanc.dicom_port}\n'
        f'called_ae_title = "{ORTHANC_AET}"\n'
    )
    sent = envelopes(card)
    topic = "medshield/gateways/gw-x/envelopes"

    def later() -> None:
        time.sleep(1.5)  # after the receiver subscribed
        publish_all(broker.port, [(topic, envelope) for _, envelope, _ in sent], client_id="pacs-feed")

    feeder = threading.Thread(target=later)
    feeder.start()
    from tests.dicom.conftest import GATEWAY

    card_path = GATEWAY.card.save(tmp_path / "pinned" / "gw-dicom-tests.gateway-card")
    rc = main(
        [
            "receive",
            "--broker",
            f"mqtt://127.0.0.1:{broker.port}",
            "--out",
            str(tmp_path / "out"),
            "--key",
            str(key_path),
            "--gateways",
            str(card_path),
            "--pacs",
            str(pacs),
            "--count",
            str(len(sent)),
            "--timeout",
            "60",
            "--client-id",
            "pacs-rx",
        ]
    )
    feeder.join()
    assert rc == 0
    stored = {orthanc.tags(i)["SOPInstanceUID"]: orthanc.file(i) for i in orthanc.instances()}
    for _, _, original in sent:
        uid = pydicom.dcmread(io.BytesIO(original), stop_before_pixels=True).SOPInstanceUID
        assert same_elements(stored[uid], original)
