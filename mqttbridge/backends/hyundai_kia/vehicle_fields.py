"""The library's ``Vehicle`` attributes as published status fields, each with its unit.

Why a table for every attribute: the contract publishes every status field the vendor returns
(CONTRACT section 4), in one unit per field (km, °C, kPa ...), and each library release adds
attributes. ``FIELDS`` says how each known one is published and in which unit; ``SKIPPED`` says
why the others are not. A test enumerates the installed library's ``Vehicle`` and fails on any
attribute in neither, so a new release cannot add data silently or publish a raw code.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, time
from enum import Enum, StrEnum
from typing import Any

from mqttbridge.model import DriveTrain, Location
from mqttbridge.normalize import iso, number, snake_case

log = logging.getLogger(__name__)

#: the library's ENGINE_TYPES value -> the contract's drive train
DRIVE_TRAINS: dict[str, DriveTrain] = {
    "EV": DriveTrain.BEV,
    "PHEV": DriveTrain.PHEV,
    "HEV": DriveTrain.HEV,
    "ICE": DriveTrain.CONV,
}


def drive_train(engine_type: Any) -> DriveTrain:
    """``ENGINE_TYPES.EV`` (or its value) -> BEV; unknown or not yet known (US Kia before the first read) -> UNKNOWN."""
    value = engine_type.value if isinstance(engine_type, Enum) else engine_type
    return DRIVE_TRAINS.get(str(value).upper(), DriveTrain.UNKNOWN) if value is not None else DriveTrain.UNKNOWN


class Kind(StrEnum):
    NUMBER = "number"  # as reported, in the Field's unit
    PERCENT = "percent"  # 0 to 100; anything else (255: "no reading") is not published
    DISTANCE = "distance"  # km; miles converted by the attribute's unit
    TEMPERATURE = "temperature"  # °C; °F converted by the attribute's unit
    DURATION = "duration"  # minutes (the library's unit "m")
    PRESSURE = "pressure"  # kPa, converted from the car's display unit (Vehicle.tire_pressure_unit)
    PRESSURE_UNIT = "pressure_unit"  # the car's display unit for tyre pressures as a word: psi, kPa, bar
    BOOL = "bool"
    ENUM = "enum"  # upper-case words
    AUTO = "auto"  # published as it comes: bool, number (a vendor code) or text
    TIMESTAMP = "timestamp"
    CLOCK = "clock"  # a time of day, "HH:MM"
    JSON = "json"  # a list or object, published as JSON
    CHARGING = "charging"  # bool -> CHARGING / NOT_CHARGING
    LOCK = "lock"  # bool -> LOCKED / UNLOCKED


#: the unit a kind publishes in, whatever the car reports
KIND_UNITS: dict[Kind, str] = {
    Kind.PERCENT: "%",
    Kind.DISTANCE: "km",
    Kind.TEMPERATURE: "°C",
    Kind.DURATION: "min",
    Kind.PRESSURE: "kPa",
}
#: kinds whose values are quantities: their Field must say the unit ("" for counts and levels)
QUANTITY_KINDS = frozenset({Kind.NUMBER, *KIND_UNITS})


@dataclass(frozen=True)
class Field:
    """One ``Vehicle`` attribute published as ``name`` in ``unit``; ``fuel`` ones are left out for
    a BEV, whose status reports a meaningless 0 for them."""

    name: str
    kind: Kind
    unit: str | None = None
    fuel: bool = False
    #: raw values that mean "no reading" (the CCS2 SoH ratio 0, which 4.41 drops and 4.23 passes on)
    no_reading: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.unit is None and self.kind in KIND_UNITS:
            object.__setattr__(self, "unit", KIND_UNITS[self.kind])


def _same(kind: Kind, *attributes: str, unit: str | None = None) -> dict[str, Field]:
    return {attribute: Field(attribute.lower(), kind, unit) for attribute in attributes}


#: library attribute -> published field. The first block is the contract's common names; the rest
#: keep the library's own (already snake_case) names.
FIELDS: dict[str, Field] = {
    "odometer": Field("odometer", Kind.DISTANCE),
    "ev_battery_percentage": Field("battery_level", Kind.PERCENT),
    "ev_driving_range": Field("range_electric", Kind.DISTANCE),
    "fuel_driving_range": Field("range_fuel", Kind.DISTANCE, fuel=True),
    "ev_battery_is_charging": Field("charging_status", Kind.CHARGING),
    "ev_battery_is_plugged_in": Field("plugged_in", Kind.BOOL),
    "is_locked": Field("door_lock_state", Kind.LOCK),
    "last_updated_at": Field("updated_at", Kind.TIMESTAMP),
    "car_battery_percentage": Field("battery_12v", Kind.PERCENT),
    # the library's fuel_level is a percentage; the contract's fuel_level is litres
    "fuel_level": Field("fuel_percent", Kind.PERCENT, fuel=True),
    "fuel_level_is_low": Field("fuel_level_is_low", Kind.BOOL, fuel=True),
    "location_last_updated_at": Field("location_updated_at", Kind.TIMESTAMP),
    "tire_pressure_unit": Field("tire_pressure_display_unit", Kind.PRESSURE_UNIT),
    **_same(
        Kind.DISTANCE,
        "total_driving_range",
        "next_service_distance",
        "last_service_distance",
        "ev_target_range_charge_AC",
        "ev_target_range_charge_DC",
    ),
    **_same(
        Kind.TEMPERATURE,
        "outside_temperature",
        "air_temperature",
        "ev_battery_water_temperature",
        "ev_battery_temperature_min",
        "ev_battery_temperature_max",
        "ev_first_departure_climate_temperature",
        "ev_second_departure_climate_temperature",
    ),
    **_same(
        Kind.DURATION,
        "ev_estimated_current_charge_duration",
        "ev_estimated_fast_charge_duration",
        "ev_estimated_portable_charge_duration",
        "ev_estimated_station_charge_duration",
        "ev_v2l_discharge_remain_time",
    ),
    **_same(Kind.PERCENT, "ev_charge_limits_ac", "ev_charge_limits_dc", "ev_v2l_discharge_limit"),
    "ev_battery_soh_percentage": Field("ev_battery_soh_percentage", Kind.PERCENT, no_reading=(0,)),
    **_same(
        Kind.PRESSURE,
        "tire_pressure_front_left",
        "tire_pressure_front_right",
        "tire_pressure_rear_left",
        "tire_pressure_rear_right",
    ),
    **_same(Kind.NUMBER, "ev_charging_power", unit="kW"),
    **_same(Kind.NUMBER, "ev_battery_pack_voltage", unit="V"),
    **_same(Kind.NUMBER, "ev_battery_chiller_rpm", unit="rpm"),
    **_same(Kind.NUMBER, "ev_battery_remain", "ev_battery_capacity", unit="kWh"),
    # Wh since the car was paired with the account (the library's comment), and over the last 30 days
    **_same(Kind.NUMBER, "total_power_consumed", "total_power_regenerated", "power_consumption_30d", unit="Wh"),
    # the vendor's momentary consumers (Green.PowerConsumption.Moment); the library names no unit, W assumed
    **_same(
        Kind.NUMBER,
        "ev_power_consumption_battery_cooling",
        "ev_power_consumption_battery_heater",
        "ev_power_consumption_air_conditioning",
        unit="W",
    ),
    # counts and the car's own level codes: dimensionless
    **_same(Kind.NUMBER, "dtc_count", "steering_wheel_heat_step", unit=""),
    # ElectricCurrentLevel.State: 1 = 100 %, 2 = 90 %, 3 = 60 % of the AC current (set_charging_current's codes)
    **_same(Kind.NUMBER, "ev_charging_current", unit=""),
    **_same(
        Kind.BOOL,
        "engine_is_running",
        "smart_key_battery_warning_is_on",
        "washer_fluid_warning_is_on",
        "brake_fluid_warning_is_on",
        "oil_level_warning_is_on",
        "battery_auxiliary_fail_warning_is_on",
        "auto_cut_battery_prewarning_on",
        "air_control_is_on",
        "defrost_is_on",
        "steering_wheel_heater_is_on",
        "back_window_heater_is_on",
        "side_mirror_heater_is_on",
        "windshield_front_heater_is_on",
        "air_cleaning_is_on",
        "front_left_door_is_locked",
        "front_right_door_is_locked",
        "back_left_door_is_locked",
        "back_right_door_is_locked",
        "front_left_door_is_open",
        "front_right_door_is_open",
        "back_left_door_is_open",
        "back_right_door_is_open",
        "trunk_is_open",
        "hood_is_open",
        "front_left_window_is_open",
        "front_right_window_is_open",
        "back_left_window_is_open",
        "back_right_window_is_open",
        "sunroof_is_open",
        "valet_mode_active",
        "hazard_lights_on",
        "ota_update_available",
        "tire_pressure_all_warning_is_on",
        "tire_pressure_rear_left_warning_is_on",
        "tire_pressure_front_left_warning_is_on",
        "tire_pressure_front_right_warning_is_on",
        "tire_pressure_rear_right_warning_is_on",
        "ev_charge_port_door_is_open",
        "ev_v2l_status",
        "ev_v2x_status",
        "accessory_on",
        "ign3",
        "remote_ignition",
        "sleep_mode_check",
        "ev_battery_heating_state",
        "ev_battery_winter_mode",
        "ev_battery_precondition_enabled",
        "ev_first_departure_enabled",
        "ev_second_departure_enabled",
        "ev_first_departure_climate_enabled",
        "ev_second_departure_climate_enabled",
        "ev_first_departure_climate_defrost",
        "ev_second_departure_climate_defrost",
        "ev_off_peak_charge_only_enabled",
        "ev_schedule_charge_enabled",
        "ev_charge_complete_alarm_before_10min",
        "ev_charge_complete_alarm_before_20min",
        "ev_charge_complete_alarm_before_30min",
        "ev_charge_complete_alarm_off",
    ),
    **_same(
        Kind.ENUM,
        "front_left_seat_status",
        "front_right_seat_status",
        "rear_left_seat_status",
        "rear_right_seat_status",
    ),
    # lamp words differ by protocol (0/1 flags, CCS2 warning levels), gear, transmission and V2L mode are
    # the car's codes, drive mode and software version are words: kept as they come
    **_same(
        Kind.AUTO,
        "headlamp_status",
        "headlamp_left_low",
        "headlamp_right_low",
        "headlamp_left_high",
        "headlamp_right_high",
        "headlamp_left_bifunc",
        "headlamp_right_bifunc",
        "stop_lamp_left",
        "stop_lamp_right",
        "turn_signal_left_front",
        "turn_signal_right_front",
        "turn_signal_left_rear",
        "turn_signal_right_rear",
        "transmission_condition",
        "gear_position",
        "ev_v2l_mode",
        "drive_mode",
        "software_version",
    ),
    **_same(
        Kind.CLOCK,
        "ev_first_departure_time",
        "ev_second_departure_time",
        "ev_off_peak_start_time",
        "ev_off_peak_end_time",
        "ev_charge_expected_start_time",
        "ev_charge_expected_end_time",
    ),
    **_same(Kind.JSON, "dtc_descriptions", "ev_first_departure_days", "ev_second_departure_days"),
}

_IDENTITY = "the vehicle's identity, published in its info (VehicleInfo.details), not as status"
_CAPABILITY = "what the library's API class can do, not the car's state; never published as status"
_ECONOMY = (
    "the library passes the vendor's unit code through untranslated (it differs per drive train), "
    "so the number's unit is unknown"
)

#: public attributes that are not published, and why
SKIPPED: dict[str, str] = {
    "id": _IDENTITY,
    "name": _IDENTITY,
    "model": _IDENTITY,
    "registration_date": _IDENTITY,
    "year": _IDENTITY,
    "VIN": _IDENTITY,
    "generation": _IDENTITY,
    "engine_type": "published as the vehicle's drive train (VehicleInfo.drive_train)",
    "ccu_ccs2_protocol_support": _IDENTITY + " (the protocol the vendor speaks with the car)",
    "key": "US Kia's per-session vehicle key: a credential, not a fact about the car",
    "enabled": "the library's own switch for skipping a vehicle, never changed by the bridge",
    "timezone": "the library's time zone for parsing; every time is published with its UTC offset",
    "data": "the vendor's raw answer; the fields above come from it (range_fuel and range_electric too)",
    "last_scanned_at": "when the library was last asked; the bridge publishes its own fetched_at",
    "geocode": "reverse geocoding is off: it would send the position to a third party",
    "location": "published on the location topic (latitude, longitude)",
    "location_latitude": "published on the location topic",
    "location_longitude": "published on the location topic",
    "daily_stats": "trip and energy statistics are history, not the car's status",
    "month_trip_info": "trip statistics are history, not the car's status",
    "day_trip_info": "trip statistics are history, not the car's status",
    "supports_window_control": _CAPABILITY,
    "supports_valet_mode": _CAPABILITY,
    "supports_svm": _CAPABILITY,
    "average_fuel_economy_accumulated": _ECONOMY,
    "average_fuel_economy_drive": _ECONOMY,
    "average_fuel_economy_after_refuel": _ECONOMY,
    "average_fuel_economy_unit": _ECONOMY,
    "ev_v2l_discharge_dte": "the range left while discharging to a load; the library maps no unit for it",
}
# the library's unit attributes: the values they describe are published converted to one unit
SKIPPED.update(
    {
        f"{attribute}_unit": f"the unit of {attribute}, which is published in {spec.unit}"
        for attribute, spec in FIELDS.items()
        if spec.kind in (Kind.DISTANCE, Kind.TEMPERATURE, Kind.DURATION, Kind.PRESSURE)
    }
)
#: attribute-name prefixes never published by the fallback below (capabilities of newer releases)
SKIPPED_PREFIXES = ("supports_", "_")

#: attribute-name endings that mean a flag, for attributes the table does not know (newer library
#: versions, region-only extras such as US Kia's ``front_left_seat_heater_is_on`` before 4.24)
_FLAG_SUFFIXES = ("_is_on", "_is_open", "_is_locked", "_is_low", "_enabled", "_active", "_is_running", "_on")
_MILES = frozenset({"mi", "mile", "miles"})
_FAHRENHEIT = frozenset({"°f", "f", "fahrenheit"})
_KM_PER_MILE = 1.609344
#: the library's parse_datetime returns 2000-01-01 when the vendor sent no time at all
_NO_TIME_BEFORE = 2001
#: the library's PressureUnit codes (Chassis.Axle.Tire.PressureUnit) -> unit word, kPa per unit
PRESSURE_UNITS: dict[int, tuple[str, float]] = {0: ("psi", 6.894757), 1: ("kPa", 1.0), 2: ("bar", 100.0)}
#: above this a tyre "pressure" is a sentinel (255 in any unit) or a broken reading
_MAX_KPA = 700.0
#: the library's DISTANCE_UNITS codes for the raw CCS2 tree's DTE.Unit
_DISTANCE_CODES: dict[int, str] = {1: "km", 2: "mi", 3: "mi"}


def flag(value: Any) -> bool | None:
    """A boolean from the shapes the APIs use: bool, 0/1 (or a level > 0), "true"/"false"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "1", "on", "yes"):
            return True
        if word in ("false", "0", "off", "no"):
            return False
    return None


