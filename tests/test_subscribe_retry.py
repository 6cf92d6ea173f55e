"""A subscription the broker refuses (SUBACK 0x80) is asked for again while connected, not silently lost.

NATS refuses a QoS 1 subscription when it cannot create the JetStream consumer behind it in time (just after a node
of its cluster died: tests/test_nats.py shows it). paho's client is replaced by a recorder here: no broker refuses on
demand (Mosquitto grants a subscription its ACL denies and just delivers nothing)."""

from __future__ import annotations

import logging
import threading

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from mqttbridge import mqtt
from mqttbridge.config import MqttConfig
from mqttbridge.mqtt import MqttSession

from .mqtt_helpers import wait_until


class Recorder:
    """paho's subscribe, recorded: every SUBSCRIBE gets the next message id."""

    def __init__(self):
        self.sent: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def subscribe(self, topic, qos=0, options=None, **_kwargs):
        with self.lock:
            self.sent.append((topic, options.QoS if options is not None else qos))
            return 0, len(self.sent)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_refused_subscription_is_asked_for_again(monkeypatch, caplog, protocol: str) -> None:
    monkeypatch.setattr(mqtt, "SUBSCRIBE_RETRY_S", 0.01)
    config = MqttConfig(host="127.0.0.1", port=1, client_id="retry", protocol=protocol)
    session = MqttSession(config, will_topic="car/bridge/state", on_connect=lambda: None, on_message=lambda _m: None)
    recorder = Recorder()
    monkeypatch.setattr(session.client, "subscribe", recorder.subscribe)
    session.connected.set()
    session.subscribe(["car/+/+/set", "homeassistant/status"])
    assert [t for t, _ in recorder.sent] == ["car/+/+/set", "homeassistant/status"]

    granted = [ReasonCode(PacketTypes.SUBACK, identifier=1)]
    refused = [ReasonCode(PacketTypes.SUBACK, identifier=0x80)]
    with caplog.at_level(logging.WARNING, logger="mqttbridge.mqtt"):
        session._paho_subscribed(session.client, None, 2, granted, None)
        session._paho_subscribed(session.client, None, 1, refused, None)  # the first one refused
        sent = wait_until(lambda: recorder.sent[2:], what="the refused subscription asked for again")
    assert sent == [("car/+/+/set", 1)]
    assert "the broker refused the subscription to car/+/+/set; asking again in 0 s" in caplog.messages

    session.unsubscribe = lambda topic: session._subscriptions.pop(topic)  # type: ignore[method-assign]
    session.unsubscribe("car/+/+/set")  # no longer wanted: a refusal is not retried
    session._paho_subscribed(session.client, None, 3, refused, None)
    session._resubscribe("car/+/+/set")  # what the timer runs
    assert len(recorder.sent) == 3
    session.connected.clear()  # disconnected: the next connect subscribes everything anyway
    session._resubscribe("homeassistant/status")
    assert len(recorder.sent) == 3


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_at_connect_every_filter_is_subscribed_before_anything_may_be_published(monkeypatch, protocol: str) -> None:
    """Publishers wait for ``connected``: were it set before the SUBSCRIBEs went out, a poller could announce a
    vehicle on bridge/info first, and a command sent at once by whoever saw it would reach no subscription (a CI
    run of test_lockout lost one so, after a restart)."""
    config = MqttConfig(host="127.0.0.1", port=1, client_id="order", protocol=protocol)
    session = MqttSession(config, will_topic="car/bridge/state", on_connect=lambda: None, on_message=lambda _m: None)
    recorder = Recorder()
    connected_at_subscribe: list[bool] = []

    def subscribe(topic, qos=0, options=None, **kwargs):
        connected_at_subscribe.append(session.connected.is_set())
        return recorder.subscribe(topic, qos, options, **kwargs)

    monkeypatch.setattr(session.client, "subscribe", subscribe)
    session.subscribe(["car/+/+/set", "homeassistant/status"])  # before the connection: remembered
    assert recorder.sent == []
    accepted = ReasonCode(PacketTypes.CONNACK, identifier=0)
    session._paho_connect(session.client, None, None, accepted, None)
    assert [t for t, _ in recorder.sent] == ["car/+/+/set", "homeassistant/status"]
    assert connected_at_subscribe == [False, False] and session.connected.is_set()
