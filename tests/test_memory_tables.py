"""The lean retained table (topics grouped by parent, short payloads shared, long ones compressed), the
snapshot read group by group, a republish that stops when the connection drops, and discovery that keeps
only its topics: less memory, the same behaviour (CONTRACT: only changes republished, everything after a
reconnect, the snapshot holds the last published state, lost entities removed)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from mqttbridge.bridge import Bridge
from mqttbridge.persist import SnapshotKeeper
from mqttbridge.publish import PACK_OVER, Publisher, pack, unpack
from mqttbridge.simulator import demo_vehicles
from mqttbridge.statestore import StateStore

from .conftest import Sim, account_data, make_config
from .fake_session import FakeSession


class RecordingSession:
    def __init__(self, connected: threading.Event | None = None) -> None:
        self.sent: list[tuple[str, str | bytes | None]] = []
        if connected is not None:
            self.connected = connected

    def publish(self, topic, payload, *, retain=True, qos=1, correlation_data=None) -> None:
        self.sent.append((topic, payload))


def long_payload(marker: str) -> str:
    return json.dumps({"marker": marker, "components": {f"entity_{n}": {"platform": "sensor"} for n in range(200)}})


def test_a_long_payload_is_kept_compressed_and_given_back_as_it_was_published() -> None:
    session = RecordingSession()
    publisher = Publisher(session)
    payload = long_payload("a")
    assert len(payload) > PACK_OVER and isinstance(pack(payload), bytes) and len(pack(payload)) < len(payload) / 4
    assert publisher.retained("homeassistant/device/x/config", payload)
    assert session.sent == [("homeassistant/device/x/config", payload)]  # sent as it is, never compressed
    assert publisher.payload("homeassistant/device/x/config") == payload
    assert not publisher.retained("homeassistant/device/x/config", payload)  # a repeat is still recognised
    assert publisher.retained("homeassistant/device/x/config", long_payload("b"))
    assert publisher.retained_items() == [("homeassistant/device/x/config", long_payload("b"))]
    assert unpack(pack("short")) == "short"


def test_short_payloads_are_one_shared_copy() -> None:
    built = "".join(["tr", "ue"])
    assert built is not "true"  # noqa: F632 (two objects with the same text)
    assert pack(built) is pack("true")


def test_topics_of_every_shape_are_kept_apart_and_given_back_whole() -> None:
    publisher = Publisher(RecordingSession())
    topics = ["a", "a/b", "a/b/", "a//b", "/x", "car/x1", "car/x1/state", "car/x1/lock/status", "car/x10/state"]
    for n, topic in enumerate(topics):
        publisher.retained(topic, f"p{n}")
    assert dict(publisher.retained_items()) == {topic: f"p{n}" for n, topic in enumerate(topics)}
    assert sorted(publisher.topics_under("car/x1/")) == ["car/x1/lock/status", "car/x1/state"]
    assert [publisher.payload(t) for t in ("a/b/", "a//b", "car/x1", "nothing/here")] == ["p2", "p3", "p5", None]
    for topic in topics:
        publisher.clear(topic)
    assert publisher.retained_items() == [] and publisher.parents() == []


def test_restore_keeps_what_was_published_since() -> None:
    publisher = Publisher(RecordingSession())
    publisher.retained("car/i3/odometer", "11")
    publisher.restore({"car/i3/odometer": "10", "car/i3/state": long_payload("s")})
    assert publisher.payload("car/i3/odometer") == "11" and publisher.payload("car/i3/state") == long_payload("s")


def test_republish_all_stops_when_the_connection_drops_and_the_next_connect_sends_everything() -> None:
    online = threading.Event()
    online.set()
    session = RecordingSession(online)
    publisher = Publisher(session)
    for n in range(10):
        publisher.retained(f"car/v{n}/state", f"s{n}")
    session.sent.clear()

    drop = [3]

    def drop_after_three(topic, payload, *, retain=True, qos=1, correlation_data=None) -> None:
        session.sent.append((topic, payload))
        if len(session.sent) in drop:
            online.clear()  # the broker went away meanwhile

    session.publish = drop_after_three  # type: ignore[method-assign]
    assert publisher.republish_all() == 3  # paho would only queue the rest, to send it twice after the reconnect
    drop.clear()
    online.set()
    session.sent.clear()
    assert publisher.republish_all() == 10
    assert sorted(session.sent) == sorted((f"car/v{n}/state", f"s{n}") for n in range(10))


def test_the_snapshot_is_read_group_by_group_and_holds_what_it_held(tmp_path: Path) -> None:
    publisher = Publisher(RecordingSession())
    published = {
        "car/state": "car's own",  # the vehicle at the root "car"
        "car/x1": "x1 itself belongs to car",
        "car/x1/state": "x1",
        "car/x1/lock/status": "EXECUTED",
        "car/x1/trips/last/distance": "12",
        "car/bridge/info": "{}",  # the bridge's own: never a vehicle's
        "homeassistant/device/x1/config": long_payload("x1"),
        "elsewhere/x": "no vehicle's",
    }
    roots = {"VIN0": ("acc", "car"), "VIN1": ("acc", "car/x1"), "VIN2": ("acc", "car/x2")}
    keeper = SnapshotKeeper(StateStore(tmp_path), publisher, lambda: roots, excluded=("car/bridge/", "homeassistant/"))
    for topic, payload in published.items():
        publisher.retained(topic, payload)
    assert keeper.collect() == {
        "VIN0": {
            "account": "acc",
            "root": "car",
            "topics": {"car/state": "car's own", "car/x1": "x1 itself belongs to car"},
        },
        "VIN1": {
            "account": "acc",
            "root": "car/x1",
            "topics": {"car/x1/state": "x1", "car/x1/lock/status": "EXECUTED", "car/x1/trips/last/distance": "12"},
        },
        "VIN2": {"account": "acc", "root": "car/x2", "topics": {}},
    }
    assert keeper.save()
    assert {v.vin: v.topics for v in keeper.load()}["VIN1"]["car/x1/lock/status"] == "EXECUTED"


def test_discovery_keeps_only_its_topics_and_still_removes_a_lost_entity(tmp_path: Path, sim: Sim) -> None:
    x1 = demo_vehicles()[3].vin
    config = make_config(
        tmp_path,
        [account_data(sim.url, vehicles=[{"vin": x1, "name": "x1"}], poll={"interval": 600})],
        mqtt={"base_topic": "car"},
    )
    bridge = Bridge(config, session_factory=FakeSession)
    bridge.start()
    session = bridge.session
    assert isinstance(session, FakeSession)
    try:
        topic = f"homeassistant/device/mqttbridge_{x1}/config"
        session.wait_for(lambda p: p.topic == topic, what="x1 announced")
        ctx = bridge.by_root["car/x1"]
        assert ctx.announced == [topic]  # the payload is the publisher's, compressed there
        before = json.loads(bridge.publisher.payload(topic) or "")
        assert before["components"]["fuel_level"]["platform"] == "sensor"
        mark = session.mark()
        sim.patch_status(x1, {"remainingFuel": None})  # the car stops reporting its fuel
        ctx.read_status()
        sent = [json.loads(p.text) for p in session.since(mark) if p.topic == topic]
        assert sent[0]["components"]["fuel_level"] == {"platform": "sensor"}  # Home Assistant removes it
        assert "fuel_level" not in sent[-1]["components"]
        assert json.loads(bridge.publisher.payload(topic) or "") == sent[-1]
        mark = session.mark()
        ctx.read_status()  # nothing changed: nothing is announced again
        assert [p for p in session.since(mark) if p.topic == topic] == []
    finally:
        bridge.stop()
