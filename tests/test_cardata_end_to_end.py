"""BMW CarData the way a user meets it (issue 11's "done means"): the daemon as a process against the CarData
simulator and a real Mosquitto, watched by a real MQTT client. The code shown on the login topic is approved,
the car's fields and Home Assistant entities appear, a stream message updates what it carries, commands other
than refresh are refused, and the REST calls stay few."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from mqttbridge.simulator.cardata import CarDataSimulator

from .mqtt_helpers import Daemon, Mosquitto, Observer, retained_now

pytestmark = pytest.mark.slow

BEV = "WBY31AW090TEST001"  # the i4 M50 of the real captures (the simulator's first car)
CLIENT_ID = "3f1c2a8e-5b7d-4e91-a0c6-7d2e9b4f1a55"


@pytest.fixture
def sim():
    with CarDataSimulator(fixtures=True) as simulator:
        yield simulator


def config(tmp_path: Path, broker: Mosquitto, sim: CarDataSimulator) -> dict[str, Any]:
    return {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "client_id": "bridge-cardata", "base_topic": "car"},
        "homeassistant": {"discovery": "device"},
        "state_dir": str(tmp_path / "state"),
        "accounts": [
            sim.account("bmw", CLIENT_ID, stream={"republish": "bmw"}, vehicles=[{"vin": BEV, "name": "i4"}]),
        ],
    }


DOOR = "car/i4/cabin_door_row1_driver_is_open"


def test_approve_the_code_then_fields_appear_and_the_stream_updates_them(
    tmp_path: Path, broker: Mosquitto, sim: CarDataSimulator
) -> None:
    assert BEV in sim.vins
    day = datetime.now(UTC).date()  # the simulator's quota starts again at 00:00 UTC, its request log does not
    daemon = Daemon(tmp_path, config(tmp_path, broker, sim))
    observer = Observer(broker.port, ("car/#", "homeassistant/#", "bmw/#"))
    daemon.start()
    try:
        # 1. the login topic says what to do; the user does it at "BMW's" page (the simulator's control)
        login = observer.wait_for(
            lambda m: m.topic == "car/bridge/accounts/bmw/login" and b"device_code" in m.payload,
            what="the device code on the login topic",
        )
        shown = json.loads(login.text)
        assert shown["state"] == "action_required"
        assert shown["user_code"] in sim.pending_user_codes()
        assert shown["verification_uri"].startswith(sim.url)
        answer = requests.post(f"{sim.url}/_sim/device/approve", json={"user_code": shown["user_code"]}, timeout=5)
        assert answer.status_code == 200, answer.text

        # 2. logged in: the car's fields appear on MQTT and in Home Assistant
        observer.wait_for(
            lambda m: m.topic == "car/bridge/accounts/bmw/login" and json.loads(m.text) == {"state": "ok"},
            what="login ok",
        )
        observer.wait_topic("car/i4/battery_level", "74", what="the i4's state of charge from the REST read")
        state = json.loads(
            observer.wait_for(lambda m: m.topic == "car/i4/state" and b"range_electric" in m.payload).text
        )
        assert state["battery_level"] == 74 and state["charging_status"] == "NOT_CHARGING"
        assert "updated_at" in state and "fetched_at" in state
        device = observer.wait_for(
            lambda m: m.topic.startswith("homeassistant/device/") and b"car/i4/battery_level" in m.payload,
            what="the i4's Home Assistant device",
        )
        components = json.loads(device.text)["components"].values()
        buttons = [c for c in components if c["platform"] == "button"]
        assert [b["command_topic"] for b in buttons] == ["car/i4/refresh/set"]  # read-only: refresh only
        assert not any(c["platform"] in ("lock", "switch", "climate") for c in components)

        # 3. the stream: subscribed (the account's retained stream topic says so), then a message arrives
        # within the same second on the bridge's topics (the simulator keeps nothing for later: QoS 0)
        stream = observer.wait_for(
            lambda m: m.topic == "car/bridge/accounts/bmw/stream" and json.loads(m.text)["subscribed"],
            what="the stream subscribed",
        )
        assert json.loads(stream.text)["conflict"] is False
        mark = observer.mark()
        sim.stream_message(BEV, {"vehicle.drivetrain.batteryManagement.header": {"value": 75, "unit": "%"}})
        observer.wait_topic("car/i4/battery_level", "75", start=mark, what="the state of charge from the stream")

        # 4. a stream message changes only what it carries
        mark = observer.mark()
        sim.stream_message(BEV, {"vehicle.cabin.door.row1.driver.isOpen": {"value": "OPEN"}})
        observer.wait_topic(
            "car/i4/cabin_door_row1_driver_is_open", "OPEN", start=mark, what="the door from the stream"
        )
        raw = observer.wait_for(lambda m: m.topic == f"bmw/{BEV}", start=mark, what="the raw message relayed")
        assert not raw.retain and json.loads(raw.text)["vin"] == BEV
        changed = {m.topic for m in observer.since(mark) if m.topic.startswith("car/i4/")}
        # and the times: fetched_at is when the bridge got it, to the second (it changed when this message came in
        # another second than the one before: a CI run saw it)
        assert changed <= {DOOR, "car/i4/state", "car/i4/updated_at", "car/i4/fetched_at"}, changed

        # 5. read-only: a command is refused, and the vendor is not asked
        mark = observer.mark()
        observer.publish("car/i4/lock/set", "LOCK")
        record = json.loads(observer.wait_topic("car/i4/lock/execution", start=mark).text)
        assert record["status"] == "REJECTED" and record["error"].startswith("read-only provider")

        # 6. few REST calls: mappings, basic data, the container (listed, created once), one telematic read
        quota = sim.quota(sim.gcid(CLIENT_ID))
        calls = [e["method"] + " " + e["path"] for e in sim.simulation.log if e["path"].startswith("/customers/")]
        print(f"REST calls from the first start to a streamed update: {len(calls)}: {calls}")
        # mappings, the i4's basic data (the account names only the i4: the X1's is not read), the container
        # listed and created, the i4's telematic data
        assert len(calls) == 5, calls
        if datetime.now(UTC).date() == day:  # no UTC midnight inside the test
            assert quota["used"] == 5, (quota, calls)
        assert not [c for c in calls if "WBY1Z21020TEST002" in c]
        budget = json.loads(observer.wait_topic("car/bridge/accounts/bmw/budget").text)
        assert budget["limit"] == 50
        # what a user subscribing now gets: the login done, the stream's state, the car
        retained = retained_now(broker.port, "car/#")
        assert json.loads(retained["car/bridge/accounts/bmw/login"]) == {"state": "ok"}
        assert json.loads(retained["car/bridge/accounts/bmw/stream"])["subscribed"] is True
        assert retained["car/i4/battery_level"] == b"75" and retained[DOOR] == b"OPEN"
    finally:
        observer.close()
        code = daemon.stop()
    assert code == 0, daemon.tail()
