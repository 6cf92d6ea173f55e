"""The daemon as a process against a real mosquitto and the simulator, observed by an MQTT client."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from mqttbridge.model import DATASETS

from .mqtt_helpers import Daemon, Mosquitto, Observer, retained_now, wait_until
from .restart_helpers import start_vendor

BASE = "car"
NAMES = ("i3", "i3_rex", "530e", "x1")
UNLOCK_CODE = "2468"
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?[+-]\d{2}:\d{2}$")
FLOW = ["INITIATED", "PENDING", "DELIVERED", "EXECUTED"]


def follows_flow(statuses: list[str], end: str = "EXECUTED") -> bool:
    """What the contract allows on a wall-clock simulator: FLOW in order, each once, a vendor status the
    bridge's poll missed skipped, from INITIATED to ``end``."""
    steps = [*FLOW[:-1], end]
    return (
        bool(statuses)
        and statuses[0] == "INITIATED"
        and statuses[-1] == end
        and all(s in steps for s in statuses)
        and [steps.index(s) for s in statuses] == sorted({steps.index(s) for s in statuses})
    )


@pytest.fixture
def sim():
    server = start_vendor(real_time_step=0.3)
    yield server
    server.stop()


def sim_requests(sim, part: str) -> list[dict]:
    import requests

    return [r for r in requests.get(f"{sim.url}/_sim/requests", timeout=5).json() if part in r["path"]]


def sim_fault(sim, **rule) -> None:
    import requests

    requests.post(f"{sim.url}/_sim/faults", json=rule, timeout=5).raise_for_status()


def bridge_config(broker: Mosquitto, sim, state_dir: Path, *, names=NAMES, **account) -> dict:
    vehicles = []
    for car, name in zip(sim.cars, NAMES, strict=True):
        if name not in names:
            continue
        entry = {"vin": car.vin, "name": name}
        if name == "i3":
            entry["allow_unlock"] = True
        if name == "i3_rex":
            entry.update(allow_unlock=True, unlock_code=UNLOCK_CODE)
        vehicles.append(entry)
    acc = {
        "name": "sim",
        "provider": "bmw_legacy",
        "base_url": sim.url,
        "username": "demo@example.com",
        "password": "demo",
        "api_key": "key",
        "api_secret": "secret-of-the-app",
        "retries": 2,
        "poll": {"interval": 60, "offline_after": 2},
        "commands": {"poll_interval": 0.1, "timeout": 15, "refresh_delay": 0},
        "vehicles": vehicles,
    }
    acc.update(account)
    return {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "base_topic": BASE, "client_id": "bridge-under-test"},
        "state_dir": str(state_dir),
        "log_level": "DEBUG",
        "accounts": [acc],
    }


@pytest.fixture
def running(broker, sim, tmp_path: Path):
    """The daemon running with the four demo cars, and an observer that saw it come up."""
    observer = Observer(broker.port)
    daemon = Daemon(tmp_path, bridge_config(broker, sim, tmp_path / "state"))
    daemon.start()
    try:
        for name in NAMES:  # availability comes last after a vehicle's first read
            observer.wait_topic(f"{BASE}/{name}/availability", "online", what=f"{name} online")
        yield daemon, observer
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- daemon log ---\n{daemon.tail()}") from None
    finally:
        if daemon.alive():
            daemon.stop()
        observer.close()


def _value(msg) -> object:
    return json.loads(msg.payload)


# --- topics and payloads ---------------------------------------------------------------------------


