"""Replaying a captured Hyundai/Kia/Genesis status answer through hyundai_kia_connect_api's own parser.

The library has one API class per region (and brand, in the USA), each reading its cached status with
its own fill method and from its own place in the answer. Replay builds the class ``VehicleManager``
would build, puts the answer's status where that class's ``update_vehicle_with_cached_state`` finds
it, calls the same fill method on a fresh library ``Vehicle``, then maps the vehicle with the
backend's own ``status_fields`` / ``location``: what ``mqttbridge status`` prints, minus what the
library reads from other answers (the park location, driving info, charge targets).

Which fill methods a class uses differs between library versions (Brazil's reads only the pre-CCS2
format in 4.23 and only CCS2 in 4.41), so it is read from the installed library's own
``update_vehicle_with_cached_state``, not assumed: a format the installed version does not parse is
refused with that reason instead of giving half-empty output.

The format is told by the answer's shape, as the library's two code paths tell it by the endpoint:
the CCS2 endpoint answers the ``state.Vehicle`` tree (Drivetrain, Green, Cabin ...), the older one a
``vehicleStatus`` / ``status`` object.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.metadata
import inspect
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hyundai_kia_connect_api import Vehicle, VehicleManager
from hyundai_kia_connect_api.const import ENGINE_TYPES

from mqttbridge.backends.hyundai_kia.mapping import BRANDS, REGION_BRANDS, REGIONS, location, status_fields
from mqttbridge.model import VehicleStatus
from mqttbridge.normalize import number
from mqttbridge.replay import ReplayError, ReplayUsageError, describe

log = logging.getLogger(__name__)

#: the account words of ``mapping`` (what a configuration says), required both
REGION_WORDS: frozenset[str] | None = frozenset(REGIONS)
BRAND_WORDS: frozenset[str] | None = frozenset(BRANDS)
REQUIRED: tuple[str, ...] = ("region", "brand")

CCS2 = "CCS2"
LEGACY = "pre-CCS2"
#: the fill method each format goes through (CA's pre-CCS2 one has its own name, see READERS)
CCS2_METHOD = "_update_vehicle_properties_ccs2"
#: what the library's Canadian ``get_vehicles`` sets when the list has no ``modelYear``
UNKNOWN_MODEL_YEAR = 1900
#: top-level keys of the CCS2 ``Vehicle`` tree; two of them make an unwrapped tree
CCS2_KEYS = frozenset({"Drivetrain", "Green", "Cabin", "Body", "Chassis", "Electronics"})
#: keys of a flat pre-CCS2 status object (India, Brazil, Australia's resMsg)
FLAT_STATUS_KEYS = frozenset({"time", "doorLock", "airTemp", "evStatus", "engine", "battery", "dte", "lastStatusDate"})


def _library_version() -> str:
    try:
        return importlib.metadata.version("hyundai_kia_connect_api")
    except importlib.metadata.PackageNotFoundError:
        return "(unknown version)"


LIBRARY = f"hyundai_kia_connect_api {_library_version()}"


def check_options(*, region: str | None, brand: str | None) -> None:
    """A brand the library does not serve in the region is a usage error, as in the account check."""
    allowed = REGION_BRANDS.get(region or "")
    if allowed is not None and brand not in allowed:
        raise ReplayUsageError(f"the library serves only {', '.join(sorted(allowed))} in region {region}, not {brand}")


# --- where each API class finds its status in an answer -------------------------------------------


def _child(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _vendor_error(body: dict[str, Any]) -> str | None:
    """The vendor's words when ``body`` is an error envelope of any region, else None."""
    ret, res = body.get("retCode"), body.get("resCode")
    if ret == "F" or (isinstance(res, str) and res not in ("0000", "")):
        message = body.get("resMsg") if isinstance(body.get("resMsg"), str) else ""
        return f"resCode {res}: {message}".strip(": ")
    header = body.get("responseHeader")
    if isinstance(header, dict) and header.get("responseCode") not in (None, 0, "0"):
        return f"responseCode {header.get('responseCode')}: {header.get('responseDesc') or ''}".strip(": ")
    status = body.get("status")
    if isinstance(status, dict) and "statusCode" in status and status.get("statusCode") not in (0, "0"):
        return f"statusCode {status.get('statusCode')}: {status.get('errorMessage') or ''}".strip(": ")
    if "errorCode" in body and "errorMessage" in body and "vehicleStatus" not in body:
        return f"errorCode {body.get('errorCode')}: {body.get('errorMessage')}"
    return None


