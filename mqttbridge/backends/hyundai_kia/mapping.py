"""The Hyundai/Kia backend's tables: what the library's objects mean in the contract's words.

Everything the backend decides by lookup lives here as data: account words to the library's
numbers, the ``Vehicle`` attributes to published fields (CONTRACT sections 4 and 7), the library's
order states to execution states, and its exceptions to ``mqttbridge.errors`` classes. The code
below the tables only applies them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, time
from enum import Enum, StrEnum
from typing import Any

import requests
from hyundai_kia_connect_api.const import ORDER_STATUS
from hyundai_kia_connect_api.exceptions import (
    APIError,
    AuthenticationError,
    AuthenticationOTPRequired,
    ConsentRequiredError,
    DeviceIDError,
    DuplicateRequestError,
    HyundaiKiaException,
    InvalidAPIResponseError,
    NoDataFound,
    PINMissingError,
    RateLimitingError,
    RequestTimeoutError,
    ServiceTemporaryUnavailable,
    UnsupportedControlError,
)
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from mqttbridge.errors import (
    ActionRequiredError,
    AuthError,
    BackendError,
    BadResponseError,
    CommandOutcomeUnknown,
    ConnectionFailed,
    MqttBridgeError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnsupportedError,
)
from mqttbridge.logsetup import redact
from mqttbridge.model import DriveTrain, ExecutionStatus, Location
from mqttbridge.normalize import iso, number, snake_case

log = logging.getLogger(__name__)

# --- account words -> the library's numbers (const.REGIONS / const.BRANDS) ------------------------

REGIONS: dict[str, int] = {
    "europe": 1,
    "canada": 2,
    "usa": 3,
    "china": 4,
    "australia": 5,
    "india": 6,
    "new_zealand": 7,
    "brazil": 8,
}
#: account brand -> (the library's number, the brand as published)
BRANDS: dict[str, tuple[int, str]] = {
    "kia": (1, "Kia"),
    "hyundai": (2, "Hyundai"),
    "genesis": (3, "Genesis"),
}
#: regions the library serves for some brands only (VehicleManager raises APIError otherwise)
REGION_BRANDS: dict[str, frozenset[str]] = {"new_zealand": frozenset({"kia"})}

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


# --- commands --------------------------------------------------------------------------------------

#: (command, action) -> the VehicleManager method that sends it (also the record's ``service``)
COMMAND_METHODS: dict[tuple[str, str], str] = {
    ("lock", "LOCK"): "lock",
    ("lock", "UNLOCK"): "unlock",
    ("climate", "ON"): "start_climate",
    ("climate", "OFF"): "stop_climate",
    ("charging", "ON"): "start_charge",
    ("charging", "OFF"): "stop_charge",
    ("charge_limit", "SET"): "set_charge_limits",
}
#: commands every car gets; ``refresh`` and ``force_refresh`` are status reads the bridge makes
BASE_COMMANDS: dict[str, frozenset[str]] = {
    "lock": frozenset({"LOCK", "UNLOCK"}),
    "climate": frozenset({"ON", "OFF"}),
    "refresh": frozenset({"PRESS"}),
    "force_refresh": frozenset({"PRESS"}),
}
#: added for cars with a charging port
CHARGING_COMMANDS: dict[str, frozenset[str]] = {
    "charging": frozenset({"ON", "OFF"}),
    "charge_limit": frozenset({"SET"}),
}
CHARGING_DRIVE_TRAINS = frozenset({DriveTrain.BEV, DriveTrain.PHEV})

CLIMATE_DEFAULTS: dict[str, Any] = {"temperature": 21.0, "duration": 5, "defrost": False, "heating": 0}
#: ClimateRequestOptions.heating values (const.HEAT_STATUS) that include the steering wheel; the
#: CCS2 and US Kia payloads take the wheel from ``steering_wheel`` instead, so it is set to match
HEATING_WITH_STEERING_WHEEL = frozenset({1, 3, 4})


@dataclass(frozen=True)
class TemperatureScale:
    """What the region's climate command accepts: the contract's °C are converted to it."""

    unit: str  # "C" or "F"
    low: float
    high: float
    step: float


#: read from each region's start_climate: the EU/CN/IN payload is an index into 14.0 .. 29.5 °C in
#: 0.5 steps, AU/NZ 17.0 .. 26.5, CA 16.0 .. 31.5 (both its tables hold these), BR whole °C,
#: the USA whole °F from 62 to 82
CLIMATE_SCALES: dict[str, TemperatureScale] = {
    "europe": TemperatureScale("C", 14.0, 29.5, 0.5),
    "china": TemperatureScale("C", 14.0, 29.5, 0.5),
    "india": TemperatureScale("C", 14.0, 29.5, 0.5),
    "australia": TemperatureScale("C", 17.0, 26.5, 0.5),
    "new_zealand": TemperatureScale("C", 17.0, 26.5, 0.5),
    "canada": TemperatureScale("C", 16.0, 31.5, 0.5),
    "brazil": TemperatureScale("C", 14.0, 30.0, 1.0),
    "usa": TemperatureScale("F", 62.0, 82.0, 1.0),
}


def vendor_temperature(celsius: float, scale: TemperatureScale) -> float | int:
    """The contract's °C as the region's climate command wants it: on its grid, within its range."""
    value = celsius * 9 / 5 + 32 if scale.unit == "F" else celsius
    value = round(value / scale.step) * scale.step
    value = min(max(value, scale.low), scale.high)
    return int(value) if scale.step >= 1 else float(value)


# --- execution states ------------------------------------------------------------------------------

ORDER_STATES: dict[ORDER_STATUS, ExecutionStatus] = {
    ORDER_STATUS.PENDING: ExecutionStatus.PENDING,
    ORDER_STATUS.SUCCESS: ExecutionStatus.EXECUTED,
    ORDER_STATUS.FAILED: ExecutionStatus.NOT_EXECUTED,
    ORDER_STATUS.TIMEOUT: ExecutionStatus.TIMED_OUT,
    ORDER_STATUS.UNKNOWN: ExecutionStatus.UNKNOWN,
}
#: US Kia's check_action_status answered a bool before library 4.24: True once every payload value is 0 (done)
BOOL_ORDER_STATES: dict[bool, ExecutionStatus] = {True: ExecutionStatus.EXECUTED, False: ExecutionStatus.PENDING}


def execution_state(result: Any) -> tuple[ExecutionStatus, str | None]:
    """check_action_status's answer -> (our status, the vendor's word for the record)."""
    if isinstance(result, bool):
        return BOOL_ORDER_STATES[result], str(result).upper()
    if isinstance(result, ORDER_STATUS):
        return ORDER_STATES[result], result.value
    if result is None:  # regions without an implementation answer None
        return ExecutionStatus.UNKNOWN, None
    log.warning("unknown order status %r from the library; treated as UNKNOWN", result)
    return ExecutionStatus.UNKNOWN, str(result)[:40]


# --- status fields ---------------------------------------------------------------------------------


class Kind(StrEnum):
    NUMBER = "number"
    DISTANCE = "distance"  # km; miles converted by the attribute's unit
    TEMPERATURE = "temperature"  # °C; °F converted by the attribute's unit
    DURATION = "duration"  # minutes (the library's unit "m")
    BOOL = "bool"
    ENUM = "enum"  # upper-case words
    AUTO = "auto"  # published as it comes: bool, number or text
    TIMESTAMP = "timestamp"
    CLOCK = "clock"  # a time of day, "HH:MM"
    JSON = "json"  # a list or object, published as JSON
    CHARGING = "charging"  # bool -> CHARGING / NOT_CHARGING
    LOCK = "lock"  # bool -> LOCKED / UNLOCKED


@dataclass(frozen=True)
class Field:
    """One ``Vehicle`` attribute published as ``name``; ``fuel`` ones are left out for a BEV,
    whose status reports a meaningless 0 for them."""

    name: str
    kind: Kind
    fuel: bool = False


def _same(kind: Kind, *attributes: str) -> dict[str, Field]:
    return {attribute: Field(attribute.lower(), kind) for attribute in attributes}


#: library attribute -> published field. The first block is the contract's common names; the rest
#: keep the library's own (already snake_case) names.
FIELDS: dict[str, Field] = {
    "odometer": Field("odometer", Kind.DISTANCE),
    "ev_battery_percentage": Field("battery_level", Kind.NUMBER),
    "ev_driving_range": Field("range_electric", Kind.DISTANCE),
    "fuel_driving_range": Field("range_fuel", Kind.DISTANCE, fuel=True),
    "ev_battery_is_charging": Field("charging_status", Kind.CHARGING),
    "ev_battery_is_plugged_in": Field("plugged_in", Kind.BOOL),
    "is_locked": Field("door_lock_state", Kind.LOCK),
    "last_updated_at": Field("updated_at", Kind.TIMESTAMP),
    "car_battery_percentage": Field("battery_12v", Kind.NUMBER),
    # the library's fuel_level is a percentage; the contract's fuel_level is litres
    "fuel_level": Field("fuel_percent", Kind.NUMBER, fuel=True),
    "fuel_level_is_low": Field("fuel_level_is_low", Kind.BOOL, fuel=True),
    "location_last_updated_at": Field("location_updated_at", Kind.TIMESTAMP),
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
    ),
    **_same(
        Kind.NUMBER,
        "dtc_count",
        "ev_charging_power",
        "ev_charge_limits_ac",
        "ev_charge_limits_dc",
        "ev_charging_current",
        "ev_v2l_discharge_limit",
        "total_power_consumed",
        "total_power_regenerated",
        "power_consumption_30d",
        "ev_battery_pack_voltage",
        "ev_battery_chiller_rpm",
        "ev_battery_soh_percentage",
        "ev_battery_remain",
        "ev_battery_capacity",
        "ev_power_consumption_battery_cooling",
        "ev_power_consumption_battery_heater",
        "ev_power_consumption_air_conditioning",
    ),
    **_same(
        Kind.BOOL,
        "engine_is_running",
        "smart_key_battery_warning_is_on",
        "washer_fluid_warning_is_on",
        "brake_fluid_warning_is_on",
        "air_control_is_on",
        "defrost_is_on",
        "steering_wheel_heater_is_on",
        "back_window_heater_is_on",
        "side_mirror_heater_is_on",
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
    ),
    **_same(
        Kind.ENUM,
        "front_left_seat_status",
        "front_right_seat_status",
        "rear_left_seat_status",
        "rear_right_seat_status",
    ),
    # lamp words differ by protocol (0/1 flags, CCS2 warning levels): kept as they come
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
    ),
    **_same(
        Kind.CLOCK,
        "ev_first_departure_time",
        "ev_second_departure_time",
        "ev_off_peak_start_time",
        "ev_off_peak_end_time",
    ),
    **_same(Kind.JSON, "dtc_descriptions", "ev_first_departure_days", "ev_second_departure_days"),
}

#: public attributes that are not status: the vehicle's identity (in VehicleInfo.details), the raw
#: answer, our own bookkeeping, geocoding (off) and trip data (not a status field)
SKIPPED: frozenset[str] = frozenset(
    {
        "id",
        "name",
        "model",
        "registration_date",
        "year",
        "VIN",
        "key",
        "ccu_ccs2_protocol_support",
        "generation",
        "enabled",
        "timezone",
        "engine_type",
        "supports_window_control",
        "supports_valet_mode",
        "data",
        "last_scanned_at",
        "geocode",
        "location",
        "location_latitude",
        "location_longitude",
        "daily_stats",
        "month_trip_info",
        "day_trip_info",
    }
)

#: attribute-name endings that mean a flag, for attributes the table does not know (newer library
#: versions, region-only extras such as US Kia's ``front_left_seat_heater_is_on``)
_FLAG_SUFFIXES = ("_is_on", "_is_open", "_is_locked", "_is_low", "_enabled", "_active", "_is_running")
_MILES = frozenset({"mi", "mile", "miles"})
_FAHRENHEIT = frozenset({"°f", "f", "fahrenheit"})
_KM_PER_MILE = 1.609344
#: the library's parse_datetime returns 2000-01-01 when the vendor sent no time at all
_NO_TIME_BEFORE = 2001


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
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def convert(kind: Kind, value: Any, unit: str = "") -> Any:
    """One attribute's value in the contract's form, or None (not published)."""
    if kind is Kind.NUMBER or kind is Kind.DURATION:
        return number(value)
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


def status_fields(vehicle: Any) -> dict[str, Any]:
    """Every known status attribute of a library ``Vehicle`` under its published name; None skipped."""
    is_bev = drive_train(getattr(vehicle, "engine_type", None)) is DriveTrain.BEV
    fields: dict[str, Any] = {}
    for attribute, spec in FIELDS.items():
        if spec.fuel and is_bev:
            continue
        raw = getattr(vehicle, attribute, None)
        if raw is None:
            continue
        value = convert(spec.kind, raw, _unit(vehicle, attribute))
        if value is not None:
            fields[spec.name] = value
    for attribute, raw in vars(vehicle).items():  # what the table does not know yet
        if attribute.startswith("_") or attribute in FIELDS or attribute in SKIPPED or raw is None:
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


# --- exceptions ------------------------------------------------------------------------------------

OTP_MESSAGE = (
    "the vendor asks for a one-time passcode (OTP, sent by e-mail or SMS) to log in, which mqttbridge "
    "cannot answer; log in once in the official app for this account and complete the verification there, "
    "then restart mqttbridge"
)
CONSENT_MESSAGE = (
    "the vendor wants the account holder to accept new terms or give consent first; log in once in the "
    "official app (or the brand's website) and accept them, then restart mqttbridge"
)


@dataclass(frozen=True)
class ErrorRule:
    """How one library exception becomes ours: the class, what it means, the vendor's resCode."""

    error: type[BackendError]
    meaning: str
    vendor_code: str | None = None
    #: add the library's (redacted, shortened) message; off where it may carry response dumps
    detail: bool = True