def test_every_topic_and_payload_format(running, sim) -> None:
    _daemon, obs = running
    assert obs.wait_topic(f"{BASE}/bridge/state").text == "online"
    info = _value(obs.wait_for(lambda m: m.topic == f"{BASE}/bridge/info" and len(_value(m)["vehicles"]) == 4))
    assert {v["root"] for v in info["vehicles"]} == {f"{BASE}/{n}" for n in NAMES}
    for car, name in zip(sim.cars, NAMES, strict=True):
        root = f"{BASE}/{name}"
        state = _value(obs.last(f"{root}/state"))
        assert obs.wait_topic(f"{root}/availability").text == "online"
        assert ISO.match(state["fetched_at"]) and ISO.match(state["updated_at"])
        assert isinstance(state["odometer"], int)
        for field, value in state.items():
            if field == "location":
                continue
            msg = obs.wait_topic(f"{root}/{field}")
            if isinstance(value, bool):
                assert msg.text in ("true", "false"), field
            elif isinstance(value, int | float):
                assert _value(msg) == value and not msg.text.startswith('"'), field
            elif isinstance(value, str):
                assert msg.text == value, field
            else:
                assert _value(msg) == value, field
        location = _value(obs.wait_topic(f"{root}/location"))
        assert set(location) >= {"latitude", "longitude"}
        assert all(isinstance(v, int | float) for v in location.values())
        assert state["door_lock_state"] in ("SECURED", "LOCKED", "UNLOCKED")
        expected_lock = "UNLOCKED" if state["door_lock_state"] == "UNLOCKED" else "LOCKED"
        assert obs.wait_topic(f"{root}/lock").text == expected_lock
        discovery = _value(obs.wait_topic(f"homeassistant/device/mqttbridge_{car.vin}/config"))
        assert discovery["device"]["serial_number"] == car.vin
    electric = _value(obs.last(f"{BASE}/i3/state"))
    assert isinstance(electric["battery_level"], int) and isinstance(electric["plugged_in"], bool)
    assert electric["charging_status"] in (
        "CHARGING",
        "NOT_CHARGING",
        "WAITING_FOR_CHARGING",
        "INVALID",
        "FINISHED_FULLY_CHARGED",
        "FINISHED_NOT_FULL",
        "ERROR",
    )
    petrol = _value(obs.last(f"{BASE}/x1/state"))
    assert "battery_level" not in petrol and isinstance(petrol["fuel_level"], int | float)


def test_a_poll_that_changes_nothing_publishes_nothing(running) -> None:
    _daemon, obs = running
    mark = obs.mark()
    obs.publish(f"{BASE}/x1/refresh/set", "PRESS")
    obs.wait_for(lambda m: m.topic == f"{BASE}/x1/refresh/status" and m.text == "EXECUTED", start=mark)
    datasets = tuple(f"{BASE}/x1/{name}" for name in DATASETS)  # read on their own schedule
    published = {
        m.topic
        for m in obs.since(mark)
        if m.topic.startswith(f"{BASE}/x1/")
        and m.topic != f"{BASE}/x1/refresh/set"
        and not m.topic.startswith(datasets)
    }
    assert published == {f"{BASE}/x1/refresh/status", f"{BASE}/x1/refresh/execution"}, published


# --- commands --------------------------------------------------------------------------------------


def _statuses(obs, root: str, command: str, mark: int) -> list[str]:
    return [m.text for m in obs.since(mark, f"{root}/{command}/status")]


def test_lock_goes_through_every_transition(running, sim) -> None:
    _daemon, obs = running
    root = f"{BASE}/x1"  # the demo X1 starts unlocked
    assert obs.wait_topic(f"{root}/lock").text == "UNLOCKED"
    mark = obs.mark()
    obs.publish(f"{root}/lock/set", json.dumps({"action": "LOCK", "request_id": "r-1"}))
    obs.wait_for(lambda m: m.topic == f"{root}/lock/status" and m.text == "EXECUTED", start=mark, what="EXECUTED")
    assert follows_flow(_statuses(obs, root, "lock", mark)), _statuses(obs, root, "lock", mark)
    records = [_value(m) for m in obs.since(mark, f"{root}/lock/execution")]
    assert [r["status"] for r in records] == _statuses(obs, root, "lock", mark)  # a record per status
    assert all(r["request_id"] == "r-1" and r["service"] == "DOOR_LOCK" and r["error"] is None for r in records)
    assert records[0]["event_id"].endswith("@bmw.de") and ISO.match(records[-1]["updated_at"])
    assert [m.text for m in obs.since(mark, f"{root}/lock")] == ["LOCKING", "LOCKED"]  # LOCKED at EXECUTED
    # then the re-read confirms it
    obs.wait_for(
        lambda m: m.topic == f"{root}/state" and _value(m)["door_lock_state"] == "SECURED",
        start=mark,
        what="the re-read",
    )
    assert [m.text for m in obs.since(mark, f"{root}/lock")] == ["LOCKING", "LOCKED"]


def test_unlock_with_the_right_code(running) -> None:
    _daemon, obs = running
    root = f"{BASE}/i3_rex"
    mark = obs.mark()
    obs.publish(f"{root}/lock/set", json.dumps({"action": "UNLOCK", "code": UNLOCK_CODE}))
    obs.wait_for(lambda m: m.topic == f"{root}/lock/status" and m.text == "EXECUTED", start=mark, what="EXECUTED")
    assert follows_flow(_statuses(obs, root, "lock", mark)), _statuses(obs, root, "lock", mark)
    assert [m.text for m in obs.since(mark, f"{root}/lock")] == ["UNLOCKING", "UNLOCKED"]
    assert UNLOCK_CODE not in "".join(m.text for m in obs.since(mark) if not m.topic.endswith("/set"))


