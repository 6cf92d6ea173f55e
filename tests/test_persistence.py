"""What survives a restart: running executions (followed, never resent) and the last published state.

The unit tests drive the journal, the runner and the snapshot directly; the integration tests kill and
restart the daemon as a process against a real mosquitto and the simulator.
"""

from __future__ import annotations

import json
import signal
import threading
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mqttbridge.commands import parse_command
from mqttbridge.errors import ServerError
from mqttbridge.execution import NOT_CONFIRMED, CommandRunner, CommandTarget, Execution
from mqttbridge.model import CommandRequest, ExecutionStatus, ExecutionUpdate, Location, VehicleStatus
from mqttbridge.normalize import iso
from mqttbridge.persist import EXECUTIONS_FILE, SNAPSHOT_FILE, ExecutionJournal, SnapshotKeeper
from mqttbridge.publish import Publisher, VehiclePublisher, settle_lock
from mqttbridge.statestore import StateStore

from .conftest import FakeClock, closed_after
from .mqtt_helpers import Observer, retained_now, wait_until
from .restart_helpers import (
    BASE,
    Run,
    config_for,
    is_event,
    is_record,
    record,
    vendor_fault,
    vendor_requests,
)

S = ExecutionStatus

# --- the journal -----------------------------------------------------------------------------------


def _execution(**changes) -> Execution:
    execution = Execution(
        request_id="r-1",
        command="lock",
        action="LOCK",
        service="DOOR_LOCK",
        status=S.PENDING,
        event_id="e1@bmw.de",
        response_topic="reply/me",
        correlation_data=b"\x00\xffcorr",
        params={"count": 2},
    )
    for name, value in changes.items():
        setattr(execution, name, value)
    return execution


def test_the_journal_keeps_everything_needed_to_follow_and_publish(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    journal = ExecutionJournal(store)
    execution = _execution()
    journal.save("VIN1", execution)
    on_disk = json.loads((tmp_path / EXECUTIONS_FILE).read_text())
    entry = on_disk["executions"][execution.key]
    assert entry["correlation_data"] == "AP9jb3Jy"  # bytes as base64
    assert (tmp_path / EXECUTIONS_FILE).stat().st_mode & 0o777 == 0o600
    [loaded] = ExecutionJournal(store).load()
    assert loaded.vin == "VIN1"
    again = loaded.execution
    assert again.record() == execution.record()
    assert (again.key, again.params, again.response_topic, again.correlation_data) == (
        execution.key,
        {"count": 2},
        "reply/me",
        b"\x00\xffcorr",
    )
    journal.remove(execution)
    assert not (tmp_path / EXECUTIONS_FILE).exists()  # nothing running: no file


def test_unreadable_entries_are_dropped_and_the_rest_kept(tmp_path: Path, caplog) -> None:
    store = StateStore(tmp_path)
    good = _execution()
    ExecutionJournal(store).save("VIN1", good)
    data = json.loads((tmp_path / EXECUTIONS_FILE).read_text())
    data["executions"]["bad"] = {"vin": "VIN2", "command": "lock"}
    data["executions"]["corr"] = {**data["executions"][good.key], "correlation_data": "***"}
    (tmp_path / EXECUTIONS_FILE).write_text(json.dumps(data))
    journal = ExecutionJournal(store)
    assert [e.execution.key for e in journal.load()] == [good.key]
    assert "dropped the entry bad" in caplog.text and "not base64" in caplog.text


def test_a_corrupt_journal_is_set_aside(tmp_path: Path, caplog) -> None:
    (tmp_path / EXECUTIONS_FILE).write_text('{"executions": {"x": ')
    assert ExecutionJournal(StateStore(tmp_path)).load() == []
    assert "is corrupt" in caplog.text
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f"{EXECUTIONS_FILE}.corrupt-")]


# --- the runner: remembered from before the vendor call, resumed without resending ------------------


class Stopping(threading.Event):
    def __init__(self, clock: FakeClock):
        super().__init__()
        self.clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        self.clock.advance(timeout or 0)
        return self.is_set()