def _res_msg(body: dict[str, Any]) -> Any:
    """The EU-style envelope's ``resMsg``; the body itself when it came unwrapped."""
    return body.get("resMsg", body)


def _is_flat_status(value: Any) -> bool:
    return isinstance(value, dict) and bool(FLAT_STATUS_KEYS & set(value))


def ccs2_tree(body: dict[str, Any]) -> dict[str, Any] | None:
    """The CCS2 ``Vehicle`` tree: in the envelope (``resMsg.state.Vehicle``), below ``state``, or bare."""
    for candidate in (_child(body, "resMsg.state.Vehicle"), _child(body, "state.Vehicle")):
        if isinstance(candidate, dict):
            return candidate
    if len(CCS2_KEYS & set(body)) >= 2:
        return body
    return None


def _eu_legacy(body: dict[str, Any]) -> dict[str, Any] | None:
    """EU: ``resMsg.vehicleStatusInfo`` (``vehicleStatus``, ``odometer``, ``vehicleLocation``)."""
    message = _res_msg(body)
    info = message.get("vehicleStatusInfo", message) if isinstance(message, dict) else None
    return info if isinstance(info, dict) and isinstance(info.get("vehicleStatus"), dict) else None


def _status_root(body: dict[str, Any]) -> dict[str, Any] | None:
    """AU: its ``resMsg`` is the status object, which the library files under ``status`` (with the
    park location, read separately, under ``vehicleLocation``)."""
    message = _res_msg(body)
    if not isinstance(message, dict):
        return None
    if isinstance(message.get("status"), dict):
        return message
    return {"status": message, "vehicleLocation": None} if _is_flat_status(message) else None


def _ca_legacy(body: dict[str, Any]) -> dict[str, Any] | None:
    """CA: ``result.status`` of ``lstvhclsts``, which the library files under ``status``."""
    found = body.get("result")
    result: dict[str, Any] = found if isinstance(found, dict) else body
    status = result.get("status")
    if isinstance(status, dict):
        return {"status": status}
    return {"status": result} if _is_flat_status(result) else None


def _cn_legacy(body: dict[str, Any]) -> dict[str, Any] | None:
    """CN: the ``resMsg`` itself, which holds ``status`` (and ``vehicleLocation``)."""
    message = _res_msg(body)
    return message if isinstance(message, dict) and isinstance(message.get("status"), dict) else None


def _flat_legacy(body: dict[str, Any]) -> dict[str, Any] | None:
    """IN and Brazil's pre-CCS2 path: the ``resMsg`` status object as it is."""
    message = _res_msg(body)
    return message if _is_flat_status(message) else None


def _us_kia(body: dict[str, Any]) -> dict[str, Any] | None:
    """US Kia: ``payload.vehicleInfoList[0]`` of ``cmm/gvi``."""
    entry = _child(body, "payload.vehicleInfoList.0")
    if entry is None and ("lastVehicleInfo" in body or "vehicleConfig" in body):
        entry = body
    return entry if isinstance(entry, dict) and isinstance(entry.get("lastVehicleInfo"), dict) else None


def _us_hyundai(body: dict[str, Any]) -> dict[str, Any] | None:
    """US Hyundai: ``rcs/rvs/vehicleStatus`` answers ``{"vehicleStatus": ...}``; the library adds the
    enrollment's ``vehicleDetails`` (the odometer) and the EV trip details from other answers, and
    takes the separators out of ``dateTime`` (``2024-09-01T12:00:00Z`` -> ``20240901120000``)."""
    status = body.get("vehicleStatus")
    if not isinstance(status, dict):
        return None
    status = copy.deepcopy(status)
    when = status.get("dateTime")
    if isinstance(when, str):
        status["dateTime"] = when.replace("-", "").replace("T", "").replace(":", "").replace("Z", "")
    details = body.get("vehicleDetails")
    trips = body.get("evTripDetails")
    return {
        "vehicleDetails": details if isinstance(details, dict) else {},
        "vehicleStatus": status,
        "evTripDetails": trips if isinstance(trips, dict) else {},
    }


