"""CarData entries (REST telematicData and stream messages) -> the contract's published fields.

Both sources carry the same ``{key: {"value", "unit", "timestamp"}}`` entries, REST with every value
a string, the stream JSON-typed and without ``unit`` at times (bmw-cardata-facts 2.5, 3.7). A stream
message carries only a few keys, and latitude and longitude arrive apart, so a car's entries are
merged (``CarState``) and the whole status is derived from the merge; ``status_from_entries`` is the
pure part, shared with ``replay``. The tables are in ``fields``.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from mqttbridge.errors import BadResponseError
from mqttbridge.fields import CHARGING_STATUS as CONTRACT_CHARGING_WORDS
from mqttbridge.model import DriveTrain, Location, VehicleInfo, VehicleStatus
from mqttbridge.normalize import iso, number, parse_timestamp, snake_case, snake_keys

from . import fields as f

log = logging.getLogger(__name__)

Entry = dict[str, Any]
"""One key's ``{"value", "unit", "timestamp"}`` (timestamp as the vendor wrote it, or None)."""

_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
_ENUM = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
#: catalogue date forms: ``17.01.2027 00:00:00 UTC`` and ``01/17/2027 00:00 UTC``
_DMY = re.compile(r"^(\d{2})\.(\d{2})\.(\d{4}) (\d{2}):(\d{2})(?::(\d{2}))? UTC$")
_MDY = re.compile(r"^(\d{2})/(\d{2})/(\d{4}) (\d{2}):(\d{2})(?::(\d{2}))? UTC$")
MILE_KM = 1.609344
GALLON_L = 3.785411784
#: basicData keys never copied into ``VehicleInfo.details`` (identities, not car facts)
_PRIVATE = ("vin", "gcid", "token", "secret", "password", "email", "customer")


# --- reading answers --------------------------------------------------------------------------------


def _entry(key: str, raw: Any, where: str) -> Entry:
    if not isinstance(raw, dict):
        raise BadResponseError(f"{where}: the entry of {key} is {type(raw).__name__}, not an object")
    unit, stamp = raw.get("unit"), raw.get("timestamp")
    return {
        "value": raw.get("value"),
        "unit": unit if isinstance(unit, str) else None,
        "timestamp": stamp if isinstance(stamp, str) else None,
    }


def entries_from_telematic(body: Any) -> dict[str, Entry]:
    """A telematicData answer, ``{"telematicData": {key: {"timestamp", "unit", "value"}}}``."""
    data = body.get("telematicData") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        if isinstance(body, dict) and "exveErrorId" in body:
            raise BadResponseError(f"telematicData: an error answer ({body.get('exveErrorId')}), not data")
        what = f"an object with {', '.join(sorted(map(str, body))[:5])}" if isinstance(body, dict) else "not an object"
        raise BadResponseError(f'telematicData: expected {{"telematicData": {{...}}}}, got {what}')
    return {str(key): _entry(str(key), raw, "telematicData") for key, raw in data.items()}


def entries_from_stream(message: Any) -> tuple[str, dict[str, Entry]]:
    """A stream message (``vin``, ``entityId``, ``topic``, ``timestamp``, ``data``) -> (VIN, entries)."""
    if isinstance(message, bytes | str):
        try:
            message = json.loads(message)
        except ValueError:
            raise BadResponseError("stream message: not JSON") from None
    if not isinstance(message, dict):
        raise BadResponseError(f"stream message: expected a JSON object, got {type(message).__name__}")
    vin = message.get("vin") or message.get("topic")
    if not isinstance(vin, str) or not vin.strip():
        raise BadResponseError("stream message: no vin")
    data = message.get("data")
    if not isinstance(data, dict):
        raise BadResponseError(f"stream message for {vin.strip()}: no data object")
    return vin.strip(), {str(key): _entry(str(key), raw, "stream message") for key, raw in data.items()}


# --- one value --------------------------------------------------------------------------------------