def _unit(vehicle: Any, attribute: str) -> str:
    unit = getattr(vehicle, f"_{attribute}_unit", None)
    return str(unit).strip().lower() if unit is not None else ""


def _distance(value: Any, unit: str) -> int | float | None:
    amount = number(value)
    if amount is None:
        return None
    if unit in _MILES:
        return number(round(amount * _KM_PER_MILE, 1))
    return amount


def _temperature(value: Any, unit: str) -> int | float | None:
    amount = number(value)
    if amount is None:
        return None
    if unit in _FAHRENHEIT:
        return number(round((amount - 32) * 5 / 9, 1))
    return amount


def _percent(value: Any) -> int | float | None:
    amount = number(value)
    return amount if amount is not None and 0 <= amount <= 100 else None


def pressure_unit(vehicle: Any) -> tuple[str, float] | None:
    """The car's tyre-pressure unit (word, kPa per unit) from ``tire_pressure_unit``: an IntEnum or int."""
    code = getattr(vehicle, "tire_pressure_unit", None)
    if code is None or isinstance(code, bool):
        return None
    try:
        return PRESSURE_UNITS.get(int(code))
    except (TypeError, ValueError):
        return None


def _pressure(value: Any, unit: tuple[str, float] | None) -> int | float | None:
    amount = number(value)
    if amount is None or unit is None:  # a pressure without its unit is not published
        return None
    kpa = round(amount * unit[1], 1)
    return number(kpa) if 0 < kpa <= _MAX_KPA else None