@pytest.mark.parametrize("outcome", ["NOT_EXECUTED", "TIMED_OUT"])
def test_vendor_outcomes_and_the_lock_returns_to_the_real_state(running, sim, outcome: str) -> None:
    _daemon, obs = running
    root = f"{BASE}/i3"
    sim_fault(sim, endpoint="serviceExecutionStatus", outcome=outcome, count=1)
    mark = obs.mark()
    obs.publish(f"{root}/lock/set", "UNLOCK")
    obs.wait_for(lambda m: m.topic == f"{root}/lock/status" and m.text == outcome, start=mark, what=outcome)
    assert _statuses(obs, root, "lock", mark) == ["INITIATED", "PENDING", "DELIVERED", outcome]
    obs.wait_for(lambda m: m.topic == f"{root}/lock" and m.text == "LOCKED", start=mark, what="back to LOCKED")
    events = [_value(m) for m in obs.since(mark, f"{BASE}/bridge/event")]
    assert any(e["event"] == "command_failed" and e["status"] == outcome for e in events)


def test_vendor_error_is_failed(running, sim) -> None:
    _daemon, obs = running
    root = f"{BASE}/i3"
    sim_fault(sim, endpoint="executeService", http_status=500, count=1)
    mark = obs.mark()
    obs.publish(f"{root}/horn/set", "PRESS")
    msg = obs.wait_for(
        lambda m: m.topic == f"{root}/horn/execution" and _value(m)["status"] == "FAILED", start=mark, what="FAILED"
    )
    assert "HTTP 500" in _value(msg)["error"]
    assert len(sim_requests(sim, "executeService")) == 1  # reported, not resent


def test_mqtt5_response_topic_with_correlation_data(running) -> None:
    _daemon, obs = running
    mark = obs.mark()
    obs.publish(
        f"{BASE}/i3/flash_lights/set", json.dumps({"count": 2}), response_topic="reply/me", correlation_data=b"corr-42"
    )
    obs.wait_for(lambda m: m.topic == "reply/me" and _value(m)["status"] == "EXECUTED", start=mark)
    replies = obs.since(mark, "reply/me")
    assert follows_flow([_value(m)["status"] for m in replies]), [_value(m)["status"] for m in replies]
    assert all(m.correlation_data == b"corr-42" for m in replies)


def test_refused_unlocks(running, sim) -> None:
    _daemon, obs = running
    cases = [
        (f"{BASE}/530e", "UNLOCK", "not allowed"),
        (f"{BASE}/i3_rex", "UNLOCK", "needs an unlock code"),
        (f"{BASE}/i3_rex", json.dumps({"action": "UNLOCK", "code": "0000"}), "wrong unlock code"),
    ]
    for root, payload, error in cases:
        mark = obs.mark()
        obs.publish(f"{root}/lock/set", payload)
        msg = obs.wait_for(lambda m, r=root: m.topic == f"{r}/lock/execution", start=mark)
        record = _value(msg)
        assert record["status"] == "REJECTED" and error in record["error"], record
    assert sim_requests(sim, "executeService") == []


MALFORMED = [
    ("lock", b""),
    ("lock", b"   "),
    ("lock", b"OPEN"),
    ("lock", b"lock please"),
    ("lock", b"{"),
    ("lock", b"[1,2]"),
    ("lock", b'{"action": "SMASH"}'),
    ("lock", b'{"action": 5}'),
    ("lock", b'{"action": "LOCK", "force": true}'),
    ("lock", b"\xff\xfe"),
    ("lock", b"x" * 5000),
    ("lock", b'{"action": "LOCK", "request_id": ""}'),
    ("climate", b"HOT"),
    ("climate", b'{"action": "ON", "temperature": 99}'),
    ("climate", b'{"action": "ON", "temperature": "warm"}'),
    ("climate", b'{"action": "ON", "defrost": "yes"}'),
    ("climate", b'{"action": "ON", "temperature": 21}'),
    ("charging", b"MAYBE"),
    ("flash_lights", b'{"count": 0}'),
    ("flash_lights", b'{"count": 2.5}'),
    ("horn", b"HONK"),
    ("find_vehicle", b"null"),
    ("refresh", b"NOW"),
    ("charging_profile", b"[]"),
    ("charging_profile", b"{}"),
    ("teleport", b"PRESS"),
    ("climate", b"OFF"),
]


