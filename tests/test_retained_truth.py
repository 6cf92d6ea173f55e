"""What a user's MQTT client sees while things go wrong: the daemon as a process, a real mosquitto, the
simulator on a test clock. Retained values must never say something that is not true of the car."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mqttbridge.persist import SNAPSHOT_FILE

from .conftest import closed_after
from .mqtt_helpers import Msg, Observer, retained_now, wait_until
from .restart_helpers import Run, config_for, is_event, is_record, record, vendor_requests

FINAL = {"EXECUTED", "NOT_EXECUTED", "TIMED_OUT", "FAILED"}


@pytest.fixture
def run(request: pytest.FixtureRequest, tmp_path: Path, broker, vendor) -> Iterator[Run]:
    runs = Run(tmp_path, config_for(broker, vendor, tmp_path / "state", names=("x1",)))
    yield from closed_after(request, runs)


def follow_to_the_end(obs: Observer, vendor, request_id: str, start: int) -> str:
    """Move the vendor's clock one execution step at a time, each time waiting for the record it produces."""
    mine: Callable[[Msg], bool] = is_record(request_id, root="car/x1")
    obs.wait_for(mine, start=start, what=f"the first record of {request_id}")
    for _ in range(8):
        mark = obs.mark()  # before the last record is read: one landing in between then ends the wait below
        last = record([m for m in obs.since(start) if mine(m)][-1])["status"]
        if last in FINAL:  # the status word follows its record
            obs.wait_for(lambda m, word=last: m.topic == "car/x1/lock/status" and m.text == word, start=start)
            return str(last)
        vendor.clock.advance(1.0)
        obs.wait_for(mine, start=mark, what=f"the record after {last}")
    raise AssertionError(f"{request_id} did not end")


def test_a_double_tap_and_junk_during_a_running_lock_leave_its_record_alone(run, broker, vendor) -> None:
    obs = Observer(broker.port)
    try:
        run.start()
        obs.wait_topic("car/x1/availability", "online")
        mark = obs.mark()
        obs.publish("car/x1/lock/set", json.dumps({"action": "LOCK", "request_id": "tap-1"}))
        obs.wait_for(is_record("tap-1", "INITIATED", root="car/x1"), start=mark, what="INITIATED")
        obs.publish("car/x1/lock/set", json.dumps({"action": "LOCK", "request_id": "tap-2"}))  # the double tap
        obs.publish("car/x1/lock/set", "OPEN")  # junk
        obs.wait_for(is_event("command_rejected", request_id="tap-2"), start=mark, what="the double tap refused")
        obs.wait_for(
            lambda m: (
                is_event("command_rejected", topic="car/x1/lock/set")(m) and "unknown action" in record(m)["error"]
            ),
            start=mark,
            what="the junk refused",
        )
        assert follow_to_the_end(obs, vendor, "tap-1", mark) == "EXECUTED"

        statuses = [m.text for m in obs.since(mark, "car/x1/lock/status")]
        assert "REJECTED" not in statuses and statuses[-1] == "EXECUTED", statuses
        assert {record(m)["request_id"] for m in obs.since(mark, "car/x1/lock/execution")} == {"tap-1"}
        retained = retained_now(broker.port, "car/x1/lock/#")
        assert retained["car/x1/lock/status"] == b"EXECUTED"
        assert json.loads(retained["car/x1/lock/execution"])["request_id"] == "tap-1"

        # a command for a car this bridge does not serve is answered on bridge/event
        mark = obs.mark()
        obs.publish("car/i9/lock/set", "LOCK")
        event = record(obs.wait_for(is_event("command_rejected", topic="car/i9/lock/set"), start=mark))
        assert "no vehicle is bridged at car/i9" in event["error"]
    finally:
        obs.close()


@pytest.mark.slow
def test_a_restart_after_a_kill_never_shows_the_old_lock_state(run, broker, vendor, tmp_path: Path) -> None:
    state = tmp_path / "state"
    obs = Observer(broker.port)
    try:
        first = run.start()
        obs.wait_topic("car/x1/lock", "UNLOCKED")
        obs.publish("car/x1/lock/set", "OPEN")  # an old refusal: REJECTED is lock's latest record
        obs.wait_topic("car/x1/lock/status", "REJECTED")

        def saved() -> dict | None:
            try:
                data = json.loads((state / SNAPSHOT_FILE).read_text())
            except (OSError, ValueError):
                return None
            topics = data.get("vehicles", {}).get(vendor.cars[3].vin, {}).get("topics", {})
            return data if topics.get("car/x1/lock/status") == "REJECTED" else None

        stale = wait_until(saved, what="a snapshot holding the refusal")
        mark = obs.mark()
        obs.publish("car/x1/lock/set", json.dumps({"action": "LOCK", "request_id": "kill-1"}))
        obs.wait_for(is_record("kill-1", "INITIATED", root="car/x1"), start=mark)
        vendor.clock.advance(1.0)
        obs.wait_for(is_record("kill-1", "PENDING", root="car/x1"), start=mark)
        first.stop(signal.SIGKILL)
        # as in the field: the snapshot on disk was saved before the command (it is saved every 5 s)
        (state / SNAPSHOT_FILE).write_text(json.dumps(stale))

        mark = obs.mark()
        run.start()
        assert follow_to_the_end(obs, vendor, "kill-1", mark) == "EXECUTED"
        seen = obs.since(mark)
        end = next(i for i, m in enumerate(seen) if is_record("kill-1", "EXECUTED", root="car/x1")(m))
        before_the_end = seen[:end]
        shown = [m.text for m in before_the_end if m.topic == "car/x1/lock"]
        # LOCKING from the first message; LOCKED just before the EXECUTED record; never the old UNLOCKED
        assert shown == ["LOCKING", "LOCKED"], shown
        statuses = [m.text for m in before_the_end if m.topic == "car/x1/lock/status"]
        assert statuses and "REJECTED" not in statuses and statuses[0] == "PENDING", statuses
        assert len(vendor_requests(vendor, "executeService")) == 1  # followed, never sent again
    finally:
        obs.close()


def test_health_is_ok_as_soon_as_the_bridge_says_online(run, broker, tmp_path: Path) -> None:
    obs = Observer(broker.port, ("car/bridge/state",))
    try:
        run.start()
        obs.wait_for(
            lambda m: m.topic == "car/bridge/state" and m.text == "online" and not m.retain, what="the bridge online"
        )
        done = subprocess.run(
            [sys.executable, "-m", "mqttbridge", "health", "--state-dir", str(tmp_path / "state")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("ok: pid")
    finally:
        obs.close()
