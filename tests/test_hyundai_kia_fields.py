"""Every attribute of the installed library's ``Vehicle``: published with its unit, or skipped for a reason.

The library grows attributes with each release (4.41 has tyre pressures, drive mode, expected charge
times ...). These tests read the installed ``Vehicle`` itself, so they hold for 4.23 and the newest
release alike, and run the captures through the library's own parsers for the values.
"""

from __future__ import annotations

import dataclasses
from datetime import time

import pytest

pytest.importorskip("hyundai_kia_connect_api")
pytestmark = pytest.mark.filterwarnings("ignore:'ssl_version' option is deprecated:FutureWarning")

from hyundai_kia_connect_api import Vehicle  # noqa: E402
from hyundai_kia_connect_api.const import ENGINE_TYPES  # noqa: E402

from mqttbridge.backends.hyundai_kia.mapping import FIELDS, SKIPPED, status_fields  # noqa: E402
from mqttbridge.backends.hyundai_kia.vehicle_fields import KIND_UNITS, QUANTITY_KINDS, Kind  # noqa: E402

from . import test_hyundai_kia as base  # noqa: E402
from .test_hyundai_kia import vehicle_of  # noqa: E402

vendor, eu, make = base.vendor, base.eu, base.make


def library_attributes() -> set[str]:
    """The installed Vehicle's public attributes: dataclass fields, properties, and a fresh instance's."""
    fields = {field.name for field in dataclasses.fields(Vehicle)}
    properties = {name for name, value in vars(Vehicle).items() if isinstance(value, property)}
    instance = set(vars(Vehicle()))
    return {name for name in fields | properties | instance if not name.startswith("_")}


def test_every_attribute_is_mapped_with_its_unit_or_skipped_with_a_reason():
    attributes = library_attributes()
    unknown = attributes - set(FIELDS) - set(SKIPPED)
    assert not unknown, f"add to vehicle_fields.FIELDS (with its unit) or SKIPPED (with a reason): {sorted(unknown)}"
    assert not set(FIELDS) & set(SKIPPED)
    for attribute in sorted(attributes & set(FIELDS)):
        spec = FIELDS[attribute]
        if spec.kind in QUANTITY_KINDS:
            assert spec.unit is not None, f"{attribute}: a quantity needs its unit ('' for counts)"
        if spec.kind in KIND_UNITS:
            assert spec.unit == KIND_UNITS[spec.kind], attribute
    for attribute in sorted(attributes & set(SKIPPED)):
        assert len(SKIPPED[attribute].split()) >= 4, f"{attribute}: say why it is skipped"
    assert all(name.startswith("supports_") for name in attributes if "supports" in name)
    assert {name for name in attributes if name.startswith("supports_")} <= set(SKIPPED)


def test_capability_flags_are_no_status():
    car = Vehicle(id="x")
    car.supports_window_control = True
    car.supports_valet_mode = True
    car.supports_svm = True
    car.supports_something_new = True  # a later release's capability, unknown to the table
    car.rear_seat_heater_is_on = True  # a later release's status flag: published by the fallback
    fields = status_fields(car)
    assert not [name for name in fields if "supports" in name]
    assert fields["rear_seat_heater_is_on"] is True


@pytest.mark.parametrize(
    ("code", "raw", "kpa", "word"),
    [
        (0, 36, 248.2, "psi"),  # US Hyundai reports psi
        (1, 250, 250, "kPa"),
        (2, 2.5, 250, "bar"),
    ],
)
def test_tyre_pressures_are_published_in_kpa_with_the_cars_unit_named(code, raw, kpa, word):
    car = Vehicle(id="x")
    car.tire_pressure_unit = code  # an IntEnum (PressureUnit) in 4.41, a plain int would do too
    car.tire_pressure_front_left = raw
    car.tire_pressure_rear_right = 255 if code != 1 else 900  # a sentinel or a broken reading
    fields = status_fields(car)
    assert fields["tire_pressure_front_left"] == kpa
    assert "tire_pressure_rear_right" not in fields
    assert fields["tire_pressure_display_unit"] == word  # the word, never the bare code


def test_a_tyre_pressure_without_its_unit_is_not_published():
    car = Vehicle(id="x")
    car.tire_pressure_front_left = 36
    car.tire_pressure_unit = None
    fields = status_fields(car)
    assert "tire_pressure_front_left" not in fields and "tire_pressure_display_unit" not in fields


def test_sentinels_are_no_levels():
    car = Vehicle(id="x", engine_type=ENGINE_TYPES.EV)
    car.car_battery_percentage = 255  # 4.23 passes the CCS2 "no reading" through as the 12 V level
    car.ev_battery_percentage = 255
    car.ev_charge_limits_ac = 100
    fields = status_fields(car)
    assert "battery_12v" not in fields and "battery_level" not in fields
    assert fields["ev_charge_limits_ac"] == 100


def test_expected_charge_times_are_times_of_day():
    car = Vehicle(id="x", engine_type=ENGINE_TYPES.PHEV)
    car.ev_charge_expected_start_time = time(22, 30)
    car.ev_charge_expected_end_time = time(6, 5)
    fields = status_fields(car)
    assert (fields["ev_charge_expected_start_time"], fields["ev_charge_expected_end_time"]) == ("22:30", "06:05")


def test_a_petrol_cars_range_is_its_fuel_range():
    car = Vehicle(id="x", engine_type=ENGINE_TYPES.ICE)
    car.total_driving_range = (102.0, "km")  # Brazil's Creta: a CCS2 petrol car with one range
    car.fuel_level = 20
    fields = status_fields(car)
    assert (fields["range_fuel"], fields["total_driving_range"], fields["fuel_percent"]) == (102, 102, 20)
    assert "range_electric" not in fields


def test_a_fuel_range_in_miles_from_the_raw_tree():
    car = Vehicle(id="x", engine_type=ENGINE_TYPES.PHEV)
    car.data = {"Drivetrain": {"FuelSystem": {"DTE": {"Total": 300, "EV": 20, "ICE": 280, "Unit": 2}}}}
    fields = status_fields(car)
    assert (fields["range_fuel"], fields["range_electric"]) == (450.6, 32.2)


def test_sportage_phev_ccs2_ranges_and_sentinels(eu, make):
    """The petrol range (551 km) is only in the raw CCS2 tree (DTE.ICE) on every release; 4.41 parses
    the electric one (DTE.EV, 47 km), 4.23 does not (then it comes from the tree too)."""
    backend = make()
    f = backend.read_status(vehicle_of(backend, "sportage-id")).fields
    assert f["range_fuel"] == 551
    assert f["range_electric"] == 47
    assert f["total_driving_range"] == 600
    assert f["battery_12v"] == 90
    assert f["fuel_percent"] == 100
    assert "ev_battery_soh_percentage" not in f  # SoH.Ratio 0: no reading
    # every tyre reads 255 (no reading): no pressure is published, in any unit
    assert not [name for name in f if name.startswith("tire_pressure_") and not name.endswith(("_is_on", "_unit"))]
    if "tire_pressure_display_unit" in f:  # 4.41: PressureUnit 2
        assert f["tire_pressure_display_unit"] == "bar"
    assert all(not isinstance(value, float) or value == value for value in f.values())


def test_field_units_are_published_in_one_unit_each():
    assert FIELDS["odometer"].unit == "km"
    assert FIELDS["tire_pressure_front_left"].unit == "kPa"
    assert FIELDS["ev_charging_power"].unit == "kW"
    assert FIELDS["car_battery_percentage"].kind is Kind.PERCENT
