"""Reading the legacy API's JSON into the domain model, surviving what real captures contain.

Absent keys are normal, numbers come as ints or floats, positions may lack coordinates, times carry
``+0100`` or no zone, and enum values appear that nobody documented: each becomes a published value
or a ``BadResponseError``, never a traceback. The mapping to the contract's names is the table
``COMMON`` below, not code per field.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mqttbridge.errors import BadResponseError
from mqttbridge.fields import CHARGING_STATUS, DOOR_LOCK_STATE
from mqttbridge.model import (
    DriveTrain,
    ExecutionStatus,
    ExecutionUpdate,
    Location,
    VehicleInfo,
    VehicleStatus,
)
from mqttbridge.normalize import iso, number, parse_timestamp, snake_case, snake_keys

log = logging.getLogger(__name__)

# --- known enum values (A8); anything else is kept and logged once ---------------------------------

LID_STATES = ("CLOSED", "OPEN", "OPEN_TILT", "INTERMEDIATE", "INVALID")
LIDS = (
    "doorDriverFront",
    "doorDriverRear",
    "doorPassengerFront",
    "doorPassengerRear",
    "hood",
    "trunk",
    "windowDriverFront",
    "windowDriverRear",
    "windowPassengerFront",
    "windowPassengerRear",
    "rearWindow",
    "sunroof",
    "convertibleRoofState",
)
KNOWN_VALUES: dict[str, tuple[str, ...]] = {
    "chargingStatus": CHARGING_STATUS,
    "doorLockState": DOOR_LOCK_STATE,
    "connectionStatus": ("CONNECTED", "DISCONNECTED"),
    "updateReason": (
        "CHARGING_DONE",
        "CHARGING_INTERRUPED",
        "CHARGING_PAUSED",
        "CHARGING_STARTED",
        "CHARGIN_STARTED",
        "CYCLIC_RECHARGING",
        "DISCONNECTED",
        "DOOR_STATE_CHANGED",
        "NO_CYCLIC_RECHARGING",
        "NO_LSC_TRIGGER",
        "ON_DEMAND",
        "PREDICTION_UPDATE",
        "TEMPORARY_POWER_SUPPLY_FAILURE",
        "UNKNOWN",
        "VEHICLE_MOVING",
        "VEHICLE_SECURED",
        "VEHICLE_SHUTDOWN",
        "VEHICLE_SHUTDOWN_SECURED",
        "VEHICLE_UNSECURED",
    ),
    "parkingLight": ("OFF", "LEFT", "RIGHT"),
    "positionLight": ("ON", "OFF"),
    "lastChargingEndReason": ("CHARGING_GOAL_REACHED", "END_REQUESTED_BY_DRIVER", "UNKNOWN"),
    "lastChargingEndResult": ("SUCCESS", "FAILED", "UNKNOWN"),
    **dict.fromkeys(LIDS, LID_STATES),
}
POSITION_WITH_COORDINATES = ("OK", "LAST_KNOWN")
POSITION_STATES = ("OK", "LAST_KNOWN", "DRIVER_DISABLED", "VEHICLE_ACTIVE", "TOO_FAR_AWAY")

_seen_unknown: set[tuple[str, str]] = set()
_seen_lock = threading.Lock()


def _note_unknown(key: str, value: str) -> None:
    """Log a value nobody documented once per process, not once per poll."""
    with _seen_lock:
        if (key, value) in _seen_unknown:
            return
        _seen_unknown.add((key, value))
    log.warning("unknown %s value %r from the vendor; published as it is", key, value)


def _enum(key: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    word = value.strip().upper()
    known = KNOWN_VALUES.get(key)
    if known is not None and word not in known:
        _note_unknown(key, word)
    return word


# --- the contract's common names -----------------------------------------------------------------


@dataclass(frozen=True)
class Common:
    """One source key of ``vehicleStatus`` published under a common name, through ``convert``."""

    name: str
    convert: Callable[[str, Any], Any]


def _number(_key: str, value: Any) -> int | float | None:
    return number(value)


def _timestamp(key: str, value: Any) -> str | None:
    parsed = parse_timestamp(value)
    if parsed is None and value is not None:
        _note_unknown(key, str(value)[:40])
    return iso(parsed) if parsed else None


def _plugged(key: str, value: Any) -> bool | None:
    word = _enum(key, value)
    return {"CONNECTED": True, "DISCONNECTED": False}.get(word or "")


COMMON: dict[str, Common] = {
    "mileage": Common("odometer", _number),
    "chargingLevelHv": Common("battery_level", _number),
    "remainingRangeElectric": Common("range_electric", _number),
    "remainingRangeFuel": Common("range_fuel", _number),
    "remainingFuel": Common("fuel_level", _number),
    "chargingStatus": Common("charging_status", _enum),
    "connectionStatus": Common("plugged_in", _plugged),
    "doorLockState": Common("door_lock_state", _enum),
    "updateTime": Common("updated_at", _timestamp),
}


def _value(key: str, value: Any) -> Any:
    """A field outside the common table: numbers normalised, times in ISO form, lists snake_cased."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, str):
        if key in KNOWN_VALUES:
            return _enum(key, value)
        parsed = parse_timestamp(value)
        return iso(parsed) if parsed else value
    return snake_keys(_times_in(value))