#: library (and requests) exception class -> rule; the most specific class in the MRO wins
ERRORS: dict[type[BaseException], ErrorRule] = {
    AuthenticationOTPRequired: ErrorRule(ActionRequiredError, OTP_MESSAGE, detail=False),
    ConsentRequiredError: ErrorRule(ActionRequiredError, CONSENT_MESSAGE, detail=False),
    AuthenticationError: ErrorRule(AuthError, "login refused; check username and password (and pin)"),
    PINMissingError: ErrorRule(AuthError, "this region needs the account's PIN: set `pin` in the account"),
    RateLimitingError: ErrorRule(RateLimitedError, "the vendor's request limit is exceeded", vendor_code="5091"),
    ServiceTemporaryUnavailable: ErrorRule(
        ServerError, "the vendor's service is temporarily unavailable", vendor_code="5031"
    ),
    RequestTimeoutError: ErrorRule(ServerError, "the vendor could not reach the car in time"),
    DeviceIDError: ErrorRule(
        ServerError, "the vendor rejected the device registration; it is renewed on the next call", vendor_code="4002"
    ),
    DuplicateRequestError: ErrorRule(
        BackendError, "an identical request is still pending at the vendor", vendor_code="4004"
    ),
    UnsupportedControlError: ErrorRule(UnsupportedError, "the car does not support this action", vendor_code="4005"),
    NoDataFound: ErrorRule(NotFoundError, "the vendor has no data for this car", vendor_code="5921"),
    InvalidAPIResponseError: ErrorRule(BadResponseError, "the vendor's answer has an unknown format"),
    APIError: ErrorRule(BackendError, "the vendor reported an error"),
    HyundaiKiaException: ErrorRule(BackendError, "the library reported an error"),
    requests.ConnectionError: ErrorRule(ConnectionFailed, "connection failed", detail=False),
    requests.Timeout: ErrorRule(ConnectionFailed, "timed out", detail=False),
    requests.exceptions.InvalidJSONError: ErrorRule(BadResponseError, "the vendor's answer is not JSON", detail=False),
    requests.RequestException: ErrorRule(BackendError, "the HTTP request failed", detail=False),
    NotImplementedError: ErrorRule(UnsupportedError, "the library does not offer this in the account's region"),
    KeyError: ErrorRule(BadResponseError, "the vendor's answer lacks an expected item", detail=False),
    IndexError: ErrorRule(BadResponseError, "the vendor's answer lacks an expected item", detail=False),
    TypeError: ErrorRule(BadResponseError, "the vendor's answer has an unexpected shape", detail=False),
    ValueError: ErrorRule(BadResponseError, "the vendor's answer has an unexpected value", detail=False),
}