class Car(CommandTarget):
    """A scripted vehicle that records what the runner asked of it and what it remembered."""

    def __init__(self, statuses: list[ExecutionStatus | Exception] = ()):
        self.statuses = deque(statuses)
        self.sent: list[CommandRequest] = []
        self.checked: list[ExecutionUpdate] = []
        self.records: list[dict] = []
        self.remembered: list[tuple[str, str | None]] = []
        self.forgotten: list[str] = []
        self.locks: list[str] = []
        self.done = threading.Event()
        self.stop_at: ExecutionStatus | None = None
        self.stopping: threading.Event | None = None

    def execute(self, request: CommandRequest) -> ExecutionUpdate:
        assert self.remembered, "the execution must be on disk before the vendor hears of it"
        assert self.remembered[-1] == ("INITIATED", None)
        self.sent.append(request)
        return ExecutionUpdate(S.INITIATED, "DOOR_LOCK", "e1@bmw.de")

    def execution_status(self, started: ExecutionUpdate) -> ExecutionUpdate:
        self.checked.append(started)
        item = self.statuses.popleft() if self.statuses else S.PENDING
        if isinstance(item, Exception):
            raise item
        return ExecutionUpdate(item, started.service, started.event_id)

    def refresh(self, *, force: bool = False) -> None:
        pass

    def observed(self, command: str) -> str | None:
        return None

    def publish(self, execution: Execution) -> None:
        self.records.append(execution.record())
        if self.stop_at is not None and execution.status == self.stop_at:
            self.stopping.set()
            self.done.set()
        if execution.status.final:
            self.done.set()

    def lock_started(self, action: str) -> None:
        self.locks.append(action)

    def lock_ended(self) -> None:
        self.locks.append("REAL")

    def remember(self, execution: Execution) -> None:
        self.remembered.append((execution.status.value, execution.event_id))

    def forget(self, execution: Execution) -> None:
        self.forgotten.append(execution.key)


def _runner(car: Car, timeout: float = 60) -> tuple[CommandRunner, Stopping]:
    clock = FakeClock()
    stopping = Stopping(clock)
    car.stopping = stopping
    return CommandRunner(
        car, poll_interval=1, timeout=timeout, refresh_delay=0, stopping=stopping, clock=clock
    ), stopping


def test_an_execution_is_remembered_until_it_ends() -> None:
    car = Car([S.PENDING, S.DELIVERED, S.EXECUTED])
    runner, _ = _runner(car)
    parsed = parse_command("lock", b'{"action": "LOCK", "request_id": "r-9"}')
    execution = Execution(parsed.request_id, "lock", "LOCK")
    runner.submit(parsed, execution)
    assert car.done.wait(10)
    runner.shutdown()
    assert [r["status"] for r in car.records] == ["INITIATED", "PENDING", "DELIVERED", "EXECUTED"]
    assert car.remembered == [
        ("INITIATED", None),
        ("INITIATED", "e1@bmw.de"),
        ("PENDING", "e1@bmw.de"),
        ("DELIVERED", "e1@bmw.de"),
    ]
    assert car.forgotten == [execution.key]


def test_stopping_leaves_the_execution_remembered() -> None:
    car = Car([S.PENDING])
    car.stop_at = S.PENDING  # SIGTERM while the vendor says PENDING
    runner, _ = _runner(car)
    parsed = parse_command("lock", b"LOCK")
    runner.submit(parsed, Execution(parsed.request_id, "lock", "LOCK"))
    assert car.done.wait(10)
    runner.shutdown()
    wait_until(lambda: car.locks[-1:] == ["REAL"], what="the runner to finish")
    assert car.forgotten == [] and car.remembered[-1] == ("PENDING", "e1@bmw.de")


