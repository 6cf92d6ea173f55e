"""Unlock lockout: wrong codes counted per vehicle, the lockout refusing even the right code, kept across
restarts; and the audit trail of accepted and refused lock commands."""

from __future__ import annotations

import json
import signal
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mqttbridge.lockout import LOCKOUT_FILE, UnlockLockout, clock_text
from mqttbridge.statestore import StateStore

from .conftest import closed_after
from .mqtt_helpers import Observer
from .restart_helpers import BASE, Run, config_for, is_event, is_record, record, vendor_requests

CODE = "s3cret-8642"
WRONG = "guess-0000"


class Wall:
    """Wall time that moves only when the test says (the lockout runs on wall time: it outlives restarts)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _lockout(tmp_path: Path, wall: Wall, **kwargs) -> UnlockLockout:
    settings = {"attempts": 3, "window": 900.0, "duration": 900.0, **kwargs}
    return UnlockLockout(StateStore(tmp_path), now=wall, **settings)


def test_three_wrong_codes_lock_out_for_the_duration(tmp_path: Path) -> None:
    wall = Wall()
    lockout = _lockout(tmp_path, wall)
    assert lockout.wrong_code("VIN1") is None and lockout.wrong_code("VIN1") is None
    assert lockout.refusal("VIN1") is None
    until = lockout.wrong_code("VIN1")
    assert until == wall.now + 900
    assert lockout.refusal("VIN1") == f"locked out after 3 wrong codes until {clock_text(until)}"
    assert lockout.refusal("VIN2") is None  # per vehicle
    wall.now += 899
    assert lockout.refusal("VIN1") is not None
    wall.now += 1
    assert lockout.refusal("VIN1") is None
    assert lockout.wrong_code("VIN1") is None  # the count started again after the lockout


def test_wrong_codes_outside_the_window_do_not_add_up(tmp_path: Path) -> None:
    wall = Wall()
    lockout = _lockout(tmp_path, wall, window=60.0)
    for _ in range(5):
        assert lockout.wrong_code("VIN1") is None
        wall.now += 31  # two in any minute, never three
    assert lockout.refusal("VIN1") is None


def test_a_right_code_forgets_the_wrong_ones_before_it(tmp_path: Path) -> None:
    wall = Wall()
    lockout = _lockout(tmp_path, wall)
    lockout.wrong_code("VIN1")
    lockout.wrong_code("VIN1")
    lockout.right_code("VIN1")
    assert lockout.wrong_code("VIN1") is None and lockout.wrong_code("VIN1") is None
    assert lockout.wrong_code("VIN1") is not None


def test_the_lockout_and_the_count_survive_a_restart(tmp_path: Path, caplog) -> None:
    wall = Wall()
    first = _lockout(tmp_path, wall)
    for _ in range(3):
        first.wrong_code("VIN1")
    first.wrong_code("VIN2")
    assert (tmp_path / LOCKOUT_FILE).stat().st_mode & 0o777 == 0o600
    again = _lockout(tmp_path, wall)
    again.load()
    assert again.refusal("VIN1") == first.refusal("VIN1") is not None
    assert "stays locked out until" in caplog.text
    again.wrong_code("VIN2")
    assert again.wrong_code("VIN2") is not None  # the one before the restart counted


def test_an_unreadable_lockout_file_is_reported(tmp_path: Path, caplog) -> None:
    (tmp_path / LOCKOUT_FILE).write_text("{not json")
    lockout = _lockout(tmp_path, Wall())
    lockout.load()
    assert "is corrupt" in caplog.text and lockout.locked() == {}
    (tmp_path / LOCKOUT_FILE).write_text(
        json.dumps({"vehicles": {"VIN1": {"failures": ["x"]}, "VIN2": {"until": 1_800_000_500}}})
    )
    lockout = _lockout(tmp_path, Wall())
    lockout.load()
    assert "dropped the entry of VIN1" in caplog.text
    assert lockout.locked() == {"VIN2": 1_800_000_500}


# --- through the daemon ---------------------------------------------------------------------------


@pytest.fixture
def run(request: pytest.FixtureRequest, tmp_path: Path, broker, vendor):
    config = config_for(
        broker, vendor, tmp_path / "state", vehicle={"unlock_code": CODE}, unlock_lockout={"attempts": 3, "minutes": 2}
    )
    runs = Run(tmp_path, config)
    yield from closed_after(request, runs)


def _unlock(obs: Observer, request_id: str, code: str) -> dict:
    mark = obs.mark()
    obs.publish(f"{BASE}/i3/lock/set", json.dumps({"action": "UNLOCK", "code": code, "request_id": request_id}))
    return record(obs.wait_for(is_record(request_id, "REJECTED"), start=mark, what=f"{request_id} REJECTED"))


def _expected_until(started: datetime, minutes: int) -> set[str]:
    """The HH:MM the lockout ends at (the minute may tick over while the test runs)."""
    return {(started + timedelta(minutes=minutes, seconds=s)).strftime("%H:%M") for s in (0, 60)}


@pytest.mark.slow
def test_wrong_codes_lock_unlocking_out_even_across_a_restart(run, broker, vendor) -> None:
    vin = vendor.cars[0].vin
    topic = f"{BASE}/i3/lock/set"
    obs = Observer(broker.port)
    try:
        daemon = run.start()
        obs.wait_topic(f"{BASE}/i3/availability", "online")
        started = datetime.now().astimezone()
        assert _unlock(obs, "wrong-1", WRONG)["error"] == "wrong unlock code"
        assert _unlock(obs, "wrong-2", WRONG)["error"] == "wrong unlock code"
        mark = obs.mark()
        third = _unlock(obs, "wrong-3", WRONG)["error"]
        assert third.startswith("wrong unlock code; locked out after 3 wrong codes until ")
        until = third.rsplit(" ", 1)[1]
        assert until in _expected_until(started, 2)
        event = record(obs.wait_for(is_event("unlock_locked_out", vin=vin), start=mark, what="the lockout event"))
        assert event["topic"] == topic and event["request_id"] == "wrong-3" and event["attempts"] == 3

        mark = obs.mark()
        refused = _unlock(obs, "right-1", CODE)  # the right code, too late
        assert refused["error"] == f"locked out after 3 wrong codes until {until}"
        audit = record(obs.wait_for(is_event("command_rejected", request_id="right-1"), start=mark))
        assert (audit["vin"], audit["topic"], audit["action"], audit["command"]) == (vin, topic, "UNLOCK", "lock")
        assert (
            f"rejected lock UNLOCK for {vin} (request right-1, topic {topic}): locked out after 3 wrong "
            f"codes until {until}"
        ) in daemon.tail()
        assert "unlocking" in daemon.tail() and "is locked out after 3 wrong codes" in daemon.tail()

        mark = obs.mark()  # locking is not affected, and is audited too
        obs.publish(topic, json.dumps({"action": "LOCK", "request_id": "lock-1"}))
        accepted = record(obs.wait_for(is_event("command_accepted", request_id="lock-1"), start=mark))
        assert (accepted["vin"], accepted["topic"], accepted["action"]) == (vin, topic, "LOCK")
        assert f"accepted lock LOCK for {vin} (request lock-1, topic {topic})" in daemon.tail()
        obs.wait_for(is_record("lock-1", "INITIATED"), start=mark)

        daemon.stop(signal.SIGKILL)  # a restart is no way around it
        second = run.start()
        # the vehicle is listed (and so its command topics subscribed) once bridge/info names it
        obs.wait_for(
            lambda m: m.topic == f"{BASE}/bridge/info" and json.loads(m.payload)["vehicles"],
            start=mark,
            what="the vehicle bridged again",
        )
        # lock-1 is followed again after the restart and keeps lock/execution: the refusal is on bridge/event
        mark = obs.mark()
        obs.publish(topic, json.dumps({"action": "UNLOCK", "code": CODE, "request_id": "right-2"}))
        refused = record(obs.wait_for(is_event("command_rejected", request_id="right-2"), start=mark))
        assert refused["error"] == f"locked out after 3 wrong codes until {until}" and refused["retained"] is False
        assert not any(is_record("right-2")(m) for m in obs.since(mark))
        assert "stays locked out until" in second.tail()
        unlocks = [
            r
            for r in vendor_requests(vendor, "executeService")
            if r.get("form", {}).get("serviceType") == "DOOR_UNLOCK"
        ]
        assert unlocks == []
        for log in (daemon.tail(100_000), second.tail(100_000)):
            assert CODE not in log and WRONG not in log
    finally:
        obs.close()


def test_fewer_wrong_codes_than_the_limit_then_the_right_one_unlocks(run, broker, vendor) -> None:
    obs = Observer(broker.port)
    try:
        run.start()
        obs.wait_topic(f"{BASE}/i3/availability", "online")
        _unlock(obs, "w-1", WRONG)
        _unlock(obs, "w-2", WRONG)
        mark = obs.mark()
        obs.publish(f"{BASE}/i3/lock/set", json.dumps({"action": "UNLOCK", "code": CODE, "request_id": "ok-1"}))
        obs.wait_for(is_record("ok-1", "INITIATED"), start=mark, what="the unlock sent")
        assert (
            not (run.state / LOCKOUT_FILE).exists()
            or json.loads((run.state / LOCKOUT_FILE).read_text())["vehicles"] == {}
        )
    finally:
        obs.close()
