"""Retained publishing: payload forms, change detection, republish after reconnect; polling back-off."""

from __future__ import annotations

from datetime import UTC, datetime

from mqttbridge.model import Location, VehicleStatus
from mqttbridge.polling import MAX_BACKOFF_S, backoff
from mqttbridge.publish import Publisher, VehiclePublisher, encode, lock_state


class RecordingSession:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str | bytes | None, bool]] = []

    def publish(self, topic, payload, *, retain=True, qos=1, correlation_data=None) -> None:
        self.sent.append((topic, payload, retain))


def _status(fields: dict, minute: int = 0, location: Location | None = None) -> VehicleStatus:
    return VehicleStatus("VIN", fields, location, datetime(2026, 1, 1, 12, minute, tzinfo=UTC))


def test_payload_forms() -> None:
    assert encode(58) == "58" and encode(8.9) == "8.9" and encode(True) == "true" and encode(False) == "false"
    assert encode("SECURED") == "SECURED"
    assert encode([{"a": 1}]) == '[{"a":1}]'


def test_lock_state_mapping() -> None:
    assert lock_state({"door_lock_state": "SECURED"}) == "LOCKED"
    assert lock_state({"door_lock_state": "SELECTIVE_LOCKED"}) == "LOCKED"
    assert lock_state({"door_lock_state": "UNLOCKED"}) == "UNLOCKED"
    assert lock_state({"door_lock_state": "UNKNOWN"}) is None and lock_state({}) is None


def test_only_changes_are_published_and_fetched_at_alone_is_no_change() -> None:
    session = RecordingSession()
    vehicle = VehiclePublisher(Publisher(session), "car/i3")
    assert vehicle.status(_status({"odometer": 10, "door_lock_state": "SECURED"}, 0, Location(1.5, 2.5, 90)))
    first = {t for t, _, _ in session.sent}
    assert first == {
        "car/i3/odometer",
        "car/i3/door_lock_state",
        "car/i3/location",
        "car/i3/fetched_at",
        "car/i3/state",
        "car/i3/lock",
    }
    sent = {t: p for t, p, _ in session.sent}
    assert sent["car/i3/location"] == '{"heading":90,"latitude":1.5,"longitude":2.5}'
    session.sent.clear()
    assert not vehicle.status(_status({"odometer": 10, "door_lock_state": "SECURED"}, 5, Location(1.5, 2.5, 90)))
    assert session.sent == []
    assert vehicle.status(_status({"odometer": 11, "door_lock_state": "SECURED"}, 6, Location(1.5, 2.5, 90)))
    assert {t for t, _, _ in session.sent} == {"car/i3/odometer", "car/i3/fetched_at", "car/i3/state"}


def test_a_field_the_car_stops_reporting_is_cleared() -> None:
    session = RecordingSession()
    vehicle = VehiclePublisher(Publisher(session), "car/i3")
    vehicle.status(_status({"charging_time_remaining": 30, "odometer": 1}))
    session.sent.clear()
    vehicle.status(_status({"odometer": 1}, 1))
    assert ("car/i3/charging_time_remaining", b"", True) in session.sent


def test_republish_all_after_reconnect_and_lock_override() -> None:
    session = RecordingSession()
    publisher = Publisher(session)
    vehicle = VehiclePublisher(publisher, "car/i3")
    vehicle.status(_status({"door_lock_state": "UNLOCKED"}))
    vehicle.lock_override = "LOCKING"
    vehicle.lock()
    assert session.sent[-1] == ("car/i3/lock", "LOCKING", True)
    count = len({t for t, _, _ in session.sent})
    session.sent.clear()
    assert publisher.republish_all() == count
    assert ("car/i3/lock", "LOCKING", True) in session.sent


def test_backoff_doubles_is_capped_and_honours_retry_after() -> None:
    assert backoff(300, 0) == 300
    assert [backoff(300, n) for n in (1, 2, 3)] == [300, 600, 1200]
    assert backoff(300, 20) == MAX_BACKOFF_S
    assert backoff(300, 1, retry_after=7200) == 7200
    assert backoff(7200, 5) == 7200  # never faster than the configured interval


def test_throttled_runs_at_once_then_coalesces_into_one_later_run() -> None:
    from mqttbridge.publish import Throttled

    runs: list[int] = []
    throttled = Throttled(lambda: runs.append(1), interval=3600.0)
    throttled()
    assert len(runs) == 1  # the first call runs at once
    for _ in range(50):
        throttled()  # within the interval: one pending run, not fifty
    assert len(runs) == 1
    throttled.flush()  # at stop: the pending run happens, with the latest state
    assert len(runs) == 2
    throttled.flush()  # nothing pending
    assert len(runs) == 2
    throttled(now=True)  # a change that must not wait (the budget just ran out)
    assert len(runs) == 3
