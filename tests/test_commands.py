"""Command parsing, the unlock rules, and the execution state machine with a scripted vendor."""

from __future__ import annotations

import threading
from collections import deque

import pytest

from mqttbridge.commands import (
    Rejected,
    check_unlock,
    parse_command,
)
from mqttbridge.errors import CommandOutcomeUnknown, ServerError, UnsupportedError
from mqttbridge.execution import CommandRunner, CommandTarget, Execution
from mqttbridge.model import CommandRequest, ExecutionStatus, ExecutionUpdate

S = ExecutionStatus


@pytest.mark.parametrize(
    "command,payload,action,params",
    [
        ("lock", b"LOCK", "LOCK", {}),
        ("lock", b" unlock \n", "UNLOCK", {}),
        ("lock", b'"LOCK"', "LOCK", {}),
        (
            "climate",
            b'{"action": "ON", "temperature": 21.5, "defrost": false}',
            "ON",
            {"temperature": 21.5, "defrost": False},
        ),
        ("climate", b'{"action": "on", "duration": 10, "heating": 1}', "ON", {"duration": 10, "heating": 1}),
        ("charging", b"OFF", "OFF", {}),
        ("flash_lights", b'{"count": 2}', "PRESS", {"count": 2}),
        ("flash_lights", b"PRESS", "PRESS", {}),
        ("horn", b"PRESS", "PRESS", {}),
        ("find_vehicle", b"press", "PRESS", {}),
        ("refresh", b"PRESS", "PRESS", {}),
        ("force_refresh", b"PRESS", "PRESS", {}),
        ("charge_limit", b'{"ac": 80, "dc": 90}', "SET", {"ac": 80, "dc": 90}),
        ("charge_limit", b'{"action": "SET", "ac": 100}', "SET", {"ac": 100}),
        (
            "charging_profile",
            b'{"chargingMode": "IMMEDIATE_CHARGING"}',
            "SET",
            {"profile": {"chargingMode": "IMMEDIATE_CHARGING"}},
        ),
    ],
)
def test_valid_payloads(command: str, payload: bytes, action: str, params: dict) -> None:
    parsed = parse_command(command, payload)
    assert parsed.request == CommandRequest(command, action, params)
    assert parsed.request_id


def test_request_id_and_code_are_kept_apart_from_params() -> None:
    parsed = parse_command("lock", b'{"action": "UNLOCK", "code": 1234, "request_id": "abc"}')
    assert parsed.request_id == "abc" and parsed.code == "1234" and parsed.request.params == {}


@pytest.mark.parametrize(
    "command,payload,error",
    [
        ("lock", b"", "empty payload"),
        ("lock", b"OPEN", "unknown action"),
        ("lock", b"{", "not valid JSON"),
        ("lock", b"[]", "must be an object"),
        ("lock", b'{"action": "LOCK", "speed": 1}', "unknown key 'speed'"),
        ("lock", b'{"code": "1"}', '"action" must be one of'),
        ("lock", b"\xff", "not UTF-8"),
        ("lock", b"A" * 5000, "too long"),
        ("lock", b'{"action": "LOCK", "request_id": true}', "request_id"),
        ("climate", b'{"action": "ON", "temperature": 40}', "temperature must be"),
        ("climate", b'{"action": "ON", "temperature": true}', "temperature must be"),
        ("climate", b'{"action": "ON", "duration": 0}', "duration must be"),
        ("flash_lights", b'{"count": 11}', "count must be"),
        ("charging_profile", b'{"request_id": "x"}', "non-empty JSON object"),
        ("warp", b"PRESS", "unknown command 'warp'"),
        ("charge_limit", b'{"ac": 85}', "ac must be 50 to 100 in steps of 10"),
        ("charge_limit", b'{"dc": 40}', "dc must be 50 to 100 in steps of 10"),
        ("charge_limit", b"SET", "needs at least one of ac, dc"),
        ("charge_limit", b'{"ac": "80"}', "ac must be"),
    ],
)
def test_malformed_payloads(command: str, payload: bytes, error: str) -> None:
    with pytest.raises(Rejected, match=error):
        parse_command(command, payload)


def test_unlock_rules() -> None:
    unlock = parse_command("lock", b"UNLOCK")
    coded = parse_command("lock", b'{"action": "UNLOCK", "code": "2468"}')
    wrong = parse_command("lock", b'{"action": "UNLOCK", "code": "0000"}')
    with pytest.raises(Rejected, match="allow_unlock is false"):
        check_unlock(unlock, False, None)
    check_unlock(unlock, True, None)
    with pytest.raises(Rejected, match="needs an unlock code"):
        check_unlock(unlock, True, "2468")
    with pytest.raises(Rejected, match="wrong unlock code"):
        check_unlock(wrong, True, "2468")
    check_unlock(coded, True, "2468")
    check_unlock(parse_command("lock", b"LOCK"), False, "2468")  # locking needs nothing


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Stopping(threading.Event):
    """The runner waits on this between polls: here each wait advances the fake clock instead."""

    def __init__(self, clock: FakeClock):
        super().__init__()
        self.clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        self.clock.now += timeout or 0
        return self.is_set()