def _persisted(status: ExecutionStatus, event_id: str | None, *, age: float = 1.0) -> Execution:
    received = datetime.now(UTC) - timedelta(seconds=age)
    return Execution(
        request_id="r-old",
        command="lock",
        action="UNLOCK",
        service="DOOR_UNLOCK" if event_id else None,
        status=status,
        event_id=event_id,
        received_at=iso(received),
        updated_at=iso(received),
    )


def test_a_resumed_execution_is_followed_not_sent_again() -> None:
    car = Car([ServerError("HTTP 500"), S.DELIVERED, S.EXECUTED])
    runner, _ = _runner(car)
    execution = _persisted(S.PENDING, "e7@bmw.de")
    runner.resume(execution)
    assert car.done.wait(10)
    runner.shutdown()
    assert car.sent == []  # never executed again
    assert {(u.service, u.event_id) for u in car.checked} == {("DOOR_UNLOCK", "e7@bmw.de")}
    assert [r["status"] for r in car.records] == ["PENDING", "DELIVERED", "EXECUTED"]
    assert all(r["request_id"] == "r-old" for r in car.records)
    assert car.locks == ["UNLOCK", "REAL"] and car.forgotten == [execution.key]


def test_an_identical_command_waits_for_the_resumed_one() -> None:
    from mqttbridge.commands import Rejected

    gate = threading.Event()

    class Slow(Car):
        def execution_status(self, started: ExecutionUpdate) -> ExecutionUpdate:
            gate.wait(10)
            return ExecutionUpdate(S.EXECUTED, started.service, started.event_id)

    car = Slow()
    runner, _ = _runner(car)
    runner.resume(_persisted(S.PENDING, "e7@bmw.de"))
    parsed = parse_command("lock", b"UNLOCK")
    with pytest.raises(Rejected, match="identical command is still running"):
        runner.submit(parsed, Execution(parsed.request_id, "lock", "UNLOCK"))
    gate.set()
    assert car.done.wait(10)
    runner.shutdown()
    assert car.sent == []


def test_without_the_vendors_confirmation_it_fails_and_is_not_resent() -> None:
    car = Car()
    runner, _ = _runner(car)
    execution = _persisted(S.INITIATED, None)
    runner.resume(execution)
    assert car.done.wait(10)
    runner.shutdown()
    assert car.sent == [] and car.checked == []
    assert [(r["status"], r["error"]) for r in car.records] == [("FAILED", NOT_CONFIRMED)]
    assert car.forgotten == [execution.key]


def test_an_execution_that_had_ended_is_published_and_forgotten() -> None:
    car = Car()
    runner, _ = _runner(car)
    execution = _persisted(S.EXECUTED, "e7@bmw.de")
    runner.resume(execution)
    assert car.done.wait(10)
    runner.shutdown()
    assert car.checked == [] and car.sent == []
    assert [r["status"] for r in car.records] == ["EXECUTED"] and car.forgotten == [execution.key]


def test_the_timeout_counts_from_when_the_command_arrived() -> None:
    car = Car()  # the vendor says PENDING for ever
    runner, _ = _runner(car, timeout=60)
    runner.resume(_persisted(S.PENDING, "e7@bmw.de", age=55))
    assert car.done.wait(10)
    runner.shutdown()
    assert car.records[-1]["status"] == "TIMED_OUT"
    assert 3 <= len(car.checked) <= 6  # about the 5 s left, not a new 60 s
    late = Car()
    runner, _ = _runner(late, timeout=60)
    runner.resume(_persisted(S.PENDING, "e7@bmw.de", age=3600))
    assert late.done.wait(10)
    runner.shutdown()
    assert late.checked == [] and late.records[-1]["status"] == "TIMED_OUT"


# --- the snapshot ------------------------------------------------------------------------------------


class RecordingSession:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str | bytes | None]] = []

    def publish(self, topic, payload, *, retain=True, qos=1, correlation_data=None) -> None:
        self.sent.append((topic, payload))


def _status(fields: dict) -> VehicleStatus:
    return VehicleStatus("VIN1", fields, Location(48.1, 11.5, 90), datetime(2026, 1, 1, 12, tzinfo=UTC))


