"""BMW CarData: telematic entries -> published fields (``bmw_cardata.mapping`` and its tables).

Expected values are read by hand from the real answers in ../shared/fixtures/bmw_cardata and from
CONTRACT section 9, never computed by the code under test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mqttbridge.backends.bmw_cardata import fields as f
from mqttbridge.backends.bmw_cardata.mapping import (
    CarState,
    entries_from_stream,
    entries_from_telematic,
    field_name,
    has_fuel_tank,
    status_from_entries,
    typed,
    vehicle_info,
)
from mqttbridge.errors import BadResponseError
from mqttbridge.fields import FIELDS as CORE_FIELDS
from mqttbridge.model import DriveTrain, Location

LAT = "vehicle.cabin.infotainment.navigation.currentLocation.latitude"
LON = "vehicle.cabin.infotainment.navigation.currentLocation.longitude"
HEADING = "vehicle.cabin.infotainment.navigation.currentLocation.heading"


def load(fixtures_dir: Path, name: str) -> Any:
    return json.loads((fixtures_dir / "bmw_cardata" / name).read_text(encoding="utf-8"))


def e(value: Any, timestamp: str | None = "2026-11-01T10:00:00Z", unit: str | None = None) -> dict[str, Any]:
    return {"value": value, "unit": unit, "timestamp": timestamp}


def fields_of(entries: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return status_from_entries("VIN1", entries, **kw).fields


# --- reading answers ------------------------------------------------------------------------------


def test_telematic_answer_entries(fixtures_dir: Path) -> None:
    entries = entries_from_telematic(load(fixtures_dir, "rest/telematic_data_bev_i4m50.json"))
    assert len(entries) == 27
    assert entries["vehicle.drivetrain.batteryManagement.header"] == {
        "value": "74",
        "unit": "%",
        "timestamp": "2025-09-29T13:21:16.000Z",
    }
    assert entries["vehicle.drivetrain.electricEngine.charging.acVoltage"] == {
        "value": None,
        "unit": "V",
        "timestamp": None,
    }


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([], "expected"),
        ({"telematicData": []}, "expected"),
        ({"exveErrorId": "CU-429", "exveErrorMsg": "API rate limit reached"}, "CU-429"),
        ({"telematicData": {"vehicle.isMoving": "true"}}, "vehicle.isMoving"),
    ],
)
def test_telematic_wrong_shapes(body: Any, words: str) -> None:
    with pytest.raises(BadResponseError, match=words):
        entries_from_telematic(body)


def test_stream_message_entries(fixtures_dir: Path) -> None:
    vin, entries = entries_from_stream(load(fixtures_dir, "stream/stream_bev_preference_smart_charging.json"))
    assert vin == "WBY11HH"
    key = "vehicle.powertrain.electric.battery.charging.preferenceSmartCharging"
    assert entries == {key: {"value": "PRICE_OPTIMIZED", "unit": None, "timestamp": "2025-10-01T10:12:39Z"}}


@pytest.mark.parametrize(
    "message",
    ["not json", 42, {"data": {}}, {"vin": "V", "data": []}, {"vin": "V", "data": {"k": 1}}, {"vin": " ", "data": {}}],
)
def test_stream_wrong_shapes(message: Any) -> None:
    with pytest.raises(BadResponseError, match="stream message"):
        entries_from_stream(message)


def test_stream_message_as_text_and_typed_values() -> None:
    text = json.dumps({"vin": "V1", "topic": "V1", "data": {"vehicle.isMoving": {"value": True}}})
    assert entries_from_stream(text) == ("V1", {"vehicle.isMoving": {"value": True, "unit": None, "timestamp": None}})
    data = {
        f.SOC_HEADER: e(81.0),
        "vehicle.cabin.door.row1.driver.isOpen": e(False),
        "vehicle.body.trunk.isLocked": e(True),
    }
    assert fields_of(data) | {"updated_at": None} == {
        "battery_level": 81,
        "cabin_door_row1_driver_is_open": "CLOSED",
        "body_trunk_is_locked": True,
        "updated_at": None,
    }


# --- every common field from the real answers -----------------------------------------------------


def test_common_fields_bev(fixtures_dir: Path) -> None:
    fields = fields_of(entries_from_telematic(load(fixtures_dir, "rest/telematic_data_bev_i4m50.json")))
    assert fields["battery_level"] == 74
    assert fields["range_electric"] == 286  # remainingElectricRange: the i4 sent no kombi range
    assert fields["charging_status"] == "NOT_CHARGING"  # hvStatus NOT_CHARGING, no charging.status
    assert fields["updated_at"] == "2025-09-29T16:48:19+00:00"
    for absent in ("range_fuel", "fuel_level", "odometer", "plugged_in", "door_lock_state", "battery_12v"):
        assert absent not in fields
    for source in ("drivetrain_battery_management_header", "drivetrain_electric_engine_remaining_electric_range"):
        assert source not in fields
    assert "drivetrain_electric_engine_charging_hv_status" not in fields


def test_common_fields_petrol(fixtures_dir: Path) -> None:
    fields = fields_of(entries_from_telematic(load(fixtures_dir, "rest/telematic_data_ice_x1_extended.json")))
    assert fields["odometer"] == 48713
    assert fields["range_fuel"] == 395
    assert fields["fuel_level"] == 24  # unit null: litres (catalogue "0 L to 100 L")
    assert fields["drivetrain_fuel_system_level"] == 58
    assert fields["battery_12v"] == 13.92
    assert fields["updated_at"] == "2026-09-14T14:30:13+00:00"
    assert "battery_level" not in fields and "charging_status" not in fields
    for source in (
        "vehicle_travelled_distance",
        "drivetrain_last_remaining_range",
        "electrical_system_battery_voltage",
    ):
        assert source not in fields


def test_battery_level_falls_back_to_displayed() -> None:
    assert fields_of({f.SOC_DISPLAYED: e("66", unit="percent")})["battery_level"] == 66
    both = fields_of({f.SOC_HEADER: e("70"), f.SOC_DISPLAYED: e("66")})
    assert both["battery_level"] == 70
    assert "powertrain_electric_battery_state_of_charge_displayed" not in both
    assert fields_of({f.SOC_HEADER: e("-NA-"), f.SOC_DISPLAYED: e("66")})["battery_level"] == 66


def test_range_electric_prefers_kombi() -> None:
    assert fields_of({f.RANGE_KOMBI: e("250"), f.RANGE_ELECTRIC: e("286", unit="km")})["range_electric"] == 250
    assert fields_of({f.RANGE_ELECTRIC: e("286", unit="km")})["range_electric"] == 286


def test_miles_and_gallons_are_converted() -> None:
    fields = fields_of(
        {
            f.ODOMETER: e("10000", unit="mi"),
            f.RANGE_LAST: e("100", unit="miles"),
            f.FUEL_REMAINING: e("10", unit="gal"),
        }
    )
    assert fields["odometer"] == 16093.4
    assert fields["range_fuel"] == 160.9
    assert fields["fuel_level"] == 37.9
    assert fields_of({f.ODOMETER: e("48260", unit=None)})["odometer"] == 48260


def test_fuel_fields_only_with_a_tank() -> None:
    bev = {f.SOC_HEADER: e("80"), f.RANGE_LAST: e("0", unit="km"), f.FUEL_REMAINING: e("0")}  # the i3's zeros
    fields = fields_of(bev)
    assert "range_fuel" not in fields and "fuel_level" not in fields
    assert "drivetrain_last_remaining_range" not in fields
    phev = {f.SOC_HEADER: e("80"), f.RANGE_LAST: e("500", unit="km"), f.FUEL_REMAINING: e("30")}
    assert fields_of(phev)["range_fuel"] == 500
    assert fields_of(phev, has_fuel_tank=False).get("range_fuel") is None
    assert fields_of(bev, has_fuel_tank=True)["fuel_level"] == 0
    assert fields_of({f.RANGE_LAST: e("0", unit="km")})["range_fuel"] == 0  # an empty petrol car
    assert has_fuel_tank(DriveTrain.BEV) is False
    assert has_fuel_tank(DriveTrain.PHEV) is True
    assert has_fuel_tank(DriveTrain.UNKNOWN) is None


# --- vocabularies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        ("ASN_secured", "SECURED"),
        ("ASN_locked", "LOCKED"),
        ("LOCKED", "LOCKED"),
        ("SECURED", "SECURED"),
        ("ASN_unlocked", "UNLOCKED"),
        ("ASN_selective-Locked", "SELECTIVE_LOCKED"),
        ("ASN_unknown", "UNKNOWN"),
        ("ASN_isTrue", "UNKNOWN"),
        ("SOMETHING_NEW", "UNKNOWN"),
    ],
)
def test_door_lock_state(raw: str, word: str) -> None:
    fields = fields_of({f.DOOR_STATUS: e(raw)})
    assert fields["door_lock_state"] == word
    assert "cabin_door_status" not in fields


def test_door_lock_state_falls_back_to_lock_status() -> None:
    assert fields_of({f.DOOR_LOCK_STATUS: e("SELECTIVE-LOCKED")})["door_lock_state"] == "SELECTIVE_LOCKED"
    both = {f.DOOR_STATUS: e("ASN_unknown"), f.DOOR_LOCK_STATUS: e("SECURED")}
    assert fields_of(both)["door_lock_state"] == "SECURED"


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        ("NOCHARGING", "NOT_CHARGING"),
        ("INITIALIZATION", "WAITING_FOR_CHARGING"),
        ("CHARGINGACTIVE", "CHARGING"),
        ("CHARGINGPAUSED", "WAITING_FOR_CHARGING"),
        ("CHARGINGERROR", "ERROR"),
        ("CHARGINGENDED", "FINISHED_NOT_FULL"),
        ("MANUAL_SELECTION", "INVALID"),
    ],
)
def test_charging_status(raw: str, word: str) -> None:
    assert fields_of({f.CHARGING_STATUS: e(raw)})["charging_status"] == word


def test_charging_ended_full_or_not() -> None:
    ended = {f.CHARGING_STATUS: e("CHARGINGENDED"), f.SOC_TARGET: e("80")}
    assert fields_of({**ended, f.SOC_HEADER: e("80")})["charging_status"] == "FINISHED_FULLY_CHARGED"
    assert fields_of({**ended, f.SOC_HEADER: e("64")})["charging_status"] == "FINISHED_NOT_FULL"
    hv = {f.CHARGING_STATUS: e("CHARGINGENDED"), f.CHARGING_HV_STATUS: e("FINISHED_FULLY_CHARGED")}
    assert fields_of(hv)["charging_status"] == "FINISHED_FULLY_CHARGED"
    assert fields_of({f.CHARGING_HV_STATUS: e("BOGUS")})["charging_status"] == "INVALID"


@pytest.mark.parametrize(
    ("raw", "plugged"), [("CONNECTED", True), ("DISCONNECTED", False), ("INVALID", None), ("-NA-", None)]
)
def test_plugged_in(raw: str, plugged: bool | None) -> None:
    fields = fields_of({f.CHARGING_PORT: e(raw)})
    assert fields.get("plugged_in") is plugged
    assert "body_charging_port_status" not in fields


def test_plugged_in_falls_back_to_is_plugged() -> None:
    assert fields_of({f.CHARGING_PORT: e("INVALID"), f.PLUGGED: e("true")})["plugged_in"] is True


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("true", True),
        ("false", False),
        ("ASN_isTrue", True),
        ("ASN_isFalse", False),
        ("ASN_isUnknown", None),
        ("74", 74),
        ("14.39", 14.39),
        ("-3", -3),
        ("-NA-", None),
        ("null", None),
        (None, None),
        ("doorsOnly", "DOORS_ONLY"),
        ("PRICE_OPTIMIZED", "PRICE_OPTIMIZED"),
        ("1-PHASES", "1-PHASES"),
        ("17.01.2027 00:00:00 UTC", "2027-01-17T00:00:00+00:00"),
        ("01/17/2027 08:30 UTC", "2027-01-17T08:30:00+00:00"),
        ("The brake pads need to be replaced.", "The brake pads need to be replaced."),
    ],
)
def test_typed(raw: Any, value: Any) -> None:
    assert typed("vehicle.some.key", raw) == value


def test_json_and_xml_in_strings(fixtures_dir: Path) -> None:
    fields = fields_of(entries_from_telematic(load(fixtures_dir, "rest/telematic_data_ice_x1_parked.json")))
    cbs = fields["status_condition_based_services"]
    assert [s["title"] for s in cbs] == [
        "Front Brake",
        "Statutory vehicle inspection",
        "Engine oil",
        "Brake fluid",
        "Vehicle check",
    ]
    assert cbs[0]["date"] is None and cbs[2]["date"] == "2027-07"  # the "null" placeholder is a null
    assert cbs[0]["message_type"] == "CBS" and cbs[0]["unit_of_length_remaining"] == "2100"
    extended = fields_of(entries_from_telematic(load(fixtures_dir, "rest/telematic_data_ice_x1_extended.json")))
    ccm = extended["status_check_control_messages"]
    assert ccm == [
        {
            "date": None,
            "description": None,
            "id": 907,
            "message_type": "CCM",
            "status": None,
            "title": None,
            "text": "The brake pads need to be replaced.",
            "unit_of_length_remaining": "48712",
        }
    ]
    dtc = extended["electronic_control_unit_diagnostic_trouble_codes_raw"]
    assert dtc.startswith('<dtcData dtcCount="72">') and dtc.rstrip().endswith("</dtcData>")


def test_absent_values_are_not_published() -> None:
    entries = {
        "vehicle.a.b": e(None, None),
        "vehicle.a.c": e("-NA-"),
        "vehicle.a.d": e("null"),
        "vehicle.isMoving": e("ASN_isUnknown"),
    }
    assert fields_of(entries) == {"updated_at": "2026-11-01T10:00:00+00:00"}  # isMoving's time counts


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("vehicle.cabin.door.row1.driver.isOpen", "cabin_door_row1_driver_is_open"),
        ("vehicle.isMoving", "is_moving"),
        ("vehicle.vehicle.avgAuxPower", "vehicle_avg_aux_power"),
        ("vehicle.drivetrain.electricEngine.charging.acVoltage", "drivetrain_electric_engine_charging_ac_voltage"),
        (
            "vehicle.electricalSystem.battery48V.stateOfHealth.displayed",
            "electrical_system_battery48_v_state_of_health_displayed",
        ),
    ],
)
def test_field_names(key: str, name: str) -> None:
    assert field_name(key) == name


# --- merging --------------------------------------------------------------------------------------


def test_location_from_separate_messages() -> None:
    car = CarState()
    assert car.merge({LAT: e(48.1772, "2026-11-01T10:00:00Z", "degrees")})
    assert car.status("V", None).location is None
    assert car.merge({LON: e(11.5562, "2026-11-01T10:00:01Z", "degrees")})
    assert car.status("V", None).location == Location(latitude=48.1772, longitude=11.5562)
    car.merge({HEADING: e("45", "2026-11-01T10:00:02Z", "degrees")})
    status = car.status("V", None)
    assert status.location == Location(latitude=48.1772, longitude=11.5562, heading=45)
    assert "cabin_infotainment_navigation_current_location_latitude" not in status.fields
    assert status.to_state()["location"] == {"latitude": 48.1772, "longitude": 11.5562, "heading": 45}


def test_older_entries_are_ignored_and_repeats_change_nothing() -> None:
    car = CarState()
    assert car.merge({f.SOC_HEADER: e("74", "2026-11-01T10:00:00Z")})
    assert not car.merge({f.SOC_HEADER: e("60", "2026-11-01T09:00:00Z")})  # an older REST read
    assert not car.merge({f.SOC_HEADER: e("74", "2026-11-01T10:00:00Z")})  # BMW re-sends
    assert car.status("V", None).fields["battery_level"] == 74
    assert car.merge({f.SOC_HEADER: e("75", "2026-11-01T10:05:00Z")})
    assert car.status("V", None).fields["battery_level"] == 75
    assert car.newest() == datetime(2026, 11, 1, 10, 5, tzinfo=UTC)


def test_absent_entries_remove_nothing() -> None:
    car = CarState()
    assert not car.has_data()
    car.merge({f.BATTERY_12V: e("14.39", "2026-11-01T10:00:00Z", "V")})
    assert not car.merge({f.BATTERY_12V: e(None, None, "V")})
    assert not car.merge({f.BATTERY_12V: e("-NA-", "2026-11-01T11:00:00Z", "V")})
    assert car.has_data()
    assert car.status("V", None).fields["battery_12v"] == 14.39


def test_stream_message_changes_only_what_it_carries(fixtures_dir: Path) -> None:
    car = CarState()
    car.merge(entries_from_telematic(load(fixtures_dir, "rest/telematic_data_bev_i4m50.json")))
    before = car.status("V", None).fields
    _vin, entries = entries_from_stream(load(fixtures_dir, "stream/stream_bev_preference_smart_charging.json"))
    assert car.merge(entries)
    after = car.status("V", None).fields
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == {"powertrain_electric_battery_charging_preference_smart_charging", "updated_at"}
    assert after["updated_at"] == "2025-10-01T10:12:39+00:00"
    assert set(before) <= set(after)


# --- the tables -----------------------------------------------------------------------------------


def test_container_keys_are_catalogue_keys(fixtures_dir: Path) -> None:
    catalogue = load(fixtures_dir, "catalogue/telematic_catalogue.json")["descriptors"]
    known = {d["descriptor"] for d in catalogue}
    assert len(f.CONTAINER_KEYS) == len(set(f.CONTAINER_KEYS))
    assert set(f.CONTAINER_KEYS) <= known
    dedicated = {"vehicle.chassis.axle.wheel.tire.diagnosis", "vehicle.vehicleIdentification.basicVehicleData"}
    dedicated |= {"vehicle.look.image", "vehicle.powertrain.electric.battery.charging.history.sessionsList"}
    assert not dedicated & set(f.CONTAINER_KEYS)
    for sources in f.COMMON_SOURCES.values():
        assert set(sources) <= set(f.CONTAINER_KEYS)


def test_field_specs_name_published_fields_not_common_ones() -> None:
    names = [spec.name for spec in f.FIELDS]
    assert len(names) == len(set(names))
    # a common field is declared again only where CarData's differs: the 12 V battery in volts, not percent
    assert set(names) & set(CORE_FIELDS) == {"battery_12v"}
    assert CORE_FIELDS["battery_12v"].unit == "%"
    volts = next(spec for spec in f.FIELDS if spec.name == "battery_12v")
    assert (volts.unit, volts.device_class) == ("V", "voltage")
    names.remove("battery_12v")
    published = {field_name(key) for key in f.CONTAINER_KEYS} | {"drivetrain_internal_combustion_engine_engine_ect"}
    assert set(names) <= published


def test_vehicle_info(fixtures_dir: Path) -> None:
    mapping = load(fixtures_dir, "rest/mappings_two_primary.json")[0]
    info = vehicle_info("WBY31AW090TEST001", load(fixtures_dir, "rest/basic_data_bev_i4m50.json"), mapping)
    assert (info.vin, info.model, info.brand, info.drive_train) == ("WBY31AW090TEST001", "i4 M50", "BMW", "BEV")
    assert info.commands == {"refresh": frozenset({"PRESS"})}
    assert info.datasets == frozenset()
    assert info.details["series_devt"] == "G26" and info.details["charging_modes"] == ["AC_LOW"]
    assert info.details["mapping_type"] == "PRIMARY"
    x1 = vehicle_info("X1", load(fixtures_dir, "rest/basic_data_ice_x1.json"), None)
    assert (x1.model, x1.drive_train) == ("X1 sDrive18i", DriveTrain.CONV)
    assert x1.details["has_navi"] is False and x1.details["body_type"] == "Sports Activity Vehicle"


def test_vehicle_info_without_basic_data() -> None:
    info = vehicle_info("V1", None, None)
    assert (info.model, info.brand, info.drive_train) == ("BMW", "BMW", DriveTrain.UNKNOWN)
    assert info.commands == {"refresh": frozenset({"PRESS"})}
    hinted = vehicle_info("V1", {"driveTrain": "NEWTHING", "propulsionType": "EL", "vin": "V1"}, None)
    assert hinted.drive_train == DriveTrain.BEV
    assert "vin" not in hinted.details