@dataclass(frozen=True)
class Reader:
    """One API class: where its pre-CCS2 status is (``legacy``), its fill method, and what to call it."""

    legacy: Callable[[dict[str, Any]], dict[str, Any] | None]
    legacy_method: str
    expected: str


READERS: dict[str, Reader] = {
    "KiaUvoApiEU": Reader(
        _eu_legacy,
        "_update_vehicle_properties",
        'the status/latest answer, {"resMsg": {"vehicleStatusInfo": {"vehicleStatus": ...}}}, '
        'or the ccs2/carstatus/latest answer, {"resMsg": {"state": {"Vehicle": ...}}}',
    ),
    "KiaUvoApiAU": Reader(
        _status_root,
        "_update_vehicle_properties",
        'the status/latest answer, {"resMsg": {...}}, '
        'or the ccs2/carstatus/latest answer, {"resMsg": {"state": {"Vehicle": ...}}}',
    ),
    "KiaUvoApiCA": Reader(
        _ca_legacy, "_update_vehicle_properties_base", 'the lstvhclsts answer, {"result": {"status": ...}}'
    ),
    "KiaUvoApiCN": Reader(
        _cn_legacy, "_update_vehicle_properties", 'the status/latest answer, {"resMsg": {"status": ...}}'
    ),
    "KiaUvoApiIN": Reader(_flat_legacy, "_update_vehicle_properties", 'the status/latest answer, {"resMsg": {...}}'),
    "KiaUvoApiUSA": Reader(
        _us_kia,
        "_update_vehicle_properties",
        'the cmm/gvi answer, {"payload": {"vehicleInfoList": [{"lastVehicleInfo": ...}]}}',
    ),
    "HyundaiBlueLinkApiUSA": Reader(
        _us_hyundai, "_update_vehicle_properties", 'the rcs/rvs/vehicleStatus answer, {"vehicleStatus": ...}'
    ),
    "HyundaiBlueLinkApiBR": Reader(
        _flat_legacy,
        "_update_vehicle_properties",
        'the ccs2/carstatus/latest answer, {"resMsg": {"state": {"Vehicle": ...}}}',
    ),
}


# --- the car's drive train -------------------------------------------------------------------------


def _positive(value: Any) -> bool:
    amount = number(value)
    return amount is not None and amount > 0


def _find(data: Any, key: str, depth: int = 5) -> tuple[Any, dict[str, Any] | None]:
    """The first ``key`` below ``data`` (breadth first) and the object holding it."""
    level: list[Any] = [data]
    for _ in range(depth):
        following: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                if key in item:
                    return item[key], item
                following.extend(v for v in item.values() if isinstance(v, dict | list))
            elif isinstance(item, list):
                following.extend(v for v in item if isinstance(v, dict | list))
        level = following
    return None, None


def engine_type(fmt: str, state: dict[str, Any]) -> ENGINE_TYPES:
    """The drive train the library would know from the vehicle list, told from the status instead.

    Pre-CCS2, the rule is the library's own for US Kia (an ``evStatus`` means a high-voltage battery,
    a ``gasModeRange`` a PHEV), plus fuel in the tank beside a battery meaning a PHEV. CCS2: a
    ``BatteryManagement`` block means a high-voltage battery; an ICE range or fuel beside it a
    hybrid, a plug-in one when it reports its electric range or a charging connector.
    """
    if fmt == CCS2:
        battery = isinstance(_child(state, "Green.BatteryManagement"), dict)
        dte = _child(state, "Drivetrain.FuelSystem.DTE")
        dte = dte if isinstance(dte, dict) else {}
        fuel = "ICE" in dte or _positive(_child(state, "Drivetrain.FuelSystem.FuelLevel"))
        if battery and fuel:
            plug = "EV" in dte or _child(state, "Green.ChargingInformation.ConnectorFastening") is not None
            return ENGINE_TYPES.PHEV if plug else ENGINE_TYPES.HEV
        return ENGINE_TYPES.EV if battery else ENGINE_TYPES.ICE
    ev_status, holder = _find(state, "evStatus")
    if not isinstance(ev_status, dict):
        return ENGINE_TYPES.ICE
    gas = _child(ev_status, "drvDistance.0.rangeByFuel.gasModeRange.value")
    if gas is not None or _positive((holder or {}).get("fuelLevel")):
        return ENGINE_TYPES.PHEV
    return ENGINE_TYPES.EV