def test_the_snapshot_keeps_vehicle_topics_only_and_is_written_only_after_a_change(tmp_path: Path) -> None:
    publisher = Publisher(RecordingSession())
    roots = {"VIN1": ("bmw", "car"), "VIN2": ("bmw", "car/x1")}
    keeper = SnapshotKeeper(StateStore(tmp_path), publisher, lambda: roots, excluded=("car/bridge/", "homeassistant/"))
    assert not keeper.save()  # nothing published yet
    for topic in (
        "car/odometer",
        "car/x1/odometer",
        "car/x1/lock/execution",
        "car/bridge/state",
        "homeassistant/device/x/config",
        "other/topic",
    ):
        publisher.retained(topic, "1")
    assert keeper.save() and not keeper.save()
    saved = json.loads((tmp_path / SNAPSHOT_FILE).read_text())["vehicles"]
    assert saved["VIN1"] == {"account": "bmw", "root": "car", "topics": {"car/odometer": "1"}}
    assert saved["VIN2"]["topics"] == {"car/x1/odometer": "1", "car/x1/lock/execution": "1"}
    publisher.clear("car/x1/odometer")
    assert keeper.save()
    assert [v.topics for v in keeper.load() if v.vin == "VIN2"] == [{"car/x1/lock/execution": "1"}]


def test_a_restored_status_publishes_only_what_changed_and_clears_what_is_gone() -> None:
    first = Publisher(RecordingSession())
    VehiclePublisher(first, "car/i3").status(
        _status({"odometer": 10, "charging_time": 30, "door_lock_state": "SECURED"})
    )
    topics = dict(first.retained_items())
    session = RecordingSession()
    publisher = Publisher(session)
    publisher.restore(topics)
    vehicle = VehiclePublisher(publisher, "car/i3")
    restored = vehicle.restore("VIN1", topics)
    assert restored is not None and restored.fields["odometer"] == 10 and restored.location.heading == 90
    assert session.sent == []  # restored, not sent: the next connect publishes it
    assert publisher.republish_all() == len(topics)
    session.sent.clear()
    assert not vehicle.status(_status({"odometer": 10, "charging_time": 30, "door_lock_state": "SECURED"}))
    assert session.sent == []
    vehicle.status(_status({"odometer": 11, "door_lock_state": "SECURED"}))
    sent = dict(session.sent)
    assert sent["car/i3/odometer"] == "11" and sent["car/i3/charging_time"] == b""
    assert "car/i3/door_lock_state" not in sent


def test_retained_payloads_wait_for_the_connect_while_disconnected() -> None:
    """Sent while disconnected, paho would flush them before the connect's bridge/state "online"."""
    session = RecordingSession()
    session.connected = threading.Event()
    publisher = Publisher(session)
    assert publisher.retained("car/i3/availability", "online")
    assert session.sent == [] and publisher.version == 1
    session.connected.set()
    publisher.retained("car/bridge/state", "online", force=True)
    assert publisher.republish_all() == 2
    assert session.sent[0] == ("car/bridge/state", "online") and ("car/i3/availability", "online") in session.sent
    publisher.retained("car/i3/odometer", "5")
    assert session.sent[-1] == ("car/i3/odometer", "5")


def test_a_lock_word_left_moving_by_a_killed_run_is_settled() -> None:
    topics = {"car/i3/lock": "UNLOCKING", "car/i3/state": json.dumps({"door_lock_state": "SECURED"})}
    settle_lock("car/i3", topics)
    assert topics["car/i3/lock"] == "LOCKED"
    unknown = {"car/i3/lock": "LOCKING"}
    settle_lock("car/i3", unknown)
    assert unknown == {}


# --- the daemon, killed and restarted -----------------------------------------------------------------


@pytest.fixture
def run(request: pytest.FixtureRequest, tmp_path: Path, broker, vendor):
    runs = Run(tmp_path, config_for(broker, vendor, tmp_path / "state"))
    yield from closed_after(request, runs)


