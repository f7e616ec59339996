"""PUBACK settlement across the packet-id wrap (issue 19 D4): a row is deleted only by its own PUBACK."""

from __future__ import annotations

import threading
import time

from gateway.daemon import Gateway
from tests.broker.conftest import gateway_config
from tests.broker.helpers import Collector, TaggingProtect, publish_all, untag, wait_until

TOPIC = "medshield/scanners/ct1/images"
PACKET_IDS = 65535


def test_a_row_published_after_the_packet_id_wrap_waits_for_its_own_puback(
    tmp_path, scanner_broker, cloud_broker
) -> None:  # type: ignore[no-untyped-def]
    config = gateway_config(tmp_path, scanner_broker.port, cloud_broker.port, spool={"publish_window": 1000})
    gw = Gateway(config, TaggingProtect())
    gw.start()
    try:
        assert gw.wait_connected(10)
        # The retained `online` status took packet id 1. Use up every other id with settled publishes, so the
        # next publish (the image's row) reuses id 1, whose PUBACK arrived long ago.
        settled = threading.Semaphore(0)
        for _ in range(PACKET_IDS - 1):
            assert gw.cloud.publish("filler/t", b"", qos=1, on_done=lambda ok: settled.release())
        deadline = time.monotonic() + 120
        for _ in range(PACKET_IDS - 1):
            assert settled.acquire(timeout=max(0.0, deadline - time.monotonic()))
        assert gw.cloud.unsettled == 0
        collector = Collector(cloud_broker.port, ("medshield/gateways/+/envelopes",), client_id="wrap-collector")
        cloud_broker.stop()
        assert wait_until(lambda: not gw.cloud.connected, 10)
        publish_all(scanner_broker.port, [(TOPIC, b"after the wrap")])
        assert wait_until(lambda: gw.metrics.protected.value() == 1, 10)
        time.sleep(1.0)  # the publisher has published the rows by now (to a disconnected link)
        assert gw.spool.depth == 2  # the envelope and its ledger entry, still waiting: nothing settled them
        assert gw.metrics.published.total() == 0
        cloud_broker.start()  # the collector's persistent session survived the restart
        assert wait_until(lambda: gw.spool.depth == 0, 20)
        assert collector.wait_for(lambda: len(collector.on("/envelopes")) >= 1, 10)
        assert [untag(p)[1] for p in collector.on("/envelopes")][:1] == [b"after the wrap"]
        collector.close()
    finally:
        gw.shutdown(flush_timeout_s=1)
