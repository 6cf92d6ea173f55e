"""The command gateway's records and answers, against the simulator, with an in-memory broker session.

What a user's automation sees on the retained topics: a refusal never replaces the record of a command
that reached the vendor, the lock shows what a confirmed command produced, every command gets an answer
(also for a vehicle nobody bridges), response topics cannot point at the bridge's own topics, and junk
never reaches the vendor.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import mqttbridge.announcer as announcer_module
from mqttbridge.bridge import Bridge
from mqttbridge.simulator import demo_vehicles

from .conftest import Sim, account_data, make_config
from .fake_session import FakeSession, Published

VINS = [car.vin for car in demo_vehicles()]
I3, X1 = VINS[0], VINS[3]


def is_record(request_id: str, status: str | None = None, root: str = "car/x1", command: str = "lock"):
    def check(p: Published) -> bool:
        if p.topic != f"{root}/{command}/execution" or not p.payload:
            return False
        data = json.loads(p.text)
        return data["request_id"] == request_id and (status is None or data["status"] == status)

    return check


def is_event(kind: str, **fields):
    def check(p: Published) -> bool:
        if p.topic != "car/bridge/event":
            return False
        data = json.loads(p.text)
        return data["event"] == kind and all(data.get(k) == v for k, v in fields.items())

    return check


def start_bridge(tmp_path: Path, sim: Sim, **commands) -> tuple[Bridge, FakeSession]:
    account = account_data(
        sim.url,
        vehicles=[
            {"vin": I3, "name": "i3", "allow_unlock": True},
            {"vin": X1, "name": "x1", "allow_unlock": True},
        ],
        commands={"poll_interval": 0.1, "timeout": 60, "refresh_delay": 0, **commands},
        poll={"interval": 600},
    )
    config = make_config(tmp_path, [account], mqtt={"base_topic": "car", "protocol": 5})
    bridge = Bridge(config, session_factory=FakeSession)
    bridge.start()
    session = bridge.session
    assert isinstance(session, FakeSession)
    for name in ("i3", "x1"):
        session.wait_for(
            lambda p, n=name: p.topic == f"car/{n}/availability" and p.text == "online", what=f"{name} online"
        )
    return bridge, session


@pytest.fixture
def bridged(tmp_path: Path, sim: Sim) -> Iterator[tuple[Bridge, FakeSession, Sim]]:
    bridge, session = start_bridge(tmp_path, sim)
    try:
        yield bridge, session, sim
    finally:
        bridge.stop()


FINAL = {"EXECUTED", "NOT_EXECUTED", "TIMED_OUT", "FAILED", "REJECTED"}


def run_to_the_end(sim: Sim, session: FakeSession, request_id: str, start: int, command: str = "lock") -> str:
    """Move the simulator's clock (one execution status per second) until the execution ends; its last status.

    Each step waits for the record the step produces, so the test never outruns the bridge."""
    mine = is_record(request_id, root="car/x1", command=command)
    session.wait_for(mine, start=start, what=f"the first record of {request_id}")
    for _ in range(8):
        records = [json.loads(p.text) for p in session.since(start) if mine(p)]
        last = records[-1]["status"]
        if last in FINAL:  # the status word follows its record
            session.wait_for(lambda p, word=last: p.topic == f"car/x1/{command}/status" and p.text == word, start=start)
            return str(last)
        mark = session.mark()
        sim.clock.advance(1.0)
        session.wait_for(mine, start=mark, what=f"the next record of {request_id}")
    raise AssertionError(f"{request_id} did not end")


def test_online_is_published_once_per_connect(bridged) -> None:
    _bridge, session, _sim = bridged
    states = [p.text for p in session.since(0, "car/bridge/state")]
    assert states == ["online"]


def test_a_refusal_never_replaces_the_record_of_a_running_command(bridged) -> None:
    _bridge, session, sim = bridged
    mark = session.mark()
    session.deliver("car/x1/lock/set", json.dumps({"action": "LOCK", "request_id": "r1"}))
    session.wait_for(is_record("r1", "INITIATED"), start=mark)
    # a double tap, with its own response topic, and junk, while r1 runs
    session.deliver(
        "car/x1/lock/set",
        json.dumps({"action": "LOCK", "request_id": "r2"}),
        response_topic="flows/reply",
        correlation_data=b"c-2",
    )
    session.deliver("car/x1/lock/set", "OPEN")
    refused = session.wait_for(is_event("command_rejected", request_id="r2"), start=mark)
    assert "identical command is still running" in json.loads(refused.text)["error"]
    session.wait_for(
        lambda p: is_event("command_rejected")(p) and "unknown action" in json.loads(p.text)["error"],
        start=mark,
        what="the junk's refusal",
    )
    reply = session.wait_for(lambda p: p.topic == "flows/reply", start=mark)
    assert json.loads(reply.text)["status"] == "REJECTED" and reply.correlation_data == b"c-2" and not reply.retain
    run_to_the_end(sim, session, "r1", mark)

    statuses = [p.text for p in session.since(mark, "car/x1/lock/status")]
    assert "REJECTED" not in statuses and statuses[-1] == "EXECUTED"
    records = [json.loads(p.text) for p in session.since(mark, "car/x1/lock/execution")]
    assert {r["request_id"] for r in records} == {"r1"}
    assert session.retained()["car/x1/lock/status"] == "EXECUTED"
    assert [r["path"] for r in sim.requests("executeService")] == [f"/webapi/v1/user/vehicles/{X1}/executeService"]

    # with nothing running, a refusal is the command's latest record, as before
    mark = session.mark()
    session.deliver("car/x1/lock/set", "OPEN")
    session.wait_for(lambda p: p.topic == "car/x1/lock/status" and p.text == "REJECTED", start=mark)
    assert session.retained()["car/x1/lock/status"] == "REJECTED"


def test_the_lock_shows_the_produced_state_at_executed_before_the_re_read(tmp_path: Path, sim: Sim) -> None:
    bridge, session = start_bridge(tmp_path, sim, refresh_delay=300)  # the re-read would come 5 min later
    try:
        assert session.retained()["car/x1/lock"] == "UNLOCKED"
        reads = len(sim.requests(f"{X1}/status"))
        mark = session.mark()
        session.deliver("car/x1/lock/set", json.dumps({"action": "LOCK", "request_id": "r1"}))
        session.wait_for(lambda p: p.topic == "car/x1/lock" and p.text == "LOCKING", start=mark)
        run_to_the_end(sim, session, "r1", mark)
        executed = next(i for i, p in enumerate(session.since(mark)) if is_record("r1", "EXECUTED")(p))
        shown = [p.text for p in session.since(mark)[:executed] if p.topic == "car/x1/lock"]
        assert shown == ["LOCKING", "LOCKED"]  # LOCKED already when the EXECUTED record is seen
        assert len(sim.requests(f"{X1}/status")) == reads  # without any read of the car
        assert session.retained()["car/x1/lock"] == "LOCKED"
        # the next read (the poller's: the command waits refresh_delay) confirms it: the car is locked now
        bridge.by_root["car/x1"].read_status()
        assert session.retained()["car/x1/lock"] == "LOCKED"
        assert json.loads(session.retained()["car/x1/state"])["door_lock_state"] == "SECURED"
    finally:
        bridge.stop()


def test_the_lock_shows_the_car_when_a_read_after_executed_disagrees(tmp_path: Path, sim: Sim) -> None:
    bridge, session = start_bridge(tmp_path, sim, refresh_delay=300)
    try:
        mark = session.mark()
        session.deliver("car/x1/lock/set", json.dumps({"action": "LOCK", "request_id": "r1"}))
        run_to_the_end(sim, session, "r1", mark)
        assert session.retained()["car/x1/lock"] == "LOCKED"
        sim.patch_status(X1, {"doorLockState": "UNLOCKED"})  # someone opened it again
        bridge.by_root["car/x1"].read_status()  # the poller's next read
        assert session.retained()["car/x1/lock"] == "UNLOCKED"
    finally:
        bridge.stop()


def test_a_command_for_a_vehicle_nobody_bridges_is_answered(bridged) -> None:
    _bridge, session, sim = bridged
    assert "car/+/+/set" in session.subscriptions
    assert "car/x1/+/set" not in session.subscriptions  # the wildcard has it: never delivered twice
    mark = session.mark()
    session.deliver(
        "car/i9/lock/set", json.dumps({"action": "UNLOCK", "request_id": "who"}), response_topic="flows/reply"
    )
    event = json.loads(session.wait_for(is_event("command_rejected", request_id="who"), start=mark).text)
    assert event["topic"] == "car/i9/lock/set" and "no vehicle is bridged at car/i9" in event["error"]
    assert "car/x1" in event["error"]
    reply = json.loads(session.wait_for(lambda p: p.topic == "flows/reply", start=mark).text)
    assert reply["status"] == "REJECTED" and reply["request_id"] == "who"
    assert not any(p.topic.startswith("car/i9/") for p in session.since(mark))  # no retained topic made up
    assert sim.requests("executeService") == []


@pytest.mark.parametrize(
    "response_topic",
    [
        "car/x1/charging_profile/set",
        "car/bridge/state",
        "car",
        "homeassistant/lock/x/config",
        "flows/+/reply",
        "flows/#",
        "$SYS/x",
        "",
    ],
)
def test_response_topics_under_our_own_topics_are_refused(bridged, response_topic: str) -> None:
    _bridge, session, sim = bridged
    mark = session.mark()
    session.deliver(
        "car/x1/lock/set",
        json.dumps({"action": "LOCK", "request_id": "fenced"}),
        response_topic=response_topic,
        correlation_data=b"c",
    )
    event = json.loads(session.wait_for(is_event("command_rejected", request_id="fenced"), start=mark).text)
    assert "response topic" in event["error"]
    assert session.wait_for(is_record("fenced", "REJECTED"), start=mark)
    assert not [p for p in session.since(mark) if p.topic == response_topic]
    assert sim.requests("executeService") == []


def test_a_response_topic_of_the_users_gets_every_record(bridged) -> None:
    _bridge, session, sim = bridged
    mark = session.mark()
    session.deliver(
        "car/x1/lock/set",
        json.dumps({"action": "LOCK", "request_id": "ok"}),
        response_topic="flows/lock-reply",
        correlation_data=b"c-9",
    )
    run_to_the_end(sim, session, "ok", mark)
    replies = [p for p in session.since(mark, "flows/lock-reply")]
    assert [json.loads(p.text)["status"] for p in replies][-1] == "EXECUTED"
    assert {p.correlation_data for p in replies} == {b"c-9"} and not any(p.retain for p in replies)


@pytest.mark.parametrize(
    "command,payload,error",
    [
        ("lock", b"[" * 1500, "nested more than"),
        ("charging_profile", b'{"weeklyPlanner": ' * 20 + b"{}" + b"}" * 20, "nested more than"),
        ("climate", b'{"action": "ON", "temperature": NaN}', "NaN"),
        ("climate", b'{"action": "ON", "temperature": 1e999}', "too large"),
        ("charging_profile", b'{"weeklyPlanner": {"chargingMode": "WARP"}}', "chargingMode must be one of"),
        ("charging_profile", b'{"anything": 1}', "unknown key 'anything'"),
        ("charging_profile", b'{"weeklyPlanner": {"timer1": {"departureTime": "25:00"}}}', "HH:MM"),
    ],
)
def test_junk_is_rejected_with_a_record_and_never_reaches_the_vendor(
    bridged, command: str, payload: bytes, error: str
) -> None:
    _bridge, session, sim = bridged
    mark = session.mark()
    session.deliver(f"car/i3/{command}/set", payload)
    status = session.wait_for(lambda p: p.topic == f"car/i3/{command}/status", start=mark)
    assert status.text == "REJECTED"
    record = json.loads(session.since(mark, f"car/i3/{command}/execution")[-1].text)
    assert error in record["error"]
    event = json.loads(session.wait_for(is_event("command_rejected", command=command), start=mark).text)
    assert error in event["error"]
    assert sim.requests("executeService") == []


def test_a_profile_as_the_bridge_publishes_it_can_be_sent_back(bridged) -> None:
    _bridge, session, sim = bridged
    profile = session.wait_for(lambda p: p.topic == "car/i3/charging_profile", what="the charging profile")
    mark = session.mark()
    session.deliver("car/i3/charging_profile/set", profile.text)
    session.wait_for(lambda p: p.topic == "car/i3/charging_profile/status" and p.text == "INITIATED", start=mark)
    sent = sim.requests("executeService")
    assert len(sent) == 1 and json.loads(sent[0]["form"]["data"]) == json.loads(profile.text)


def test_each_command_outcome_is_in_the_daemon_log(bridged, caplog: pytest.LogCaptureFixture) -> None:
    _bridge, session, sim = bridged
    caplog.set_level(logging.INFO, logger="mqttbridge.gateway")
    sim.fault(endpoint="serviceExecutionStatus", outcome="NOT_EXECUTED", count=1)
    mark = session.mark()
    session.deliver("car/x1/lock/set", json.dumps({"action": "LOCK", "request_id": "log-1"}))
    assert run_to_the_end(sim, session, "log-1", mark) == "NOT_EXECUTED"
    failed = [r for r in caplog.records if "log-1" in r.getMessage() and "NOT_EXECUTED" in r.getMessage()]
    assert [r.levelno for r in failed] == [logging.WARNING]
    assert f"lock LOCK NOT_EXECUTED for {X1}" in failed[0].getMessage()

    mark = session.mark()
    session.deliver("car/x1/horn/set", json.dumps({"action": "PRESS", "request_id": "log-2"}))
    assert run_to_the_end(sim, session, "log-2", mark, command="horn") == "EXECUTED"
    done = [r for r in caplog.records if "log-2" in r.getMessage()]
    assert [r.levelno for r in done] == [logging.INFO] and "horn PRESS EXECUTED" in done[0].getMessage()


class RecordingTimer(threading.Timer):
    started: list[str] = []

    def start(self) -> None:
        RecordingTimer.started.append(getattr(self.function, "__name__", "?"))
        super().start()


def test_a_burst_of_home_assistant_births_makes_one_discovery_republish(bridged, monkeypatch) -> None:
    bridge, session, _sim = bridged
    RecordingTimer.started = []
    monkeypatch.setattr(announcer_module.threading, "Timer", RecordingTimer)
    monkeypatch.setattr(announcer_module, "HA_ONLINE_DELAY_S", (3600.0, 3600.0))  # it stays pending
    for _ in range(500):
        session.deliver("homeassistant/status", "online")
    assert RecordingTimer.started.count("republish") == 1
    mark = session.mark()
    bridge.announcer.republish()  # the pending one runs: the next birth schedules a new one
    assert any(p.topic.startswith("homeassistant/") for p in session.since(mark))
    session.deliver("homeassistant/status", "online")
    assert RecordingTimer.started.count("republish") == 2


def test_the_command_filters_are_subscribed_before_the_session_connects(tmp_path: Path, sim: Sim) -> None:
    """Remembered before the start, so the session subscribes them at connect before anything is published
    (tests/test_subscribe_retry.py): a vehicle announced on bridge/info never precedes its command filter."""
    at_start: dict[str, bool] = {}

    class Recording(FakeSession):
        def start(self) -> None:
            at_start.update(self.subscriptions)
            super().start()

    config = make_config(tmp_path, [account_data(sim.url)], mqtt={"base_topic": "car"})
    bridge = Bridge(config, session_factory=Recording)
    bridge.start()
    try:
        wanted = {"car/+/+/set": True, "car/bridge/accounts/+/otp/set": True, "homeassistant/status": True}
        assert {t: at_start.get(t) for t in wanted} == wanted  # retain-as-published: a retained command is told apart
    finally:
        bridge.stop()