# --- replay ----------------------------------------------------------------------------------------


def build_api(region: str, brand: str) -> Any:
    """The API object ``VehicleManager`` builds for the account; constructing it makes no request."""
    try:
        with warnings.catch_warnings():  # the US Kia TLS adapter's urllib3 deprecation, not ours
            warnings.simplefilter("ignore")
            return VehicleManager.get_implementation_by_region_brand(REGIONS[region], BRANDS[brand][0], "en")
    except Exception as exc:
        raise ReplayUsageError(f"{LIBRARY} has no API for {brand} in {region} ({type(exc).__name__}: {exc})") from None


def _cached_path_methods(api: Any) -> frozenset[str]:
    """The fill methods the installed class's ``update_vehicle_with_cached_state`` really calls."""
    method = inspect.unwrap(type(api).update_vehicle_with_cached_state)
    code = getattr(method, "__code__", None)
    names = code.co_names if code is not None else ()
    return frozenset(name for name in names if name.startswith("_update_vehicle_properties"))


def _new_vehicle(fmt: str, engine: ENGINE_TYPES) -> Any:
    """A library Vehicle as ``get_vehicles`` makes it, with only what the status read needs.

    The model year comes from the vehicle list, which a status answer lacks: it gets the library's
    own fallback for a list without one (Canada picks its temperature table by it).
    """
    values = {
        "id": "replay",
        "name": "replay",
        "model": "replay",
        "VIN": "REPLAY",
        "engine_type": engine,
        "ccu_ccs2_protocol_support": 1 if fmt == CCS2 else 0,
        "year": UNKNOWN_MODEL_YEAR,
    }
    known = {field.name for field in dataclasses.fields(Vehicle)}
    return Vehicle(**{name: value for name, value in values.items() if name in known})


def parse(body: Any, *, source: str, region: str, brand: str) -> Any:
    """The library Vehicle filled from ``body`` by the installed library's own fill method."""
    if not isinstance(body, dict):
        raise ReplayError(f"{source}: {describe(body)}, not a Hyundai/Kia status answer (a JSON object)")
    error = _vendor_error(body)
    if error:
        raise ReplayError(f"{source}: an error answer of the vendor ({error[:160]}), not a status")
    api = build_api(region, brand)
    name = type(api).__name__
    reader = READERS.get(name)
    if reader is None:
        raise ReplayUsageError(f"replay does not know {LIBRARY}'s {name} ({region}, {brand}) yet")
    methods = _cached_path_methods(api)
    tree = ccs2_tree(body)
    state: dict[str, Any] | None
    if tree is not None:
        fmt, state, method = CCS2, tree, CCS2_METHOD
    else:
        fmt, state, method = LEGACY, reader.legacy(body), reader.legacy_method
        if state is None:
            raise ReplayError(
                f"{source}: {describe(body)}, not a {brand} {region} status answer "
                f"(expected {reader.expected}, or its inside)"
            )
    if method not in methods or not hasattr(api, method):
        uses = ", ".join(sorted(methods)) or "nothing"
        raise ReplayError(
            f"{source}: a {fmt} status, which {LIBRARY} does not read for {brand} in {region} "
            f"(its cached status read ({name}) fills the vehicle with {uses})"
        )
    car = _new_vehicle(fmt, engine_type(fmt, state))
    log.debug("%s: %s %s status through %s.%s", source, region, fmt, name, method)
    try:
        getattr(api, method)(car, copy.deepcopy(state))
    except Exception as exc:  # the library's parser has no error type of its own: any failure is the file's
        detail = str(exc)[:120]
        raise ReplayError(
            f"{source}: {LIBRARY} could not read this {fmt} status "
            f"({type(exc).__name__}{': ' + detail if detail else ''})"
        ) from None
    return car


def replay_answer(
    body: Any, *, source: str, region: str | None, brand: str | None, fetched_at: datetime
) -> VehicleStatus:
    """A status answer -> the VehicleStatus the backend's ``read_status`` returns for it."""
    if region is None or brand is None:
        raise ReplayUsageError("--provider hyundai_kia needs --region and --brand")
    car = parse(body, source=source, region=region, brand=brand)
    return VehicleStatus(vin="REPLAY", fields=status_fields(car), location=location(car), fetched_at=fetched_at)