def field_name(key: str) -> str:
    """``vehicle.cabin.door.row1.driver.isOpen`` -> ``cabin_door_row1_driver_is_open``."""
    return snake_case(key.removeprefix("vehicle."))


def absent(value: Any) -> bool:
    """null, ``-NA-`` and the string ``null``: the car has no value (never published, never merged)."""
    return value is None or (isinstance(value, str) and value.strip() in f.NO_VALUE)


def _clean(value: Any) -> Any:
    """Parsed JSON of a CBS/CCM list: snake_case keys, the ``"null"`` placeholders as null."""
    if isinstance(value, dict):
        return {snake_case(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and value.strip() in ("null", "NULL"):
        return None
    return snake_keys(value)


def _date(text: str) -> str | None:
    for pattern, order in ((_DMY, (2, 1, 0)), (_MDY, (2, 0, 1))):
        match = pattern.match(text)
        if match:
            parts = match.groups()
            year, month, day = (int(parts[i]) for i in order)
            try:
                when = datetime(year, month, day, int(parts[3]), int(parts[4]), int(parts[5] or 0), tzinfo=UTC)
            except ValueError:
                return None
            return iso(when)
    return None


def typed(key: str, value: Any) -> Any:
    """A vendor value as published: number, bool, upper-case word, ISO time, parsed JSON or text; None:
    not published. The fault memory's XML stays text: its format is not documented (the catalogue
    promises JSON), so the bridge passes it on whole rather than guess a structure."""
    if absent(value):
        return None
    if isinstance(value, bool):
        return ("OPEN" if value else "CLOSED") if key in f.LID_KEYS else value
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, dict | list):
        return _clean(value)
    text = str(value).strip()
    if text.lower() in f.BOOLEANS:
        return f.BOOLEANS[text.lower()]
    if key in f.TEXT_KEYS:
        return text
    if text[0] in "[{":
        try:
            return _clean(json.loads(text))
        except ValueError:
            return text
    if _NUMBER.match(text):
        return number(text)
    if _ENUM.match(text):  # enums as upper-case words (CONTRACT section 3): doorsOnly -> DOORS_ONLY
        return snake_case(text).upper() if not text.isupper() else text.replace("-", "_")
    return _date(text) or text


def _convert(value: Any, unit: str | None, factor_units: frozenset[str], factor: float) -> int | float | None:
    amount = number(value)
    if amount is None:
        return None
    if unit is not None and unit.strip().lower() in factor_units:
        return number(round(amount * factor, 1))
    return amount


# --- the common fields ------------------------------------------------------------------------------


def _first(entries: dict[str, Entry], keys: tuple[str, ...]) -> Entry | None:
    return next((entries[k] for k in keys if k in entries and not absent(entries[k].get("value"))), None)


def _word(value: Any) -> str:
    return str(value).strip().upper().removeprefix("ASN_").replace("-", "_")


def _door_lock(entries: dict[str, Entry]) -> str | None:
    found = [entries[k]["value"] for k in f.COMMON_SOURCES["door_lock_state"] if k in entries]
    words = [f.DOOR_LOCK_WORDS.get(_word(v), "UNKNOWN") for v in found if not absent(v)]
    return next((w for w in words if w != "UNKNOWN"), "UNKNOWN" if words else None)


def finished(entries: dict[str, Entry], level: Any) -> str:
    """CHARGINGENDED: full or not, as ``hvStatus`` says, else the battery level against the target."""
    hv = entries.get(f.CHARGING_HV_STATUS, {}).get("value")
    if isinstance(hv, str) and hv.strip().upper() in ("FINISHED_FULLY_CHARGED", "FINISHED_NOT_FULL"):
        return hv.strip().upper()
    target = number(entries.get(f.SOC_TARGET, {}).get("value"))
    if isinstance(level, int | float) and target is not None and level >= target:
        return "FINISHED_FULLY_CHARGED"
    return "FINISHED_NOT_FULL"


def _charging(entries: dict[str, Entry], level: Any) -> str | None:
    status = entries.get(f.CHARGING_STATUS, {}).get("value")
    if not absent(status):
        word = f.CHARGING_WORDS.get(_word(status), "INVALID")
        return finished(entries, level) if word == f.FINISHED else word
    hv = entries.get(f.CHARGING_HV_STATUS, {}).get("value")
    if absent(hv):
        return None
    return _word(hv) if _word(hv) in CONTRACT_CHARGING_WORDS else "INVALID"


def _plugged(entries: dict[str, Entry]) -> bool | None:
    port = entries.get(f.CHARGING_PORT, {}).get("value")
    if not absent(port) and _word(port) in f.PLUG_WORDS:
        return f.PLUG_WORDS[_word(port)]
    plug = typed(f.PLUGGED, entries.get(f.PLUGGED, {}).get("value"))
    return plug if isinstance(plug, bool) else None


def fuel_tank(entries: dict[str, Entry]) -> bool:
    """Whether the car has a fuel tank, told from its keys when basicData did not say: fuel above 0,
    or fuel keys (even 0) on a car without high-voltage battery keys."""
    fuel = [number(e.get("value")) for k in (f.FUEL_REMAINING, f.FUEL_PERCENT) if (e := entries.get(k))]
    if any(amount is not None and amount > 0 for amount in fuel):
        return True
    battery = _first(entries, (f.SOC_HEADER, f.SOC_DISPLAYED, f.RANGE_KOMBI, f.RANGE_ELECTRIC))
    reported = [k for k in f.FUEL_ONLY_KEYS if _first(entries, (k,))]
    return bool(reported) and battery is None


def _common(entries: dict[str, Entry], tank: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def measured(name: str, units: frozenset[str] = frozenset(), factor: float = 1.0) -> None:
        entry = _first(entries, f.COMMON_SOURCES[name])
        if entry is not None:
            value = _convert(entry["value"], entry.get("unit"), units, factor)
            if value is not None:
                out[name] = value

    measured("battery_level")
    measured("range_electric", f.MILES, MILE_KM)
    if tank:
        measured("range_fuel", f.MILES, MILE_KM)
        measured("fuel_level", f.GALLONS, GALLON_L)
    measured("odometer", f.MILES, MILE_KM)
    measured("battery_12v")
    words = {
        "door_lock_state": _door_lock(entries),
        "charging_status": _charging(entries, out.get("battery_level")),
        "plugged_in": _plugged(entries),
    }
    out.update({name: value for name, value in words.items() if value is not None})
    return out


def _location(entries: dict[str, Entry]) -> Location | None:
    lat, lon, heading = (number(entries.get(k, {}).get("value")) for k in f.LOCATION_KEYS)
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return Location(latitude=lat, longitude=lon, heading=heading)


def newest_time(entries: dict[str, Entry]) -> datetime | None:
    """The newest timestamp of the entries that hold a value."""
    times = [parse_timestamp(e.get("timestamp")) for e in entries.values() if not absent(e.get("value"))]
    return max((t for t in times if t is not None), default=None)


def status_from_entries(
    vin: str, entries: dict[str, Entry], fetched_at: datetime | None = None, *, has_fuel_tank: bool | None = None
) -> VehicleStatus:
    """Entries -> the published status: the common fields from their sources (which are then not
    published again), every other key under ``field_name``; ``has_fuel_tank`` None: told from the keys."""
    tank = fuel_tank(entries) if has_fuel_tank is None else has_fuel_tank
    fields: dict[str, Any] = {}
    for key, entry in entries.items():
        if key in f.CONSUMED_KEYS or (not tank and key in f.FUEL_ONLY_KEYS):
            continue
        value = typed(key, entry.get("value"))
        if value is not None:
            fields[field_name(key)] = value
    fields.update(_common(entries, tank))
    newest = newest_time(entries)
    if newest is not None:
        fields["updated_at"] = iso(newest)
    return VehicleStatus(vin=vin, fields=fields, location=_location(entries), fetched_at=fetched_at)


class CarState:
    """One car's entries merged from REST answers and stream messages, newest per key.

    Not thread-safe: the caller holds its lock. An entry older than the one held for its key is
    ignored (BMW re-sends, and a REST read may be older than the stream); an absent value (null,
    ``-NA-``) removes nothing.
    """

    def __init__(self, *, has_fuel_tank: bool | None = None) -> None:
        #: from basicData's drive train once known (``has_fuel_tank(info.drive_train)``); None: guessed
        self.has_fuel_tank = has_fuel_tank
        self._entries: dict[str, Entry] = {}
        self._times: dict[str, datetime | None] = {}

    def merge(self, entries: dict[str, Entry]) -> bool:
        """Take the newer entries; True when a published value (or ``updated_at``) may have changed."""
        changed = False
        for key, entry in entries.items():
            if absent(entry.get("value")):
                continue
            when = parse_timestamp(entry.get("timestamp"))
            if key in self._entries:
                held = self._times[key]
                if held is not None and when is not None and when < held:
                    continue
                if self._entries[key] == entry:
                    continue
            self._entries[key] = dict(entry)
            self._times[key] = when
            changed = True
        return changed

    def status(self, vin: str, fetched_at: datetime | None) -> VehicleStatus:
        return status_from_entries(vin, self._entries, fetched_at, has_fuel_tank=self.has_fuel_tank)

    def has_data(self) -> bool:
        return bool(self._entries)

    def newest(self) -> datetime | None:
        return max((t for t in self._times.values() if t is not None), default=None)


# --- the vehicle ------------------------------------------------------------------------------------

#: basicData ``propulsionType`` (EL electric, BE petrol: bmw-cardata-facts 2.6) when ``driveTrain`` is unknown
PROPULSION: dict[str, DriveTrain] = {"EL": DriveTrain.BEV, "BE": DriveTrain.CONV}


def has_fuel_tank(drive_train: DriveTrain) -> bool | None:
    """For ``CarState``: a BEV has none, the others have one; UNKNOWN: told from the keys."""
    if drive_train is DriveTrain.UNKNOWN:
        return None
    return drive_train is not DriveTrain.BEV


def _drive_train(basic: dict[str, Any]) -> DriveTrain:
    raw = basic.get("driveTrain")
    drive = DriveTrain(str(raw).strip().upper()) if isinstance(raw, str) and raw.strip() else DriveTrain.UNKNOWN
    if drive is DriveTrain.UNKNOWN:
        hint = basic.get("propulsionType")
        drive = PROPULSION.get(str(hint).strip().upper(), DriveTrain.UNKNOWN) if hint else DriveTrain.UNKNOWN
    return drive


def vehicle_info(vin: str, basic: dict[str, Any] | None, mapping: dict[str, Any] | None) -> VehicleInfo:
    """A car from its basicData (None: not read yet or failed) and its mapping entry; read-only, so
    its one command is ``refresh``."""
    basic = basic if isinstance(basic, dict) else {}
    details = {
        snake_case(str(k)): snake_keys(v)
        for k, v in basic.items()
        if not any(word in str(k).lower() for word in _PRIVATE)
    }
    if isinstance(mapping, dict):
        for key in ("mappingType", "mappedSince"):
            if isinstance(mapping.get(key), str):
                details[snake_case(key)] = mapping[key]
    model, brand = basic.get("modelName"), basic.get("brand")
    brand_text = brand.strip() if isinstance(brand, str) and brand.strip() else "BMW"
    return VehicleInfo(
        vin=vin,
        model=model.strip() if isinstance(model, str) and model.strip() else brand_text,
        brand=brand_text,
        drive_train=_drive_train(basic),
        commands={"refresh": frozenset({"PRESS"})},
        details=details,
    )
