"""The topic namespace: what a default gateway publishes is what a default receiver subscribes to."""

from __future__ import annotations

from paho.mqtt.client import topic_matches_sub

from gateway import topics
from gateway.config import parse_config
from gateway.crypto.origin import GatewayKey
from gateway.ledger import LedgerWriter
from gateway.rng import SeededRandom


def test_default_gateway_topics_reach_a_default_receiver() -> None:
    config = parse_config({"gateway": {"device_id": "gw-7"}}, environ={})
    assert topic_matches_sub(topics.ALL_ENVELOPES, config.cloud_topic)
    assert topic_matches_sub(topics.ALL_LEDGERS, config.ledger_topic)
    assert topic_matches_sub(topics.checkpoints_of(topics.ALL_LEDGERS), topics.checkpoints_of(config.ledger_topic))
    assert not topic_matches_sub(topics.ALL_ENVELOPES, config.ledger_topic)
    assert not topic_matches_sub(topics.ALL_LEDGERS, config.status_topic)


def test_scanner_topics_reach_the_gateway_and_name_their_scanner() -> None:
    config = parse_config({"gateway": {"device_id": "gw-7"}}, environ={})
    topic = topics.scanner_images("ct-3")
    assert [f for f in config.inbound_filters() if topic_matches_sub(f, topic)]
    assert topics.scanner_of(topic) == "ct-3"
    assert topics.scanner_of("site/a/scanners/mr-1/images") == "mr-1"
    assert topics.scanner_of("dicom/x") == "dicom" and topics.scanner_of("flat") == ""


def test_ledger_topics_are_told_from_envelope_topics() -> None:
    config = parse_config({"gateway": {"device_id": "gw-7"}}, environ={})
    writer = LedgerWriter(GatewayKey.generate("gw-7", SeededRandom(b"topics")), config.ledger_topic)
    assert topics.is_ledger_topic(writer.topic) and topics.is_ledger_topic(writer.checkpoint_topic)
    assert not topics.is_ledger_topic(config.cloud_topic) and not topics.is_ledger_topic(config.errors_topic)


def test_a_dicom_modality_is_named_like_a_scanner() -> None:
    from gateway.dicom.listener import routing_key

    assert routing_key(" CT 1 ") == "dicom/scanners/CT_1/images" and routing_key("") == "dicom/scanners/_/images"
    assert topics.scanner_of(routing_key("MODALITY")) == "MODALITY"