def test_malformed_payloads_are_rejected_and_never_reach_the_vendor(running, sim) -> None:
    daemon, obs = running
    assert len(MALFORMED) >= 20
    root = f"{BASE}/i3"
    for command, payload in MALFORMED:
        mark = obs.mark()
        obs.publish(f"{root}/{command}/set", payload)
        msg = obs.wait_for(
            lambda m, c=command: m.topic == f"{root}/{c}/execution",
            start=mark,
            what=f"a record for {command} {payload[:30]!r}",
        )
        record = _value(msg)
        assert record["status"] == "REJECTED" and record["error"], (command, payload, record)
    assert sim_requests(sim, "executeService") == []
    assert daemon.alive()
    mark = obs.mark()  # and it still works
    obs.publish(f"{root}/horn/set", "PRESS")
    obs.wait_for(lambda m: m.topic == f"{root}/horn/status" and m.text == "EXECUTED", start=mark)


def test_retained_commands_are_never_acted_on(broker, sim, tmp_path: Path) -> None:
    observer = Observer(broker.port)
    observer.publish(f"{BASE}/i3/lock/set", "UNLOCK", retain=True)  # left over before the bridge starts
    daemon = Daemon(tmp_path, bridge_config(broker, sim, tmp_path / "state"))
    daemon.start()
    try:
        event = observer.wait_for(
            lambda m: m.topic == f"{BASE}/bridge/event" and _value(m)["event"] == "retained_command_ignored",
            what="the event",
        )
        assert _value(event)["topic"] == f"{BASE}/i3/lock/set"
        observer.wait_topic(f"{BASE}/i3/state")
        mark = observer.mark()  # published retained while the bridge runs: still ignored (MQTT 5)
        observer.publish(f"{BASE}/i3/lock/set", "UNLOCK", retain=True)
        observer.wait_for(
            lambda m: m.topic == f"{BASE}/bridge/event" and _value(m)["event"] == "retained_command_ignored", start=mark
        )
        observer.wait_for(
            lambda m: m.topic == f"{BASE}/i3/lock/set" and m.payload == b"",
            start=mark,
            what="the retained command deleted",
        )
        assert retained_now(broker.port, f"{BASE}/i3/lock/set") == {}
        events = [_value(m)["event"] for m in observer.since(mark, f"{BASE}/bridge/event")]
        assert events.count("retained_command_ignored") == 1, events  # its deletion is no command
        assert sim_requests(sim, "executeService") == []
    finally:
        daemon.stop()
        observer.close()


# --- broker and vendor failures ------------------------------------------------------------------


@pytest.mark.slow
def test_broker_restart_brings_everything_back(running, broker) -> None:
    daemon, obs = running
    before = retained_now(broker.port, f"{BASE}/#")
    assert f"{BASE}/i3/state" in before and f"{BASE}/bridge/state" in before
    obs.close()
    broker.stop()  # no persistence: every retained message is gone
    broker.start()
    topics = set(before)
    wait_until(lambda: topics <= set(retained_now(broker.port, f"{BASE}/#")), what="all retained topics back")
    after = retained_now(broker.port, f"{BASE}/#")
    assert after[f"{BASE}/bridge/state"] == b"online"
    assert json.loads(after[f"{BASE}/i3/state"]) == json.loads(before[f"{BASE}/i3/state"])
    assert daemon.alive()


@pytest.mark.slow
def test_vendor_failing_makes_the_vehicle_offline_then_online(running, sim) -> None:
    _daemon, obs = running
    root = f"{BASE}/x1"
    obs.wait_topic(f"{root}/availability", "online")
    sim_fault(sim, endpoint="status", http_status=500, count=1000)
    for _ in range(2):  # offline_after: 2
        mark = obs.mark()
        obs.publish(f"{root}/refresh/set", "PRESS")
        obs.wait_for(lambda m: m.topic == f"{root}/refresh/status" and m.text == "FAILED", start=mark)
    obs.wait_topic(f"{root}/availability", "offline")
    sim_fault(sim, endpoint="status", http_status=500, count=0)
    mark = obs.mark()
    obs.publish(f"{root}/refresh/set", "PRESS")
    obs.wait_for(lambda m: m.topic == f"{root}/availability" and m.text == "online", start=mark)


# --- Home Assistant discovery --------------------------------------------------------------------


@pytest.mark.slow
def test_home_assistant_online_republishes_discovery(running, sim) -> None:
    _daemon, obs = running
    topic = f"homeassistant/device/mqttbridge_{sim.cars[0].vin}/config"
    obs.wait_topic(topic)
    mark = obs.mark()
    obs.publish("homeassistant/status", "online")
    obs.wait_for(lambda m: m.topic == topic, start=mark, what="discovery again")