def _times_in(value: Any) -> Any:
    """Timestamps inside nested data (trip dates, destinations) in the contract's ISO form."""
    if isinstance(value, dict):
        return {k: _times_in(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_times_in(v) for v in value]
    if isinstance(value, str):
        parsed = parse_timestamp(value)
        return iso(parsed) if parsed else value
    return value


def _flatten(raw: dict[str, Any], common_names: dict[str, Common]) -> dict[str, Any]:
    """One level of nesting becomes ``parent_child`` (``position_status``); lists stay whole."""
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        common = common_names.get(key)
        if common is not None:
            converted = common.convert(key, value)
            if converted is not None:
                fields[common.name] = converted
            elif key == "connectionStatus" and isinstance(value, str):
                fields["connection_status"] = value  # an unknown plug state stays visible
            continue
        if isinstance(value, dict):
            for sub, item in value.items():
                name = f"{snake_case(key)}_{snake_case(str(sub))}"
                converted = _value(f"{key}.{sub}", item) if not isinstance(item, dict) else snake_keys(item)
                if converted is not None:
                    fields[name] = converted
            continue
        converted = _value(key, value)
        if converted is not None:
            fields[snake_case(key)] = converted
    return fields


def _location(raw: dict[str, Any]) -> Location | None:
    position = raw.get("position")
    if not isinstance(position, dict):
        return None
    status = position.get("status")
    if isinstance(status, str) and status.upper() not in POSITION_STATES:
        _note_unknown("position.status", status.upper())
    if status is not None and str(status).upper() not in POSITION_WITH_COORDINATES:
        return None
    lat, lon = number(position.get("lat")), number(position.get("lon"))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return Location(latitude=lat, longitude=lon, heading=number(position.get("heading")))


def parse_status(body: Any, vin: str, fetched_at: datetime) -> VehicleStatus:
    """``GET .../status`` -> VehicleStatus under the contract's names."""
    raw = body.get("vehicleStatus") if isinstance(body, dict) else None
    if not isinstance(raw, dict):
        raise BadResponseError(f"status of {vin}: the answer has no vehicleStatus object")
    fields = _flatten(raw, COMMON)
    return VehicleStatus(vin=vin, fields=fields, location=_location(raw), fetched_at=fetched_at)


# --- vehicle list ----------------------------------------------------------------------------------

#: (command, action) -> (serviceType, the vehicle-list flag that enables it)
SERVICES: dict[tuple[str, str], tuple[str, str]] = {
    ("lock", "LOCK"): ("DOOR_LOCK", "doorLock"),
    ("lock", "UNLOCK"): ("DOOR_UNLOCK", "doorUnlock"),
    ("climate", "ON"): ("CLIMATE_NOW", "climateNow"),
    ("charging", "ON"): ("CHARGE_NOW", "chargeNow"),
    ("flash_lights", "PRESS"): ("LIGHT_FLASH", "lightFlash"),
    ("horn", "PRESS"): ("HORN_BLOW", "hornBlow"),
    ("find_vehicle", "PRESS"): ("VEHICLE_FINDER", "vehicleFinder"),
    ("charging_profile", "SET"): ("CHARGING_CONTROL", "chargingControl"),
}


@dataclass(frozen=True)
class Dataset:
    """A data set beside the status: its path, its answer's root key, and the flag that offers it."""

    path: str
    root: str | None
    flag: str


DATASETS: dict[str, Dataset] = {
    "last_trip": Dataset("statistics/lastTrip", "lastTrip", "statisticsAvailable"),
    "all_trips": Dataset("statistics/allTrips", "allTrips", "statisticsAvailable"),
    "charging_profile": Dataset("chargingprofile", None, "chargingControl"),
    "destinations": Dataset("destinations", "destinations", "lastDestinations"),
    "range_map": Dataset("rangemap", "rangemap", "rangeMap"),
}


def _flag_on(entry: dict[str, Any], flag: str) -> bool:
    """A1/A5: ``true`` or ``ACTIVATED`` or a mode name offers a feature; absent means not offered."""
    value = entry.get(flag)
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        return False
    return value.upper() not in ("NOT_SUPPORTED", "NOT_AVAILABLE", "DEACTIVATED", "FALSE", "")


def _service_on(entry: dict[str, Any], flag: str) -> bool:
    if flag == "chargingControl":
        return _flag_on(entry, flag)
    value = entry.get(flag)
    return isinstance(value, str) and value.upper() == "ACTIVATED"


def parse_vehicle(entry: Any) -> VehicleInfo | None:
    if not isinstance(entry, dict):
        return None
    vin = entry.get("vin")
    if not isinstance(vin, str) or not vin.strip():
        log.warning("a vehicle-list entry without a VIN was skipped")
        return None
    commands: dict[str, set[str]] = {}
    for (command, action), (_service, flag) in SERVICES.items():
        if _service_on(entry, flag):
            commands.setdefault(command, set()).add(action)
    commands["refresh"] = {"PRESS"}
    raw_drive = entry.get("driveTrain")
    drive = DriveTrain(str(raw_drive).upper()) if raw_drive else DriveTrain.UNKNOWN
    if raw_drive and drive is DriveTrain.UNKNOWN:
        _note_unknown("driveTrain", str(raw_drive))
    brand = entry.get("brand")
    return VehicleInfo(
        vin=vin.strip(),
        model=str(entry.get("model") or entry.get("bodytype") or "BMW"),
        brand="BMW" if not isinstance(brand, str) or brand.upper().startswith("BMW") else brand,
        drive_train=drive,
        datasets=frozenset(name for name, spec in DATASETS.items() if _flag_on(entry, spec.flag)),
        commands={name: frozenset(actions) for name, actions in commands.items()},
        details=snake_keys(entry),
    )


def parse_vehicles(body: Any) -> list[VehicleInfo]:
    """``GET /user/vehicles``: the ``vehicles`` wrapper of every capture, or [E]'s bare list."""
    entries = body.get("vehicles") if isinstance(body, dict) else body
    if not isinstance(entries, list):
        raise BadResponseError("vehicle list: the answer has no vehicles list")
    return [info for info in map(parse_vehicle, entries) if info is not None]


# --- remote services -------------------------------------------------------------------------------


def parse_execution(body: Any, service: str) -> ExecutionUpdate:
    """An ``executionStatus``; without ``status`` (seen after server errors) it is UNKNOWN, not final."""
    raw = body.get("executionStatus") if isinstance(body, dict) else None
    if not isinstance(raw, dict):
        raise BadResponseError(f"{service}: the answer has no executionStatus object")
    word = raw.get("status")
    status = ExecutionStatus(str(word).upper()) if isinstance(word, str) else ExecutionStatus.UNKNOWN
    vendor_only = status in (ExecutionStatus.REJECTED, ExecutionStatus.FAILED)
    if vendor_only:  # our own words; the vendor never says them, so treat as unknown
        status = ExecutionStatus.UNKNOWN
    if isinstance(word, str) and (status is ExecutionStatus.UNKNOWN and word.upper() != "UNKNOWN"):
        _note_unknown("executionStatus.status", word.upper())
    event = raw.get("eventId")
    extended = raw.get("extendedStatus")
    return ExecutionUpdate(
        status=status,
        service=str(raw.get("serviceType") or service),
        event_id=event if isinstance(event, str) else None,
        vendor_status=word.upper() if isinstance(word, str) else None,
        detail=snake_keys(extended) if isinstance(extended, dict) else {},
    )


# --- data sets -----------------------------------------------------------------------------------


def parse_dataset(name: str, body: Any, vin: str) -> Any:
    """Trips flattened to snake_case fields (published field by field); the charging profile is
    kept in the vendor's own shape, so it can be edited and sent back to ``charging_profile/set``."""
    spec = DATASETS[name]
    if not isinstance(body, dict):
        raise BadResponseError(f"{name} of {vin}: the answer is not a JSON object")
    if spec.root is None:
        profile = {k: v for k, v in body.items() if k in ("weeklyPlanner", "twoTimesTimer")}
        if not profile:
            raise BadResponseError(f"{name} of {vin}: no weeklyPlanner or twoTimesTimer in the answer")
        return profile
    data = body.get(spec.root)
    if data is None:
        raise BadResponseError(f"{name} of {vin}: the answer has no {spec.root!r}")
    if name in ("last_trip", "all_trips"):
        if not isinstance(data, dict):
            raise BadResponseError(f"{name} of {vin}: {spec.root!r} is not an object")
        return _flatten(data, {})
    return snake_keys(_times_in(data))