_MAX_DETAIL = 160


def _rule(exc: BaseException) -> ErrorRule | None:
    for cls in type(exc).__mro__:
        rule = ERRORS.get(cls)
        if rule is not None:
            return rule
    return None


def _sent(exc: BaseException) -> bool:
    """Whether the request may have reached the vendor (decides if a command's fate is unknown)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(reason, NewConnectionError | ConnectTimeoutError):
            return False
    return True


def _detail(exc: BaseException) -> str:
    text = " ".join(redact(str(exc)).split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def backend_error(exc: BaseException, what: str, *, command: bool = False) -> MqttBridgeError:
    """Any exception from a library call as one of ours, with a message safe to publish.

    ``command``: the call sent a command, so an answer lost on the way (a dropped connection, a
    read timeout, an unreadable reply) means it may have been carried out: CommandOutcomeUnknown,
    never a retry.
    """
    if isinstance(exc, MqttBridgeError):
        return exc
    if isinstance(exc, RequestTimeoutError) and isinstance(exc.__cause__, requests.Timeout):
        exc = exc.__cause__  # ApiImplSession wraps the HTTP timeout: it is a connection problem
    rule = _rule(exc)
    if rule is None:
        return BackendError(f"{what}: unexpected {type(exc).__name__} from the hyundai_kia_connect_api library")
    detail = _detail(exc) if rule.detail else ""
    message = f"{what}: {rule.meaning}" + (f" ({detail})" if detail else f" ({type(exc).__name__})")
    error: BackendError
    if rule.error is ConnectionFailed:
        error = ConnectionFailed(message, sent=_sent(exc))
    elif rule.error is RateLimitedError:
        error = RateLimitedError(message, retry_after=None, http_status=None, vendor_code=rule.vendor_code)
    else:
        error = rule.error(message, vendor_code=rule.vendor_code)
    if command and (isinstance(error, BadResponseError) or (isinstance(error, ConnectionFailed) and error.sent)):
        return CommandOutcomeUnknown(f"{message}; the command may have reached the car, so it is not sent again")
    return error