class ScriptedVehicle(CommandTarget):
    def __init__(self, first: ExecutionUpdate | Exception, then: list[ExecutionUpdate | Exception]):
        self.first = first
        self.then = deque(then)
        self.records: list[dict] = []
        self.locks: list[str] = []
        self.refreshes = 0
        self.done = threading.Event()
        self.refreshed = threading.Event()

    def execute(self, request: CommandRequest) -> ExecutionUpdate:
        if isinstance(self.first, Exception):
            raise self.first
        return self.first

    def execution_status(self, started: ExecutionUpdate) -> ExecutionUpdate:
        item = self.then.popleft() if self.then else ExecutionUpdate(S.PENDING, "DOOR_LOCK", "e1")
        if isinstance(item, Exception):
            raise item
        return item

    def refresh(self, *, force: bool = False) -> None:
        self.refreshes += 1
        self.refreshed.set()

    def observed(self, command: str) -> str | None:
        return "the car now reports door_lock_state LOCKED" if self.refreshes else None

    def publish(self, execution: Execution) -> None:
        self.records.append(execution.record())
        if execution.status.final:
            self.done.set()

    def lock_started(self, action: str) -> None:
        self.locks.append("LOCKING" if action == "LOCK" else "UNLOCKING")

    def lock_executed(self, action: str) -> None:
        self.locks.append("LOCKED" if action == "LOCK" else "UNLOCKED")

    def lock_ended(self) -> None:
        self.locks.append("REAL")


def _update(status: ExecutionStatus) -> ExecutionUpdate:
    return ExecutionUpdate(status, "DOOR_LOCK", "e1@bmw.de")


def _run(vehicle: ScriptedVehicle, payload: bytes = b"LOCK", timeout: float = 30) -> list[str]:
    clock = FakeClock()
    runner = CommandRunner(
        vehicle, poll_interval=1.0, timeout=timeout, refresh_delay=0, stopping=Stopping(clock), clock=clock
    )
    parsed = parse_command("lock", payload)
    runner.submit(parsed, Execution(parsed.request_id, "lock", parsed.request.action))
    assert vehicle.done.wait(10), vehicle.records
    runner.shutdown()
    return [r["status"] for r in vehicle.records]


def test_every_transition_in_order_then_a_refresh() -> None:
    vehicle = ScriptedVehicle(
        _update(S.INITIATED), [_update(S.PENDING), _update(S.PENDING), _update(S.DELIVERED), _update(S.EXECUTED)]
    )
    assert _run(vehicle) == ["INITIATED", "PENDING", "DELIVERED", "EXECUTED"]
    assert vehicle.records[-1]["event_id"] == "e1@bmw.de" and vehicle.records[-1]["service"] == "DOOR_LOCK"
    # the state the command produced is shown at EXECUTED, before the re-read confirms it
    assert vehicle.locks == ["LOCKING", "LOCKED", "REAL"]
    assert vehicle.refreshed.wait(10), "no refresh after EXECUTED"


def test_skipped_and_unknown_statuses() -> None:
    vehicle = ScriptedVehicle(
        _update(S.INITIATED),
        [
            ExecutionUpdate(S.UNKNOWN, "DOOR_LOCK", "e1@bmw.de"),
            ServerError("HTTP 500 (server panic)"),
            _update(S.EXECUTED),
        ],
    )
    assert _run(vehicle) == ["INITIATED", "EXECUTED"]


@pytest.mark.parametrize("final", [S.NOT_EXECUTED, S.TIMED_OUT])
def test_vendor_final_states(final: ExecutionStatus) -> None:
    vehicle = ScriptedVehicle(_update(S.INITIATED), [_update(S.PENDING), _update(final)])
    assert _run(vehicle) == ["INITIATED", "PENDING", final.value]
    assert vehicle.refreshes == 0 and vehicle.locks == ["LOCKING", "REAL"]


def test_no_final_status_in_time_is_timed_out_by_the_bridge() -> None:
    vehicle = ScriptedVehicle(_update(S.INITIATED), [])
    assert _run(vehicle, timeout=5) == ["INITIATED", "PENDING", "TIMED_OUT"]
    assert "within 5 s" in vehicle.records[-1]["error"]
    # the car is read so the record says whether it acted anyway (the EU API's PENDING that lies)
    assert vehicle.records[-1]["error"].endswith("; the car now reports door_lock_state LOCKED")


@pytest.mark.parametrize(
    "error,status",
    [
        (ServerError("HTTP 500 (secretKnowledge is missing)"), "FAILED"),
        (CommandOutcomeUnknown("no answer; not sent again"), "FAILED"),
        (UnsupportedError("takes no temperature"), "REJECTED"),
    ],
)
def test_vendor_call_failures(error: Exception, status: str) -> None:
    vehicle = ScriptedVehicle(error, [])
    assert _run(vehicle) == [status]
    assert vehicle.records[-1]["error"] == str(error)


def test_an_identical_command_is_not_sent_twice() -> None:
    gate = threading.Event()

    class Slow(ScriptedVehicle):
        def execute(self, request: CommandRequest) -> ExecutionUpdate:
            gate.wait(10)
            return _update(S.EXECUTED)

    vehicle = Slow(_update(S.EXECUTED), [])
    clock = FakeClock()
    runner = CommandRunner(vehicle, poll_interval=1, timeout=30, refresh_delay=0, stopping=Stopping(clock), clock=clock)
    first = parse_command("lock", b"LOCK")
    runner.submit(first, Execution(first.request_id, "lock", "LOCK"))
    second = parse_command("lock", b"LOCK")
    with pytest.raises(Rejected, match="identical command is still running"):
        runner.submit(second, Execution(second.request_id, "lock", "LOCK"))
    other = parse_command("lock", b"UNLOCK")
    runner.submit(other, Execution(other.request_id, "lock", "UNLOCK"))  # queued behind, not refused
    gate.set()
    assert vehicle.done.wait(10)
    runner.shutdown()
