"""CarDataBackend: REST calls at start and per read, reads answered by the stream, read-only, fingerprint."""

from __future__ import annotations

import pytest

from mqttbridge.backends.bmw_cardata import fingerprint
from mqttbridge.errors import UnsupportedError
from mqttbridge.fingerprint import Anonymiser, Capture
from mqttbridge.model import CommandRequest, DriveTrain
from mqttbridge.statestore import StateStore
from tests.cardata_fake import GCID, VIN1, VIN2, FakeCarData, backend_for, fixture

SOC = "vehicle.drivetrain.batteryManagement.header"


@pytest.fixture
def fake():
    server = FakeCarData().start()
    yield server
    server.stop()


@pytest.fixture
def store(tmp_path):
    return StateStore(tmp_path)


def test_rest_calls_at_start_and_per_read(fake, store):
    backend = backend_for(fake, store)
    try:
        cars = {v.vin: v for v in backend.list_vehicles()}
        assert backend.take_vendor_calls() == 3  # mappings + basic data of each car
        assert cars[VIN1].model == "i4 M50" and cars[VIN1].drive_train is DriveTrain.BEV
        assert cars[VIN2].drive_train is DriveTrain.CONV
        status = backend.read_status(cars[VIN1])
        assert backend.take_vendor_calls() == 3  # container list + create (once ever) + telematicData
        assert status.fields["battery_level"] == 74
        backend.read_status(cars[VIN2])
        assert backend.take_vendor_calls() == 1
        backend.list_vehicles()
        assert backend.take_vendor_calls() == 1  # basic data is kept
    finally:
        backend.close()
    restarted = backend_for(fake, store)
    try:
        vehicle = next(v for v in restarted.list_vehicles() if v.vin == VIN1)
        restarted.read_status(vehicle)
        assert restarted.take_vendor_calls() == 2  # mappings + telematicData: no container call, no basic data
        assert fake.count("POST", "/customers/containers") == 1
    finally:
        restarted.close()


def test_a_read_while_the_stream_is_live_costs_nothing(fake, store):
    backend = backend_for(fake, store)
    try:
        vehicle = next(v for v in backend.list_vehicles() if v.vin == VIN1)
        backend.read_status(vehicle)
        backend.take_vendor_calls()
        message = fixture("stream/stream_bev_preference_smart_charging.json")
        message.update(vin=VIN1, topic=VIN1)
        message["data"] = {SOC: {"timestamp": "2099-01-01T00:00:00Z", "value": 51, "unit": "%"}}
        backend._streamed(VIN1, message)
        assert backend.read_status(vehicle).fields["battery_level"] == 51
        assert backend.take_vendor_calls() == 0
        # a user's refresh asks BMW all the same (CONTRACT §9: REST on refresh): one call
        backend.refresh_status(vehicle)
        assert backend.take_vendor_calls() == 1
        fake.clock.advance(3601)  # the stream went silent for a poll interval: REST again
        backend.read_status(vehicle)
        assert backend.take_vendor_calls() == 1
    finally:
        backend.close()


def test_read_only(fake, store):
    backend = backend_for(fake, store)
    try:
        vehicle = backend.list_vehicles()[0]
        with pytest.raises(UnsupportedError):
            backend.read_status(vehicle, force=True)
        with pytest.raises(UnsupportedError):
            backend.read_dataset(vehicle, "last_trip")
        with pytest.raises(UnsupportedError, match="read-only"):
            backend.execute(vehicle, CommandRequest("lock", "LOCK"))
        assert backend.take_vendor_calls() == 3  # only the listing
    finally:
        backend.close()


def test_fingerprint_captures_mappings_basic_and_telematic_data(fake, store):
    backend_for(fake, store).close()
    anonymiser = Anonymiser()
    items = list(fingerprint.capture(fake.account(), store, anonymiser))
    captures = [i for i in items if isinstance(i, Capture)]
    assert [c.kind for c in captures] == ["mappings", "basic_data", "status", "basic_data", "status"]
    status = captures[2]
    assert status.replay == {} and status.exchange.path.endswith("/telematicData")
    assert "telematicData" in status.exchange.json()
    cleaned = anonymiser.text(captures[0].exchange.content.decode())
    assert VIN1 not in cleaned and VIN2 not in cleaned
    assert GCID not in anonymiser.text(f"user {GCID}")