@pytest.mark.slow
def test_a_command_pending_at_a_kill_is_followed_after_the_restart_and_sent_once(run, broker, vendor) -> None:
    obs = Observer(broker.port)
    try:
        run.start()
        obs.wait_topic(f"{BASE}/i3/availability", "online")
        request_id = f"kill-{uuid.uuid4().hex[:6]}"
        obs.publish(f"{BASE}/i3/lock/set", json.dumps({"action": "LOCK", "request_id": request_id}))
        obs.wait_for(is_record(request_id, "INITIATED"), what="INITIATED")
        vendor.clock.advance(1.0)  # the vendor says PENDING now
        obs.wait_for(is_record(request_id, "PENDING"), what="PENDING")
        journal = json.loads((run.tmp_path / "state" / EXECUTIONS_FILE).read_text())["executions"]
        [entry] = journal.values()
        assert entry["request_id"] == request_id and entry["status"] == "PENDING" and entry["event_id"]
        run.daemons[0].stop(signal.SIGKILL)

        mark = obs.mark()
        second = run.start()
        # resumed: the lock shows LOCKING again, and the record of the same request is published
        obs.wait_for(lambda m: m.topic == f"{BASE}/i3/lock" and m.text == "LOCKING", start=mark, what="LOCKING")
        obs.wait_for(is_record(request_id, "PENDING"), start=mark, what="the resumed record")
        vendor.clock.advance(1.0)  # DELIVERED
        obs.wait_for(is_record(request_id, "DELIVERED"), start=mark, what="DELIVERED")
        vendor.clock.advance(2.0)  # EXECUTED
        obs.wait_for(is_record(request_id, "EXECUTED"), start=mark, what="EXECUTED")
        obs.wait_for(lambda m: m.topic == f"{BASE}/i3/lock" and m.text == "LOCKED", start=mark, what="LOCKED")
        assert len(vendor_requests(vendor, "executeService")) == 1
        assert "resuming lock LOCK" in second.tail()
        assert wait_until(lambda: not (run.tmp_path / "state" / EXECUTIONS_FILE).exists(), what="the journal emptied")
        assert second.stop() == 0
    finally:
        obs.close()


@pytest.mark.slow
def test_a_command_unconfirmed_at_a_kill_is_failed_not_resent(run, broker, vendor) -> None:
    obs = Observer(broker.port)
    try:
        run.start()
        obs.wait_topic(f"{BASE}/i3/availability", "online")
        vendor_fault(vendor, endpoint="executeService", delay=8, count=1)  # the vendor got it, but is slow
        obs.publish(f"{BASE}/i3/lock/set", json.dumps({"action": "LOCK", "request_id": "slow-1"}))
        wait_until(lambda: vendor_requests(vendor, "executeService"), what="the command at the vendor")
        journal = json.loads((run.tmp_path / "state" / EXECUTIONS_FILE).read_text())["executions"]
        assert [(e["request_id"], e["event_id"]) for e in journal.values()] == [("slow-1", None)]
        run.daemons[0].stop(signal.SIGKILL)
        mark = obs.mark()
        second = run.start()
        failed = record(obs.wait_for(is_record("slow-1", "FAILED"), start=mark, what="FAILED"))
        assert failed["error"] == NOT_CONFIRMED
        obs.wait_for(is_event("command_failed", request_id="slow-1"), start=mark, what="the command_failed event")
        assert len(vendor_requests(vendor, "executeService")) == 1
        assert second.stop() == 0
        assert not (run.tmp_path / "state" / EXECUTIONS_FILE).exists()
    finally:
        obs.close()


