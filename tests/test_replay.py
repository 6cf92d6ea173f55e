"""``mqttbridge replay``: every shared capture through the providers' real parsing, field by field.

The expected values come from each capture's own raw values (and, for the Hyundai/Kia captures,
from the ``_fixture_meta.expected`` block its maintainers wrote), never from our code: the capture
says ``"mileage": 21529``, so ``odometer`` must be 21529. Where the installed hyundai_kia_connect_api
cannot parse a capture's format, the test says so and why.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import io
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mqttbridge import cli

from .conftest import FIXTURES

# --- running the command ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Replay must not open any connection: any attempt fails the test."""

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("replay tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def state(self) -> dict[str, Any]:
        assert self.code == 0, self.err
        return json.loads(self.out)


def replay(*argv: str | Path) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["replay", *map(str, argv)])
    return Run(code, out.getvalue(), err.getvalue())


def one_line_failure(run: Run, code: int, *words: str) -> None:
    assert run.code == code, (run.code, run.out, run.err)
    assert run.out == ""
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    for word in words:
        assert word in lines[0], (word, lines[0])


def raw(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


#: a field the capture shows the car does not have: it must not be published
ABSENT = object()


def check_field(state: dict[str, Any], name: str, expected: Any) -> None:
    if expected is ABSENT:
        assert name not in state, f"{name} published as {state.get(name)!r}, but the capture has none"
        return
    assert name in state, f"{name} missing; published: {sorted(state)}"
    value = state[name]
    if name == "updated_at":
        parsed = datetime.fromisoformat(value)
        assert parsed.utcoffset() is not None, value  # ISO 8601 with an offset (CONTRACT section 3)
        assert parsed == expected, (value, expected)
    elif name == "location":
        assert value == pytest.approx(expected), (value, expected)
    elif isinstance(expected, bool):
        assert value is expected, (name, value, expected)
    else:
        assert value == expected and not isinstance(value, bool), (name, value, expected)


# --- legacy BMW ------------------------------------------------------------------------------------

BMW_CAPTURES = sorted(FIXTURES.glob("bmw_legacy/*/status*.json")) if FIXTURES.is_dir() else []
#: vehicleStatus key -> common field (CONTRACT section 4's bmw_legacy column)
BMW_SOURCES = {
    "mileage": "odometer",
    "chargingLevelHv": "battery_level",
    "remainingRangeElectric": "range_electric",
    "remainingRangeFuel": "range_fuel",
    "remainingFuel": "fuel_level",
    "chargingStatus": "charging_status",
    "doorLockState": "door_lock_state",
}


def bmw_expected(body: dict[str, Any]) -> dict[str, Any]:
    """The common fields a ``/status`` capture holds, read straight from its ``vehicleStatus``."""
    status = body["vehicleStatus"]
    expected: dict[str, Any] = {name: status[key] for key, name in BMW_SOURCES.items() if key in status}
    if "connectionStatus" in status:
        expected["plugged_in"] = status["connectionStatus"] == "CONNECTED"
    if "updateTime" in status:
        expected["updated_at"] = datetime.strptime(status["updateTime"], "%Y-%m-%dT%H:%M:%S%z")
    position = status.get("position")
    if isinstance(position, dict):
        if position.get("status", "OK") in ("OK", "LAST_KNOWN") and "lat" in position and "lon" in position:
            expected["location"] = {"latitude": position["lat"], "longitude": position["lon"]}
            if "heading" in position:
                expected["location"]["heading"] = position["heading"]
        else:  # DRIVER_DISABLED, VEHICLE_ACTIVE ...: no coordinates
            expected["location"] = ABSENT
    return expected


def _bmw_cases() -> list[Any]:
    cases = []
    for path in BMW_CAPTURES:
        for name in bmw_expected(raw(path)):
            cases.append(pytest.param(path, name, id=f"{path.parent.name}/{path.stem}-{name}"))
    return cases


_bmw_states: dict[Path, dict[str, Any]] = {}


def bmw_state(path: Path) -> dict[str, Any]:
    if path not in _bmw_states:
        _bmw_states[path] = replay("--provider", "bmw_legacy", path).state
    return _bmw_states[path]


def test_every_bmw_status_capture_is_covered(fixtures_dir: Path):
    names = {p.relative_to(fixtures_dir / "bmw_legacy").as_posix() for p in BMW_CAPTURES}
    assert {
        "F48/status.json",
        "G30_PHEV_OS7/status.json",
        "G31_NBTevo/status.json",
        "I01_NOREX/status.json",
        "I01_REX/status.json",
        "openhab_F31_318i/status.json",
        "openhab_G30_530e_PHEV/status.json",
    } <= names


@pytest.mark.parametrize(("path", "name"), _bmw_cases())
def test_bmw_capture_field(fixtures_dir: Path, path: Path, name: str):
    check_field(bmw_state(path), name, bmw_expected(raw(path))[name])


@pytest.mark.parametrize("path", BMW_CAPTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_bmw_capture_prints_what_status_prints(fixtures_dir: Path, path: Path):
    run = replay("--provider", "bmw_legacy", path)
    state = run.state
    assert run.out == json.dumps(state, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert datetime.fromisoformat(state["fetched_at"]).utcoffset() is not None
    # every other vendor key is published too, under its snake_case name
    assert state["vin"] == raw(path)["vehicleStatus"]["vin"]
    assert run.err == ""


def test_bmw_unwrapped_vehicle_status_is_read_the_same(fixtures_dir: Path, tmp_path: Path):
    source = fixtures_dir / "bmw_legacy" / "I01_REX" / "status.json"
    inner = tmp_path / "inner.json"
    inner.write_text(json.dumps(raw(source)["vehicleStatus"]), encoding="utf-8")
    whole, unwrapped = bmw_state(source), replay("--provider", "bmw_legacy", inner).state
    assert {k: v for k, v in unwrapped.items() if k != "fetched_at"} == {
        k: v for k, v in whole.items() if k != "fetched_at"
    }


@pytest.mark.parametrize(
    ("relative", "words"),
    [
        ("vehicles/vehicles_9_vehicles.json", ("vehicle list", "not a status answer")),
        ("G30_PHEV_OS7/last_trip.json", ("last trip", "not a status answer")),
        ("G30_PHEV_OS7/charging_profile.json", ("charging profile",)),
        ("_from_issue_reports/token_400_invalid_grant_authN_circuit_failed.json", ("error answer", "invalid_grant")),
        ("_from_issue_reports/serviceExecutionStatus_500_server_panic_normalized.json", ("error answer",)),
        ("remote_services/LIGHT_FLASH_executed.json", ("execution status",)),
    ],
)
def test_bmw_other_answers_are_named(fixtures_dir: Path, relative: str, words: tuple[str, ...]):
    path = fixtures_dir / "bmw_legacy" / relative
    one_line_failure(replay("--provider", "bmw_legacy", path), 1, str(path), *words)


# --- Hyundai / Kia ---------------------------------------------------------------------------------

HK_DIR = FIXTURES / "hyundai_kia" / "hkc_api"


def at(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def local(text: str, zone: str) -> datetime:
    """``YYYYMMDDhhmmss`` (and an optional ``.fff``) in the region's time zone."""
    return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=ZoneInfo(zone))


def km(miles: float) -> float:
    return round(miles * 1.609344, 1)


def charging(on: Any) -> str:
    return "CHARGING" if on else "NOT_CHARGING"


def locked(on: Any) -> str:
    return "LOCKED" if on else "UNLOCKED"


def coord(latitude: float, longitude: float) -> dict[str, float]:
    return {"latitude": latitude, "longitude": longitude}


Expect = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class HkCapture:
    """One shared capture: the account words it needs and its common fields from its raw values."""

    region: str
    brand: str
    expect: Expect
    #: (field, reason) -> xfail(strict) while a known gap is being fixed elsewhere
    xfail: dict[str, str] = field(default_factory=dict)


def _eu_ev6(r: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    ev = r["vehicleStatus"]["evStatus"]
    return {
        "odometer": at(r, "odometer.value"),  # unit 1: km
        "battery_level": m["ev_battery_percentage"],
        "range_electric": at(ev, "drvDistance.0.rangeByFuel.evModeRange.value"),
        "range_fuel": ABSENT,  # a BEV: the vendor's fuel zeros are no range
        "charging_status": charging(m["ev_battery_is_charging"]),
        "plugged_in": bool(m["ev_battery_is_plugged_in"]),
        "door_lock_state": locked(m["is_locked"]),
        "location": coord(at(r, "vehicleLocation.coord.lat"), at(r, "vehicleLocation.coord.lon")),
        "updated_at": local(at(r, "vehicleStatus.time"), "Europe/Berlin"),  # the EU API's local time
    }


def _ccs2_common(r: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    expected = {
        "odometer": at(r, "Drivetrain.Odometer"),
        "door_lock_state": locked(m["is_locked"]),  # the capture's Lock flags are inverted (false: locked)
        "updated_at": local(r["Date"], "UTC"),  # CCS2's Date is UTC
    }
    geo = r.get("Location", {}).get("GeoCoord")
    expected["location"] = coord(geo["Latitude"], geo["Longitude"]) if geo else ABSENT
    return expected


def _eu_ev9(r: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    return {
        **_ccs2_common(r, m),
        "battery_level": m["ev_battery_percentage"],
        "range_electric": at(r, "Drivetrain.FuelSystem.DTE.Total"),  # a BEV's total range is electric
        "range_fuel": ABSENT,
        "charging_status": charging(m["ev_battery_is_charging"]),
        "plugged_in": bool(m["ev_battery_is_plugged_in"]),
    }


def _eu_sportage(r: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    return {
        **_ccs2_common(r, m),
        "battery_level": m["ev_battery_percentage"],
        "range_electric": at(r, "Drivetrain.FuelSystem.DTE.EV"),  # 47 of the 600 total
        "range_fuel": at(r, "Drivetrain.FuelSystem.DTE.ICE"),  # 551
        "charging_status": charging(m["ev_battery_is_charging"]),
        "plugged_in": bool(m["ev_battery_is_plugged_in"]),
    }


def _br_creta(r: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    tree = at(r, "resMsg.state.Vehicle")
    return {
        **_ccs2_common(tree, m),
        "odometer": m["odometer"],
        "range_fuel": m["total_driving_range"],  # a petrol car's only range
        "battery_level": ABSENT,  # no high-voltage battery
        "range_electric": ABSENT,
    }


def _au_ioniq5(r: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    status = r["status"]
    return {
        "odometer": at(status, "odometer.value"),
        "battery_level": m["ev_battery_percentage"],
        "range_electric": at(status, "evStatus.drvDistance.0.rangeByFuel.evModeRange.value"),
        "range_fuel": ABSENT,
        "charging_status": charging(m["ev_battery_is_charging"]),
        "plugged_in": bool(m["ev_battery_is_plugged_in"]),
        "door_lock_state": locked(m["is_locked"]),
        "location": coord(at(r, "vehicleLocation.coord.lat"), at(r, "vehicleLocation.coord.lon")),
        "updated_at": local(status["time"], "Australia/Sydney"),
    }


def _ca_niro(r: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    status = r["status"]
    return {
        "battery_level": m["ev_battery_percentage"],
        "range_electric": at(status, "evStatus.drvDistance.0.rangeByFuel.evModeRange.value"),
        "range_fuel": ABSENT,
        "charging_status": charging(m["ev_battery_is_charging"]),
        "plugged_in": bool(m["ev_battery_is_plugged_in"]),
        "door_lock_state": locked(m["is_locked"]),
        "location": ABSENT,  # Canada reads the position with another call
        "updated_at": local(status["lastStatusDate"], "UTC"),
    }


def _us_hyundai(r: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    status = r["vehicleStatus"]
    return {
        "odometer": km(at(r, "vehicleDetails.odometer")),  # miles in the USA
        "battery_level": m["ev_battery_percentage"],
        "range_electric": km(at(status, "evStatus.drvDistance.0.rangeByFuel.evModeRange.value")),  # unit 3: mi
        "range_fuel": ABSENT,
        "charging_status": charging(m["ev_battery_is_charging"]),
        "plugged_in": bool(m["ev_battery_is_plugged_in"]),
        "door_lock_state": locked(m["is_locked"]),
        "location": coord(at(status, "vehicleLocation.coord.lat"), at(status, "vehicleLocation.coord.lon")),
        "updated_at": local(status["dateTime"], "UTC"),
    }


def _us_kia(r: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    status = at(r, "lastVehicleInfo.vehicleStatusRpt.vehicleStatus")
    return {
        "odometer": km(m["odometer_value"]),
        "battery_level": m["ev_battery_percentage"],
        "range_electric": km(at(status, "evStatus.drvDistance.0.rangeByFuel.evModeRange.value")),
        "range_fuel": ABSENT,
        "charging_status": charging(m["ev_battery_is_charging"]),
        "plugged_in": bool(m["ev_battery_is_plugged_in"]),
        "door_lock_state": locked(m["is_locked"]),
        "location": coord(at(r, "lastVehicleInfo.location.coord.lat"), at(r, "lastVehicleInfo.location.coord.lon")),
        "updated_at": local(at(status, "syncDate.utc"), "UTC"),
    }


HK_CAPTURES: dict[str, HkCapture] = {
    "eu_kia_ev6_2023_with_soc.json": HkCapture("europe", "kia", _eu_ev6),
    "eu_kia_ev9_2024_ccs2.json": HkCapture("europe", "kia", _eu_ev9),
    "eu_kia_sportage_phev_2027_ccs2.json": HkCapture("europe", "kia", _eu_sportage),
    "br_hyundai_creta_2025_ccs2_cached.json": HkCapture("brazil", "hyundai", _br_creta),
    "au_hyundai_ioniq_5_2023_with_soc.json": HkCapture("australia", "hyundai", _au_ioniq5),
    "ca_kia_niro_ev_2022_cached.json": HkCapture("canada", "kia", _ca_niro),
    "us_hyundai_ioniq_5_2024_cached.json": HkCapture("usa", "hyundai", _us_hyundai),
    "us_kia_niro_ev_2020_cached.json": HkCapture("usa", "kia", _us_kia),
    "us_kia_niro_ev_2020_force_refresh.json": HkCapture("usa", "kia", _us_kia),
}


def hk_expected(name: str) -> dict[str, Any]:
    body = raw(HK_DIR / name)
    meta = body.pop("_fixture_meta")["expected"]
    return HK_CAPTURES[name].expect(body, meta)


def library_version() -> str:
    try:
        return importlib.metadata.version("hyundai_kia_connect_api")
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def unreadable(name: str) -> str | None:
    """Why the installed library cannot parse this capture's format at all, or None."""
    if not name.startswith("br_"):
        return None
    from hyundai_kia_connect_api.HyundaiBlueLinkApiBR import HyundaiBlueLinkApiBR

    cached = inspect.unwrap(HyundaiBlueLinkApiBR.update_vehicle_with_cached_state)
    if "_update_vehicle_properties_ccs2" in cached.__code__.co_names:
        return None
    return (
        f"hyundai_kia_connect_api {library_version()}: HyundaiBlueLinkApiBR.update_vehicle_with_cached_state "
        "fills the vehicle only from Brazil's pre-CCS2 status (_update_vehicle_properties); this capture is the "
        "CCS2 tree of /ccs2/carstatus/latest, which later releases read with _update_vehicle_properties_ccs2"
    )


def _hk_cases() -> list[Any]:
    if not HK_DIR.is_dir():
        return []
    cases = []
    for name, capture in HK_CAPTURES.items():
        for field_name in hk_expected(name):
            marks = []
            if field_name in capture.xfail:
                marks.append(pytest.mark.xfail(strict=True, reason=capture.xfail[field_name]))
            cases.append(pytest.param(name, field_name, marks=marks, id=f"{name.removesuffix('.json')}-{field_name}"))
    return cases


_hk_states: dict[str, dict[str, Any]] = {}


def hk_state(name: str) -> dict[str, Any]:
    if name not in _hk_states:
        capture = HK_CAPTURES[name]
        run = replay("--provider", "hyundai_kia", "--region", capture.region, "--brand", capture.brand, HK_DIR / name)
        _hk_states[name] = run.state
    return _hk_states[name]


@pytest.fixture
def library():
    return pytest.importorskip("hyundai_kia_connect_api")


def test_every_hyundai_kia_capture_is_covered(fixtures_dir: Path):
    assert {p.name for p in (fixtures_dir / "hyundai_kia" / "hkc_api").glob("*.json")} == set(HK_CAPTURES)


@pytest.mark.parametrize(("name", "field_name"), _hk_cases())
def test_hyundai_kia_capture_field(library, fixtures_dir: Path, name: str, field_name: str):
    reason = unreadable(name)
    if reason:
        pytest.skip(reason)
    check_field(hk_state(name), field_name, hk_expected(name)[field_name])


def test_a_format_the_library_cannot_read_is_refused_with_the_reason(library, fixtures_dir: Path):
    name = "br_hyundai_creta_2025_ccs2_cached.json"
    run = replay("--provider", "hyundai_kia", "--region", "brazil", "--brand", "hyundai", HK_DIR / name)
    if unreadable(name) is None:
        assert run.code == 0, run.err
        return
    one_line_failure(run, 1, name, "CCS2", f"hyundai_kia_connect_api {library_version()}", "brazil")


def test_hyundai_kia_output_is_what_status_prints(library, fixtures_dir: Path):
    run = replay(
        "--provider", "hyundai_kia", "--region", "europe", "--brand", "kia", HK_DIR / "eu_kia_ev6_2023_with_soc.json"
    )
    state = run.state
    assert run.out == json.dumps(state, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert state["battery_12v"] == 85  # beyond the common fields: everything the library read
    assert not {"data", "id", "vin", "VIN", "name", "model"} & set(state)
    assert datetime.fromisoformat(state["fetched_at"]).tzinfo is not None


# --- the vendors' envelopes: the answer exactly as sent ---------------------------------------------

OK = {"retCode": "S", "resCode": "0000", "msgId": "00000000-0000-0000-0000-000000000000"}


def _without(state: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in {"fetched_at", *names}}


ENVELOPES: dict[str, tuple[Callable[[dict[str, Any]], Any], tuple[str, ...]]] = {
    # file -> (the answer as the vendor sends it, fields that come from other answers in real life)
    "eu_kia_ev6_2023_with_soc.json": (lambda b: {**OK, "resMsg": {"vehicleStatusInfo": b}}, ()),
    "eu_kia_ev9_2024_ccs2.json": (
        lambda b: {**OK, "resMsg": {"lastUpdateTime": "20240915140000", "state": {"Vehicle": b}}},
        (),
    ),
    "eu_kia_sportage_phev_2027_ccs2.json": (lambda b: {**OK, "resMsg": {"state": {"Vehicle": b}}}, ()),
    "br_hyundai_creta_2025_ccs2_cached.json": (lambda b: at(b, "resMsg.state.Vehicle"), ()),  # the reverse
    # AU: the park location comes from /location/park, not from the status answer
    "au_hyundai_ioniq_5_2023_with_soc.json": (
        lambda b: {**OK, "resMsg": b["status"]},
        ("location", "location_updated_at"),
    ),
    "ca_kia_niro_ev_2022_cached.json": (
        lambda b: {"responseHeader": {"responseCode": 0, "responseDesc": "Success"}, "result": {"status": b["status"]}},
        (),
    ),
    "us_kia_niro_ev_2020_cached.json": (
        lambda b: {
            "status": {"statusCode": 0, "errorType": 0, "errorCode": 0, "errorMessage": ""},
            "payload": {"vehicleInfoList": [b]},
        },
        (),
    ),
    # US Hyundai: the odometer comes from the enrollment answer; the wire's dateTime has separators
    "us_hyundai_ioniq_5_2024_cached.json": (
        lambda b: {"vehicleStatus": {**b["vehicleStatus"], "dateTime": "2024-09-01T12:00:00Z"}},
        ("odometer",),
    ),
}


@pytest.mark.parametrize("name", sorted(ENVELOPES), ids=lambda n: n.removesuffix(".json"))
def test_the_vendors_envelope_and_the_unwrapped_body_read_the_same(
    library, fixtures_dir: Path, tmp_path: Path, name: str
):
    reason = unreadable(name)
    if reason:
        pytest.skip(reason)
    capture = HK_CAPTURES[name]
    body = raw(HK_DIR / name)
    body.pop("_fixture_meta")
    wrap, elsewhere = ENVELOPES[name]
    other = tmp_path / name
    other.write_text(json.dumps(wrap(body)), encoding="utf-8")
    state = replay("--provider", "hyundai_kia", "--region", capture.region, "--brand", capture.brand, other).state
    assert _without(state, *elsewhere) == _without(hk_state(name), *elsewhere)
    for name_elsewhere in elsewhere:
        assert name_elsewhere not in state


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            {
                "retCode": "F",
                "resCode": "5091",
                "resMsg": "Exceeds number of requests - Exceeds Number of Requests.",
                "msgId": "x",
            },
            ("error answer", "5091", "Exceeds number of requests"),
        ),
        (
            {"responseHeader": {"responseCode": 1, "responseDesc": "Failure"}, "error": {"errorCode": "7602"}},
            ("error answer", "responseCode 1"),
        ),
    ],
)
def test_a_vendor_error_answer_is_named(library, tmp_path: Path, body: dict[str, Any], words: tuple[str, ...]):
    path = tmp_path / "answer.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    region = "europe" if "retCode" in body else "canada"
    one_line_failure(
        replay("--provider", "hyundai_kia", "--region", region, "--brand", "kia", path), 1, str(path), *words
    )


def test_a_capture_of_another_region_is_refused(library, fixtures_dir: Path):
    path = HK_DIR / "ca_kia_niro_ev_2022_cached.json"
    one_line_failure(
        replay("--provider", "hyundai_kia", "--region", "usa", "--brand", "kia", path),
        1,
        str(path),
        "not a kia usa status answer",
        "cmm/gvi",
    )


def test_a_ccs2_capture_for_a_region_whose_cached_read_has_no_ccs2_parser(library, fixtures_dir: Path):
    path = HK_DIR / "eu_kia_ev9_2024_ccs2.json"
    one_line_failure(
        replay("--provider", "hyundai_kia", "--region", "usa", "--brand", "kia", path),
        1,
        str(path),
        "CCS2",
        "KiaUvoApiUSA",
    )


# --- files that are not answers, and bad usage ------------------------------------------------------

BAD_FILES: dict[str, tuple[bytes | None, str]] = {
    "missing": (None, "no such file"),
    "empty": (b"", "empty"),
    "blank": (b"  \n", "empty"),
    "not-json": (b"<html><h1>HTTP Status 410 - Gone</h1></html>", "not JSON"),
    "garbage-after-json": (b'{"vehicleStatus": {}}\nplain text', "not JSON"),
    "not-utf8": (b'{"a": "\xff"}', "not UTF-8"),
    "a-list": (b"[1, 2]", "JSON list"),
    "a-string": (b'"vehicleStatus"', "JSON string"),
    "null": (b"null", "JSON null"),
    "an-unrelated-object": (b'{"hello": "world"}', "keys hello"),
}
READERS = [("bmw_legacy", ()), ("hyundai_kia", ("--region", "europe", "--brand", "kia"))]


@pytest.mark.parametrize("case", sorted(BAD_FILES))
@pytest.mark.parametrize(("provider", "options"), READERS, ids=[p for p, _ in READERS])
def test_a_file_the_provider_cannot_read_is_one_line_and_exit_1(
    tmp_path: Path, case: str, provider: str, options: tuple[str, ...]
):
    if provider == "hyundai_kia":
        pytest.importorskip("hyundai_kia_connect_api")
    content, words = BAD_FILES[case]
    path = tmp_path / f"{case}.json"
    if content is not None:
        path.write_bytes(content)
    one_line_failure(replay("--provider", provider, *options, path), 1, str(path), words)


def test_a_folder_is_not_a_file(tmp_path: Path):
    one_line_failure(replay("--provider", "bmw_legacy", tmp_path), 1, str(tmp_path), "folder")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("--provider", "tesla", "x.json"), ("unknown provider 'tesla'", "bmw_legacy")),
        (("--provider", "hyundai_kia", "x.json"), ("needs --region",)),
        (("--provider", "hyundai_kia", "--region", "europe", "x.json"), ("needs --brand",)),
        (("--provider", "hyundai_kia", "--region", "mars", "--brand", "kia", "x.json"), ("unknown region 'mars'",)),
        (("--provider", "hyundai_kia", "--region", "europe", "--brand", "tesla", "x.json"), ("unknown brand",)),
        (
            ("--provider", "hyundai_kia", "--region", "new_zealand", "--brand", "hyundai", "x.json"),
            ("only kia in region new_zealand",),
        ),
        (("--provider", "bmw_legacy", "--brand", "kia", "x.json"), ("takes no --brand",)),
    ],
)
def test_bad_usage_is_exit_2(argv: tuple[str, ...], words: tuple[str, ...]):
    if "hyundai_kia" in argv:
        pytest.importorskip("hyundai_kia_connect_api")
    one_line_failure(replay(*argv), 2, *words)


def test_the_region_and_brand_words_are_the_accounts(library):
    from mqttbridge.backends.hyundai_kia.mapping import BRANDS, REGIONS
    from mqttbridge.backends.hyundai_kia.replay import BRAND_WORDS, REGION_WORDS

    assert set(REGION_WORDS) == set(REGIONS) and set(BRAND_WORDS) == set(BRANDS)


def test_fetched_at_is_now(fixtures_dir: Path):
    before = datetime.now(UTC).replace(microsecond=0)
    state = replay("--provider", "bmw_legacy", fixtures_dir / "bmw_legacy" / "F48" / "status.json").state
    assert before <= datetime.fromisoformat(state["fetched_at"]) <= datetime.now(UTC)
