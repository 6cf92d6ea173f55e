"""One full status of 100 vehicles: the bridge's publishing path against a bare paho client.

Both publish the same topics and payloads with QoS 1 retained to a private mosquitto, and the clock
stops when the broker has acknowledged every message. Run: python bench/publish_bench.py
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Broker
from mqttbridge.backends.bmw_legacy.parse import parse_status
from mqttbridge.config import MqttConfig
from mqttbridge.mqtt import MqttSession
from mqttbridge.publish import Publisher, VehiclePublisher
from mqttbridge.simulator import demo_vehicles

VEHICLES = 100
ROUNDS = 7


class AckCounter:
    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.done = threading.Event()

    def on_publish(self, *_args) -> None:
        self.count += 1
        if self.count >= self.target:
            self.done.set()

    def expect(self, n: int) -> None:
        self.count, self.target = 0, n
        self.done.clear()


def statuses():
    now = datetime.now(UTC)
    return [parse_status({"vehicleStatus": car.status}, car.vin, now) for car in demo_vehicles(VEHICLES)]


def bridge_round(port: int, rounds: int) -> tuple[list[float], int, int]:
    connected = threading.Event()
    session = MqttSession(
        MqttConfig(host="127.0.0.1", port=port, client_id="bench-bridge"),
        will_topic="bench/bridge/state",
        on_connect=connected.set,
        on_message=lambda m: None,
    )
    acks = AckCounter()
    session.client.on_publish = acks.on_publish
    session.start()
    connected.wait(10)
    times, count, unchanged = [], 0, 0
    for r in range(rounds):
        data = statuses()
        publisher = Publisher(session)
        vehicles = [VehiclePublisher(publisher, f"bench{r}/v{i}") for i in range(VEHICLES)]
        acks.expect(len(messages(r)))  # the same messages the bare client sends
        start = time.perf_counter()
        for vehicle, status in zip(vehicles, data, strict=True):
            vehicle.status(status)
        acks.done.wait(60)
        times.append(time.perf_counter() - start)
        count = publisher.sent
        before = publisher.sent
        for vehicle, status in zip(vehicles, data, strict=True):  # the same poll again: nothing changed
            vehicle.status(status)
        unchanged = publisher.sent - before
    session.stop(offline_payload=None)
    return times, count, unchanged


def messages(r: int) -> list[tuple[str, str]]:
    """The exact topics and payloads the bridge publishes for one full status (recorded, then replayed)."""
    recorder = _Recorder()
    publisher = Publisher(recorder)
    for i, status in enumerate(statuses()):
        VehiclePublisher(publisher, f"bare{r}/v{i}").status(status)
    return recorder.sent


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def publish(self, topic, payload, **_kwargs) -> None:
        self.sent.append((topic, payload))


def bare_round(port: int, rounds: int) -> list[float]:
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=paho.MQTTv5)
    acks = AckCounter()
    client.on_publish = acks.on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    times = []
    for r in range(rounds):
        prepared = messages(r)  # prepared outside the clock: the bare client does no work of the bridge's
        acks.expect(len(prepared))
        start = time.perf_counter()
        for topic, payload in prepared:
            client.publish(topic, payload, qos=1, retain=True)
        acks.done.wait(60)
        times.append(time.perf_counter() - start)
    client.loop_stop()
    client.disconnect()
    return times


def main() -> None:
    broker = Broker()
    try:
        bare = bare_round(broker.port, ROUNDS)
        bridge, count, unchanged = bridge_round(broker.port, ROUNDS)
    finally:
        broker.stop()
    b, m = statistics.median(bare), statistics.median(bridge)
    print(f"one full status of {VEHICLES} vehicles: {count} messages, QoS 1, retained, {ROUNDS} rounds each")
    print(f"  bare paho client : median {b * 1000:.1f} ms (min {min(bare) * 1000:.1f})")
    print(f"  mqttbridge       : median {m * 1000:.1f} ms (min {min(bridge) * 1000:.1f})")
    print(f"  ratio            : {m / b:.2f} (limit 1.5)")
    print(f"  an unchanged second poll published {unchanged} messages")


if __name__ == "__main__":
    main()