@pytest.mark.slow
def test_sigterm_keeps_a_running_execution_for_the_next_start(run, broker, vendor) -> None:
    obs = Observer(broker.port)
    try:
        run.start()
        obs.wait_topic(f"{BASE}/i3/availability", "online")
        obs.publish(f"{BASE}/i3/lock/set", json.dumps({"action": "LOCK", "request_id": "term-1"}))
        obs.wait_for(is_record("term-1", "INITIATED"), what="INITIATED")
        assert run.daemons[0].stop(signal.SIGTERM) == 0
        journal = json.loads((run.tmp_path / "state" / EXECUTIONS_FILE).read_text())["executions"]
        assert [e["request_id"] for e in journal.values()] == ["term-1"]
        mark = obs.mark()
        run.start()
        obs.wait_for(lambda m: m.topic == f"{BASE}/i3/lock" and m.text == "LOCKING", start=mark, what="LOCKING")
        vendor.clock.advance(3.0)
        obs.wait_for(is_record("term-1", "EXECUTED"), start=mark, what="EXECUTED")
        assert len(vendor_requests(vendor, "executeService")) == 1
    finally:
        obs.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", [EXECUTIONS_FILE, SNAPSHOT_FILE, "unlock_lockout.json"])
def test_a_corrupt_state_file_is_reported_and_the_bridge_goes_on(run, broker, name: str) -> None:
    state = run.tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / name).write_text('{"half a file": ')
    obs = Observer(broker.port)
    try:
        daemon = run.start()
        obs.wait_topic(f"{BASE}/i3/availability", "online")
        assert record(obs.wait_topic(f"{BASE}/i3/state"))["odometer"] > 0
        assert f"state file {state / name} is corrupt; set aside as {name}.corrupt-" in daemon.tail()
        assert [p for p in state.iterdir() if p.name.startswith(f"{name}.corrupt-")]
        mark = obs.mark()  # and commands work as before
        obs.publish(f"{BASE}/i3/horn/set", "PRESS")
        obs.wait_for(lambda m: m.topic == f"{BASE}/i3/horn/status" and m.text == "INITIATED", start=mark)
        assert daemon.stop() == 0
    finally:
        obs.close()


@pytest.mark.slow
def test_the_last_state_is_republished_from_the_snapshot_while_the_vendor_fails(run, broker, vendor) -> None:
    obs = Observer(broker.port)
    vin = vendor.cars[0].vin
    discovery = f"homeassistant/device/mqttbridge_{vin}/config"
    try:
        first = run.start()
        obs.wait_topic(f"{BASE}/i3/availability", "online")
        obs.wait_topic(discovery)
        before = retained_now(broker.port, f"{BASE}/i3/#")
        assert f"{BASE}/i3/state" in before and f"{BASE}/i3/odometer" in before
        assert first.stop() == 0  # the snapshot is saved at stop
    finally:
        obs.close()
    snapshot = json.loads((run.tmp_path / "state" / SNAPSHOT_FILE).read_text())
    assert set(before) <= set(snapshot["vehicles"][vin]["topics"])
    assert not [t for t in snapshot["vehicles"][vin]["topics"] if t.startswith(("homeassistant/", "car/bridge/"))]

    broker.stop()  # no persistence: every retained message is gone
    broker.start()
    assert retained_now(broker.port, f"{BASE}/#") == {}
    vendor_fault(vendor, endpoint="status", http_status=500, count=1000)
    mark_requests = len(vendor_requests(vendor, "/status"))
    obs = Observer(broker.port)
    try:
        second = run.start()
        obs.wait_topic(f"{BASE}/bridge/state", "online")
        state = obs.wait_topic(f"{BASE}/i3/state", what="the state from the snapshot")
        assert json.loads(state.payload) == json.loads(before[f"{BASE}/i3/state"])
        obs.wait_topic(discovery, what="discovery rebuilt from the restored state")
        wait_until(lambda: "status read failed" in second.tail(), what="the status read failing")
        assert len(vendor_requests(vendor, "/status")) > mark_requests
        after = retained_now(broker.port, f"{BASE}/i3/#")
        for name in ("state", "odometer", "lock", "location", "fetched_at", "door_lock_state"):
            assert after.get(f"{BASE}/i3/{name}") == before[f"{BASE}/i3/{name}"], name
        assert second.stop() == 0
    finally:
        obs.close()