def _timestamp(value: Any) -> str | None:
    if not isinstance(value, datetime) or value.year < _NO_TIME_BEFORE:
        return None
    return iso(value)


def _json(value: Any) -> Any:
    if isinstance(value, list | tuple | dict):
        try:
            return json.loads(json.dumps(value, default=str))
        except (TypeError, ValueError):
            return None
    return None


def _auto(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def convert(kind: Kind, value: Any, unit: str = "") -> Any:
    """One attribute's value in the contract's form, or None (not published)."""
    if kind is Kind.NUMBER or kind is Kind.DURATION:
        return number(value)
    if kind is Kind.PERCENT:
        return _percent(value)
    if kind is Kind.DISTANCE:
        return _distance(value, unit)
    if kind is Kind.TEMPERATURE:
        return _temperature(value, unit)
    if kind is Kind.BOOL:
        return flag(value)
    if kind is Kind.CHARGING:
        on = flag(value)
        return None if on is None else ("CHARGING" if on else "NOT_CHARGING")
    if kind is Kind.LOCK:
        on = flag(value)
        return None if on is None else ("LOCKED" if on else "UNLOCKED")
    if kind is Kind.TIMESTAMP:
        return _timestamp(value)
    if kind is Kind.CLOCK:
        return value.strftime("%H:%M") if isinstance(value, time) else None
    if kind is Kind.ENUM:
        return (snake_case(value).upper() or None) if isinstance(value, str) else None
    if kind is Kind.JSON:
        return _json(value)
    return _auto(value)


def _child(tree: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def _ccs2_dte(vehicle: Any) -> dict[str, Any] | None:
    """The raw CCS2 tree's ``Drivetrain.FuelSystem.DTE`` (ranges per engine), wherever ``data`` holds it."""
    data = getattr(vehicle, "data", None)
    for prefix in ((), ("state", "Vehicle"), ("resMsg", "state", "Vehicle")):
        dte = _child(data, *prefix, "Drivetrain", "FuelSystem", "DTE")
        if isinstance(dte, dict):
            return dte
    return None


def _dte_range(dte: dict[str, Any], key: str) -> int | float | None:
    """One DTE range in km; none when its unit code is unknown."""
    code = number(dte.get("Unit"))
    unit = "km" if code is None else _DISTANCE_CODES.get(int(code))
    return _distance(dte.get(key), unit) if unit is not None else None


def _ranges(vehicle: Any, train: DriveTrain, fields: dict[str, Any]) -> None:
    """range_fuel and range_electric where the library leaves them out.

    CCS2 cars (EU, Brazil) report the ranges per engine only in the raw tree: the petrol range of a
    plug-in hybrid is ``DTE.ICE`` (no library release parses it), its electric range ``DTE.EV`` (4.41
    parses it, 4.23 does not). A petrol car's only range is its total range.
    """
    dte = _ccs2_dte(vehicle)
    if train is DriveTrain.PHEV or train is DriveTrain.HEV:
        if "range_fuel" not in fields and dte is not None:
            fuel = _dte_range(dte, "ICE")
            if fuel is not None:
                fields["range_fuel"] = fuel
        if train is DriveTrain.PHEV and "range_electric" not in fields and dte is not None:
            electric = _dte_range(dte, "EV")
            if electric is not None:
                fields["range_electric"] = electric
    if train in (DriveTrain.CONV, DriveTrain.HEV) and "range_fuel" not in fields and "total_driving_range" in fields:
        fields["range_fuel"] = fields["total_driving_range"]


def status_fields(vehicle: Any) -> dict[str, Any]:
    """Every known status attribute of a library ``Vehicle`` under its published name; None skipped."""
    train = drive_train(getattr(vehicle, "engine_type", None))
    pressures = pressure_unit(vehicle)
    fields: dict[str, Any] = {}
    for attribute, spec in FIELDS.items():
        if spec.fuel and train is DriveTrain.BEV:
            continue
        raw = getattr(vehicle, attribute, None)
        if raw is None or (spec.no_reading and raw in spec.no_reading):
            continue
        value: object  # a number, a word, or whatever ``convert`` makes of the attribute
        if spec.kind is Kind.PRESSURE:
            value = _pressure(raw, pressures)
        elif spec.kind is Kind.PRESSURE_UNIT:
            value = pressures[0] if pressures is not None else None
        else:
            value = convert(spec.kind, raw, _unit(vehicle, attribute))
        if value is not None:
            fields[spec.name] = value
    _ranges(vehicle, train, fields)
    for attribute, raw in vars(vehicle).items():  # what the table does not know yet
        if attribute.startswith(SKIPPED_PREFIXES) or attribute in FIELDS or attribute in SKIPPED or raw is None:
            continue
        kind = Kind.BOOL if attribute.endswith(_FLAG_SUFFIXES) else Kind.AUTO
        value = convert(kind, raw)
        if value is not None:
            fields.setdefault(snake_case(attribute), value)
    return fields


def location(vehicle: Any) -> Location | None:
    """The car's position; none for missing, out-of-range or 0/0 placeholder coordinates."""
    lat = number(getattr(vehicle, "location_latitude", None))
    lon = number(getattr(vehicle, "location_longitude", None))
    if lat is None or lon is None or (lat == 0 and lon == 0):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return Location(latitude=lat, longitude=lon)