@pytest.mark.slow
def test_removed_vehicle_loses_its_discovery_at_next_start(broker, sim, tmp_path: Path) -> None:
    observer = Observer(broker.port)
    state = tmp_path / "state"
    gone = f"homeassistant/device/mqttbridge_{sim.cars[3].vin}/config"
    kept = f"homeassistant/device/mqttbridge_{sim.cars[0].vin}/config"
    (tmp_path / "a").mkdir()
    first = Daemon(tmp_path / "a", bridge_config(broker, sim, state))
    first.start()
    try:
        observer.wait_topic(gone)
        observer.wait_topic(kept)
    finally:
        assert first.stop() == 0
    assert gone in retained_now(broker.port, "homeassistant/#")
    (tmp_path / "b").mkdir()
    second = Daemon(tmp_path / "b", bridge_config(broker, sim, state, names=("i3",)))
    mark = observer.mark()
    second.start()
    try:
        observer.wait_for(lambda m: m.topic == gone and m.payload == b"", start=mark, what="removal")
        remaining = retained_now(broker.port, "homeassistant/#")
        assert gone not in remaining and kept in remaining
    finally:
        second.stop()
        observer.close()


def test_sigterm_leaves_offline_retained_and_exits_0(running, broker) -> None:
    daemon, _obs = running
    assert daemon.stop(signal.SIGTERM) == 0
    assert retained_now(broker.port, f"{BASE}/bridge/state") == {f"{BASE}/bridge/state": b"offline"}


# --- mqttbridge demo -------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_needs_no_configuration(broker) -> None:
    import subprocess
    import sys

    observer = Observer(broker.port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqttbridge", "demo", "--broker", f"127.0.0.1:{broker.port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("simulator: http://127.0.0.1:")
        lines = [proc.stdout.readline() for _ in range(2)]
        assert f"mosquitto_sub -h 127.0.0.1 -p {broker.port} -v -t 'car/#'" in "".join(lines)
        for name in NAMES:
            observer.wait_topic(f"car/{name}/state")
        mark = observer.mark()
        observer.publish("car/i3/lock/set", "LOCK")
        observer.wait_for(lambda m: m.topic == "car/i3/lock/status" and m.text == "EXECUTED", start=mark)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0  # stopping: the bridge, the purge and the simulator
        observer.close()
    # the demo deletes what it published when it stops (demo --keep would leave it)
    assert retained_now(broker.port, "car/#") == {}


def test_demo_without_a_broker_says_how_to_get_one() -> None:
    import subprocess
    import sys

    from .mqtt_helpers import free_port

    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "mqttbridge", "demo", "--broker", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert f"no MQTT broker answers at 127.0.0.1:{port}" in done.stderr
    assert "apt-get install mosquitto" in done.stderr and "--broker" in done.stderr
    assert "Traceback" not in done.stderr


# --- the MQTT session -----------------------------------------------------------------------------


@pytest.mark.slow
def test_broker_down_at_start_then_up(tmp_path: Path, sim) -> None:
    broker = Mosquitto(tmp_path)  # port chosen, broker not started yet
    daemon = Daemon(tmp_path, bridge_config(broker, sim, tmp_path / "state", names=("i3",)))
    daemon.start()
    try:
        wait_until(
            lambda: "cannot connect" in daemon.tail() or "Connection refused" in daemon.tail(),
            what="the daemon noticing the broker is down",
        )
        assert daemon.alive()
        broker.start()
        observer = Observer(broker.port)
        try:
            observer.wait_topic(f"{BASE}/i3/availability", "online")
            assert retained_now(broker.port, f"{BASE}/bridge/state") == {f"{BASE}/bridge/state": b"online"}
        finally:
            observer.close()
    finally:
        daemon.stop()
        broker.stop()


@pytest.mark.slow
def test_mqtt_3_1_1_on_request(broker, sim, tmp_path: Path) -> None:
    config = bridge_config(broker, sim, tmp_path / "state", names=("x1",))
    config["mqtt"]["protocol"] = "3.1.1"
    observer = Observer(broker.port)
    daemon = Daemon(tmp_path, config)
    daemon.start()
    try:
        observer.wait_topic(f"{BASE}/x1/availability", "online")
        mark = observer.mark()
        observer.publish(f"{BASE}/x1/lock/set", "LOCK")
        observer.wait_for(lambda m: m.topic == f"{BASE}/x1/lock/status" and m.text == "EXECUTED", start=mark)
        assert follows_flow(_statuses(observer, f"{BASE}/x1", "lock", mark))
    finally:
        assert daemon.stop() == 0
        observer.close()
    assert retained_now(broker.port, f"{BASE}/bridge/state") == {f"{BASE}/bridge/state": b"offline"}
