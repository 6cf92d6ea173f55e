"""Every legacy BMW capture in ../shared is read; five cars are checked field by field."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from mqttbridge.backends.bmw_legacy.api import error_for_response
from mqttbridge.backends.bmw_legacy.parse import (
    parse_dataset,
    parse_execution,
    parse_status,
    parse_vehicles,
)
from mqttbridge.errors import (
    AuthError,
    BackendError,
    BadResponseError,
    ServerError,
)
from mqttbridge.model import DriveTrain, ExecutionStatus

from .conftest import FIXTURES

FETCHED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
DATASET_FILES = {
    "last_trip.json": "last_trip",
    "all_trips.json": "all_trips",
    "charging_profile.json": "charging_profile",
    "last_destinations.json": "destinations",
    "destinations.json": "destinations",
    "range_maps.json": "range_map",
}
#: captures of endpoints outside A5's data endpoints: not read by the backend, on purpose
NOT_READ = {
    "efficiency.json": "GET /api/vehicle/efficiency/v1 lies outside /webapi/v1 and was never a status source",
    "navigation.json": "GET /api/vehicle/navigation/v1 lies outside /webapi/v1 and was never a status source",
}


def _captures() -> list[Path]:
    base = FIXTURES / "bmw_legacy"
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*.json") if p.name not in NOT_READ)


def _response(status: int, body: bytes, content_type: str = "application/json") -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers["Content-Type"] = content_type
    return response


@pytest.mark.parametrize("path", _captures(), ids=lambda p: str(p.relative_to(FIXTURES / "bmw_legacy")))
def test_every_capture_is_read(path: Path, fixtures_dir: Path) -> None:
    """A new capture dropped into the folder is tested here without a code change."""
    name = path.name
    body = json.loads(path.read_text(encoding="utf-8"))
    if name.startswith("status"):
        status = parse_status(body, "VIN", FETCHED)
        assert status.fields, "a status with no fields"
        assert status.to_state()["fetched_at"] == "2026-01-02T03:04:05+00:00"
        for value in status.fields.values():
            assert not isinstance(value, dict), "nested objects must be flattened"
    elif name.startswith("vehicles"):
        vehicles = parse_vehicles(body)
        assert vehicles and all(v.vin for v in vehicles)
        assert all(v.supports("refresh", "PRESS") for v in vehicles)
    elif name in DATASET_FILES:
        data = parse_dataset(DATASET_FILES[name], body, "VIN")
        assert isinstance(data, dict | list)
    elif "executionStatus" in body:
        update = parse_execution(body, "LIGHT_FLASH")
        assert update.event_id and update.event_id.endswith("@bmw.de")
    elif name.startswith("token_response"):
        assert isinstance(body["access_token"], str) and body["expires_in"] > 0
    elif "error" in body:
        status = int(re.search(r"_(\d{3})_", name).group(1))
        error = error_for_response(_response(status, path.read_bytes()), "call", 0.0)
        expected = {400: BackendError, 401: AuthError, 500: ServerError}[status]
        assert type(error) is expected
        said = body["error"]["description"] if isinstance(body["error"], dict) else body["error_description"]
        assert said in str(error)
    else:
        pytest.fail(f"new capture {path}: teach this test which endpoint it answers")


def test_captures_not_read_are_still_there(fixtures_dir: Path) -> None:
    """The list of captures the backend skips on purpose must not go stale."""
    found = {p.name for p in (fixtures_dir / "bmw_legacy").rglob("*.json") if p.name in NOT_READ}
    assert found == set(NOT_READ)


def _status(rel: str):
    return parse_status(json.loads((FIXTURES / "bmw_legacy" / rel).read_text()), "VIN", FETCHED)


def test_petrol_f48_field_by_field(fixtures_dir: Path) -> None:
    s = _status("F48/status.json")
    f = s.fields
    assert f["odometer"] == 21529
    assert f["fuel_level"] == 39
    assert f["range_fuel"] == 590
    assert f["remaining_range_fuel_mls"] == 366
    assert f["door_lock_state"] == "SECURED"
    assert f["updated_at"] == "2018-03-10T19:35:30+01:00"
    assert f["internal_data_time_utc"] == "2018-03-10T18:35:30+00:00"
    assert f["update_reason"] == "DOOR_STATE_CHANGED"
    assert f["door_driver_front"] == "CLOSED" and f["rear_window"] == "INVALID"
    assert f["dcs_cch_ongoing"] is False and f["dcs_cch_activation"] == "NA"
    assert f["position_status"] == "OK" and f["position_heading"] == 141
    assert s.location is not None and s.location.to_json() == {
        "latitude": 50.50505,
        "longitude": 10.1010101,
        "heading": 141,
    }
    assert f["check_control_messages"][0]["ccm_id"] == 955
    assert [c["cbs_type"] for c in f["cbs_data"]] == ["OIL", "VEHICLE_CHECK", "BRAKE_FLUID"]
    assert "cbs_remaining_mileage" not in f["cbs_data"][2]
    for absent in ("battery_level", "range_electric", "charging_status", "plugged_in", "mileage"):
        assert absent not in f


def test_bev_rex_i01_charging(fixtures_dir: Path) -> None:
    f = _status("I01_REX/status.json").fields
    assert f["battery_level"] == 54
    assert f["charging_status"] == "CHARGING"
    assert f["plugged_in"] is True
    assert f["charging_time_remaining"] == 332
    assert f["fuel_level"] == 8 and f["max_fuel"] == 8
    assert f["range_electric"] == 48 and f["range_fuel"] == 106
    assert f["odometer"] == 38807
    assert f["updated_at"] == "2018-03-12T08:38:57+01:00"


def test_pure_bev_i01_norex(fixtures_dir: Path) -> None:
    f = _status("I01_NOREX/status.json").fields
    assert f["battery_level"] == 58
    assert f["range_electric"] == 53
    assert "range_fuel" not in f
    assert f["fuel_level"] == 0
    assert f["plugged_in"] is False
    assert f["charging_status"] == "INVALID"
    assert f["last_charging_end_reason"] == "END_REQUESTED_BY_DRIVER"
    assert f["steering"] == "RH"
    assert "sunroof" in f


def test_phev_g30_os7(fixtures_dir: Path) -> None:
    s = _status("G30_PHEV_OS7/status.json")
    f = s.fields
    assert f["fuel_percent"] == 92.4
    assert f["fuel_level"] == 39 and "max_fuel" not in f
    assert f["battery_level"] == 85 and f["range_electric"] == 32 and f["range_fuel"] == 484
    assert f["vehicle_country"] == "DE"
    assert f["last_charging_end_reason"] == "CHARGING_GOAL_REACHED"
    assert f["updated_at"] == "2020-07-25T12:27:42+00:00"
    assert len(f["cbs_data"]) == 4


def test_floats_become_json_numbers_openhab_g30(fixtures_dir: Path) -> None:
    f = _status("openhab_G30_530e_PHEV/status.json").fields
    assert f["fuel_level"] == 18 and isinstance(f["fuel_level"], int)
    assert f["battery_level"] == 17 and isinstance(f["battery_level"], int)
    assert f["max_fuel"] == 0
    assert f["odometer"] == 47035


def test_petrol_f31_intermediate_window(fixtures_dir: Path) -> None:
    f = _status("openhab_F31_318i/status.json").fields
    assert f["window_driver_front"] == "INTERMEDIATE"
    assert f["odometer"] == 25659 and f["range_fuel"] == 794 and f["fuel_level"] == 55
    assert "plugged_in" not in f and "charging_status" not in f


@pytest.mark.parametrize(
    "rel,status",
    [
        ("G31_NBTevo/status_position_disabled.json", "DRIVER_DISABLED"),
        ("G31_NBTevo/status_position_vehicle_active.json", "VEHICLE_ACTIVE"),
    ],
)
def test_positions_without_coordinates(fixtures_dir: Path, rel: str, status: str) -> None:
    s = _status(rel)
    assert s.location is None
    assert s.fields["position_status"] == status
    assert "position_lat" not in s.fields
    assert "location" not in s.to_state()


def test_vehicle_list_flags_decide_datasets_and_commands(fixtures_dir: Path) -> None:
    body = json.loads((FIXTURES / "bmw_legacy/vehicles/vehicles_9_vehicles.json").read_text())
    vehicles = {v.model: v for v in parse_vehicles(body)}
    assert len(vehicles) == 9
    i3 = vehicles["i3 (+ REX)"]
    assert i3.drive_train is DriveTrain.BEV_REX
    assert i3.datasets == {"last_trip", "all_trips", "charging_profile", "destinations", "range_map"}
    x5 = vehicles["X5 xDrive35i"]
    assert x5.supports("lock", "LOCK") and not x5.supports("lock", "UNLOCK")
    assert x5.datasets == frozenset()
    assert not vehicles["320d"].supports("horn")  # hornBlow blocked in the UK market
    assert set(vehicles["328Li"].commands) == {"refresh"}
    assert vehicles["530e xDrive iPerformance"].drive_train is DriveTrain.PHEV
    # the mojibake in a dealer street survives as text
    assert any("\ufffd" in json.dumps(v.details, ensure_ascii=False) for v in vehicles.values())


def test_execution_statuses(fixtures_dir: Path) -> None:
    base = FIXTURES / "bmw_legacy"

    def read(rel: str):
        return parse_execution(json.loads((base / rel).read_text()), "LIGHT_FLASH")

    assert read("remote_services/LIGHT_FLASH_initiated.json").status is ExecutionStatus.INITIATED
    assert read("remote_services/LIGHT_FLASH_pending.json").status is ExecutionStatus.PENDING
    assert read("remote_services/LIGHT_FLASH_delivered.json").status is ExecutionStatus.DELIVERED
    executed = read("remote_services/LIGHT_FLASH_executed.json")
    assert executed.status is ExecutionStatus.EXECUTED and executed.status.final
    assert executed.detail == {"result": "STATUS_CHANGED", "ignition_on_status": "false"}
    missing = read("remote_services/LIGHT_FLASH_no_status_derived.json")
    assert missing.status is ExecutionStatus.UNKNOWN and not missing.status.final
    unlock = parse_execution(
        json.loads((base / "openhab_I01_REX_2017/service_DOOR_UNLOCK_executed.json").read_text()), "DOOR_UNLOCK"
    )
    assert unlock.service == "DOOR_UNLOCK" and unlock.status is ExecutionStatus.EXECUTED


def test_datasets_normalised(fixtures_dir: Path) -> None:
    base = FIXTURES / "bmw_legacy"
    trips = parse_dataset("all_trips", json.loads((base / "openhab_G30_530e_PHEV/all_trips.json").read_text()), "V")
    assert trips["avg_electric_consumption_user_average"] == 6.73
    assert trips["reset_date"] == "2020-09-19T12:54:20+00:00"
    assert trips["battery_size_max"] == 9140
    last = parse_dataset("last_trip", json.loads((base / "openhab_G30_530e_PHEV/last_trip.json").read_text()), "V")
    assert last["electric_distance_share_value"] == 1.25 and last["date"] == "2020-09-19T16:03:00+00:00"
    empty = parse_dataset("last_trip", json.loads((base / "G30_PHEV_OS7/last_trip.json").read_text()), "V")
    assert empty == {}
    profile = parse_dataset(
        "charging_profile", json.loads((base / "G30_PHEV_OS7/charging_profile.json").read_text()), "V"
    )
    assert "weeklyPlanner" in profile  # the vendor's shape, ready to send back
    destinations = parse_dataset(
        "destinations", json.loads((base / "openhab_I01_REX_2017/destinations.json").read_text()), "V"
    )
    assert destinations[0]["street_number"] == "My Real Number"
    assert destinations[0]["created_at"] == "2020-08-16T12:52:58+00:00"
    rangemap = parse_dataset(
        "range_map", json.loads((base / "I01_edent_readme_examples/range_maps.json").read_text()), "V"
    )
    assert rangemap["quality"] == "AVERAGE" and len(rangemap["rangemaps"]) == 2


# --- what the captures do not show, but the API did -------------------------------------------------


def test_unknown_enum_kept_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    body = {
        "vehicleStatus": {
            "doorLockState": "HALF_LOCKED_NEW",
            "chargingStatus": "charging",
            "connectionStatus": "WIRELESS",
        }
    }
    with caplog.at_level("WARNING"):
        first = parse_status(body, "V", FETCHED).fields
        parse_status(body, "V", FETCHED)
    assert first["door_lock_state"] == "HALF_LOCKED_NEW"
    assert first["charging_status"] == "CHARGING"
    assert "plugged_in" not in first and first["connection_status"] == "WIRELESS"
    assert sum("HALF_LOCKED_NEW" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(
    "position",
    [
        {"status": "OK"},
        {"status": "OK", "lat": "x", "lon": 1},
        {"lat": 500.0, "lon": 10.0, "status": "OK"},
        {"lat": 1.0, "lon": 2.0, "status": "TOO_FAR_AWAY"},
        {"lat": 1.0, "lon": 2.0, "status": "SOMETHING_NEW"},
    ],
)
def test_position_without_usable_coordinates(position: dict) -> None:
    assert parse_status({"vehicleStatus": {"position": position}}, "V", FETCHED).location is None


def test_position_int_coordinates_and_missing_heading() -> None:
    s = parse_status({"vehicleStatus": {"position": {"lat": 58, "lon": 15, "status": "OK"}}}, "V", FETCHED)
    assert s.location is not None and s.location.to_json() == {"latitude": 58, "longitude": 15}


@pytest.mark.parametrize(
    "value,expected",
    [
        ("2018-03-10T19:35:30+0100", "2018-03-10T19:35:30+01:00"),
        ("2020-09-19T14:04:25+0000", "2020-09-19T14:04:25+00:00"),
        ("2020-09-19T14:04:25", "2020-09-19T14:04:25+00:00"),
        ("2020-09-19T14:04:25Z", "2020-09-19T14:04:25+00:00"),
        ("2020-09-19T14:04:25-05:00", "2020-09-19T14:04:25-05:00"),
    ],
)
def test_update_time_forms(value: str, expected: str) -> None:
    assert parse_status({"vehicleStatus": {"updateTime": value}}, "V", FETCHED).fields["updated_at"] == expected


def test_unreadable_time_is_not_published() -> None:
    fields = parse_status({"vehicleStatus": {"updateTime": "yesterday", "mileage": 5}}, "V", FETCHED).fields
    assert "updated_at" not in fields and fields["odometer"] == 5


@pytest.mark.parametrize("body", [None, [], {"vehicleStatus": "text"}, {"other": {}}])
def test_status_of_the_wrong_shape_is_a_clear_error(body) -> None:
    with pytest.raises(BadResponseError, match="no vehicleStatus"):
        parse_status(body, "V", FETCHED)


def test_execution_without_wrapper_is_a_clear_error() -> None:
    with pytest.raises(BadResponseError, match="no executionStatus"):
        parse_execution({"error": "x"}, "DOOR_LOCK")


def test_vehicle_list_bare_array_and_entries_without_vin() -> None:
    vehicles = parse_vehicles([{"vin": "A1", "driveTrain": "HYDROGEN"}, {"model": "no vin"}, "junk"])
    assert [v.vin for v in vehicles] == ["A1"]
    assert vehicles[0].drive_train is DriveTrain.UNKNOWN
    with pytest.raises(BadResponseError):
        parse_vehicles({"vehicles": "none"})


def test_html_410_page_is_named_in_the_error() -> None:
    page = (
        b"<html><head><title>Payara Micro #badassfish - Error report</title></head>"
        b"<body><h1>HTTP Status 410 - Gone</h1></body></html>"
    )
    error = error_for_response(_response(410, page, "text/html"), "status of V", 0.0)
    assert "410" in str(error) and "Payara" in str(error) and "retired" in str(error)
