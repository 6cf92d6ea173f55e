"""``mqttbridge fingerprint``: raw answers saved, anonymised, and readable by ``replay``.

The legacy BMW account runs against the built-in simulator; the Hyundai/Kia account against the
library's real code with its HTTP answered at the transport (``HTTPAdapter.send``), so the response
hook that records the answers runs exactly as it would against the vendor.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from mqttbridge import cli
from mqttbridge.errors import ServerError
from mqttbridge.fingerprint import FIXED_LATITUDE, FIXED_LONGITUDE, Anonymiser, Recorder, default_out

# --- helpers ---------------------------------------------------------------------------------------


def run_cli(*argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([*map(str, argv)])
    return code, out.getvalue(), err.getvalue()


def write_config(tmp_path: Path, account: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "accounts": [account]}), encoding="utf-8")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path


def all_text(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8") for p in folder.rglob("*") if p.is_file()}


def assert_absent(texts: dict[str, str], secret: str, *, whole_word: bool = False) -> None:
    pattern = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(secret)}(?![A-Za-z0-9_])" if whole_word else re.escape(secret))
    found = [name for name, text in texts.items() if pattern.search(text)]
    assert not found, f"{secret!r} appears in {found}"


#: fields that carry what anonymising replaced: the VIN and the position
ANONYMISED = {"vin", "location", "position_lat", "position_lon", "fetched_at"}


# --- the legacy BMW account against the simulator --------------------------------------------------

API_KEY = "app-key-0123456789abcdef"
API_SECRET = "app-secret-value-fedcba9876543210"


@pytest.fixture
def bmw_run(sim, tmp_path: Path):
    config = write_config(
        tmp_path,
        {
            "name": "bmw",
            "provider": "bmw_legacy",
            "base_url": sim.url,
            "username": "demo@example.com",
            "password": "demo",
            "api_key": API_KEY,
            "api_secret": API_SECRET,
        },
    )
    out = tmp_path / "capture"
    code, stdout, stderr = run_cli("fingerprint", "-c", config, "--out", out)
    assert code == 0, stderr
    assert f"to {out}" in stdout
    index = json.loads((out / "index.json").read_text(encoding="utf-8"))
    return config, out, index


def real_vehicles(sim) -> list[dict[str, Any]]:
    """The simulator's cars as it lists them (their real VINs, plates and dealers)."""
    return [vehicle.entry for vehicle in sim.server.simulation.vehicles.values()]


def test_bmw_files_of_every_answer(bmw_run, sim):
    _config, out, index = bmw_run
    vehicles = index["accounts"][0]["vehicles"]
    assert len(vehicles) == len(real_vehicles(sim)) == 4
    assert (out / "bmw" / "vehicles.json").is_file()
    assert (out / "README.txt").is_file()
    for vehicle in vehicles:
        folder = out / "bmw" / vehicle["vin"]
        names = {p.name for p in folder.iterdir()}
        assert {"status.json", "vehicles.json"} <= names
        files = {
            "last_trip": "last_trip.json",
            "all_trips": "all_trips.json",
            "charging_profile": "charging_profile.json",
            "destinations": "last_destinations.json",
            "range_map": "range_maps.json",
        }
        assert {files[name] for name in vehicle["data_sets"]} | {"status.json", "vehicles.json"} == names
        assert "vehicleStatus" in json.loads((folder / "status.json").read_text(encoding="utf-8"))
    statuses = [entry for entry in index["files"] if entry["kind"] == "status"]
    assert len(statuses) == 4
    for entry in statuses:
        assert entry["provider"] == "bmw_legacy" and entry["http_status"] == 200
        assert entry["replay"] == f"mqttbridge replay --provider bmw_legacy {entry['file']}"
        assert entry["replay"] in (out / "README.txt").read_text(encoding="utf-8")
        assert entry["request"].startswith("GET /webapi/v1/user/vehicles/")


def test_bmw_no_secret_and_no_real_vin_in_any_file(bmw_run, sim, tmp_path: Path):
    _config, out, _index = bmw_run
    texts = all_text(out)
    token = json.loads((tmp_path / "state" / "tokens" / "bmw.json").read_text(encoding="utf-8"))["access_token"]
    for secret in (API_KEY, API_SECRET, token, "demo@example.com"):
        assert_absent(texts, secret)
    assert_absent(texts, "demo", whole_word=True)  # the password
    for vehicle in real_vehicles(sim):
        assert_absent(texts, vehicle["vin"])
        if vehicle.get("licensePlate"):
            assert_absent(texts, vehicle["licensePlate"])
        dealer = vehicle.get("dealer") or {}
        for key in ("street", "phone"):
            if dealer.get(key):
                assert_absent(texts, dealer[key])
    for vehicle in sim.server.simulation.vehicles.values():
        assert_absent(texts, str(vehicle.status["position"]["lat"]))


def test_bmw_aliases_are_vin_shaped_and_the_same_in_every_file(bmw_run, sim):
    _config, out, index = bmw_run
    aliases = [vehicle["vin"] for vehicle in index["accounts"][0]["vehicles"]]
    reals = [vehicle["vin"] for vehicle in real_vehicles(sim)]
    for alias, real in zip(aliases, reals, strict=True):
        assert len(alias) == len(real) == 17 and alias[:3] == real[:3] and alias != real
        status = json.loads((out / "bmw" / alias / "status.json").read_text(encoding="utf-8"))
        assert status["vehicleStatus"]["vin"] == alias
    listed = json.loads((out / "bmw" / "vehicles.json").read_text(encoding="utf-8"))["vehicles"]
    assert [entry["vin"] for entry in listed] == aliases
    assert len(set(aliases)) == 4


def test_bmw_replay_of_the_saved_status_is_what_status_prints(bmw_run, sim):
    config, out, index = bmw_run
    aliases = [vehicle["vin"] for vehicle in index["accounts"][0]["vehicles"]]
    for alias, real in zip(aliases, [v["vin"] for v in real_vehicles(sim)], strict=True):
        code, stdout, stderr = run_cli("status", "-c", config, real)
        assert code == 0, stderr
        live = json.loads(stdout)
        code, stdout, stderr = run_cli("replay", "--provider", "bmw_legacy", out / "bmw" / alias / "status.json")
        assert code == 0, stderr
        replayed = json.loads(stdout)
        assert set(replayed) == set(live)
        assert {k: v for k, v in replayed.items() if k not in ANONYMISED} == {
            k: v for k, v in live.items() if k not in ANONYMISED
        }
        for name in (
            "odometer",
            "battery_level",
            "range_electric",
            "charging_status",
            "plugged_in",
            "door_lock_state",
            "updated_at",
        ):
            assert replayed.get(name) == live.get(name), name
        assert replayed["vin"] == alias and live["vin"] == real
        assert (replayed["location"]["latitude"], replayed["location"]["longitude"]) == (
            FIXED_LATITUDE,
            FIXED_LONGITUDE,
        )
        assert replayed["location"]["heading"] == live["location"]["heading"]


def test_bmw_a_captured_car_is_served_by_the_simulator(bmw_run):
    from mqttbridge.simulator.vehicles import load_vehicle_dir

    _config, out, index = bmw_run
    vehicle = index["accounts"][0]["vehicles"][0]
    served = load_vehicle_dir(out / "bmw" / vehicle["vin"])
    assert served.vin == vehicle["vin"]
    assert served.entry["model"] == vehicle["model"]
    assert served.datasets  # the data sets beside the status


def test_an_existing_folder_is_not_overwritten(sim, tmp_path: Path):
    config = write_config(
        tmp_path,
        {
            "name": "bmw",
            "provider": "bmw_legacy",
            "base_url": sim.url,
            "username": "demo@example.com",
            "password": "demo",
            "api_key": API_KEY,
            "api_secret": API_SECRET,
        },
    )
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep", encoding="utf-8")
    code, _out, err = run_cli("fingerprint", "-c", config, "--out", tmp_path / "busy")
    assert code == 2 and "not an empty folder" in err
    assert (tmp_path / "busy" / "mine.txt").read_text(encoding="utf-8") == "keep"


@pytest.mark.slow
def test_a_failing_account_is_reported_and_exit_1(tmp_path: Path):
    config = write_config(
        tmp_path,
        {
            "name": "bmw",
            "provider": "bmw_legacy",
            "base_url": "http://127.0.0.1:9",
            "username": "demo@example.com",
            "password": "demo",
            "api_key": API_KEY,
            "api_secret": API_SECRET,
        },
    )
    out = tmp_path / "capture"
    code, _stdout, stderr = run_cli("fingerprint", "-c", config, "--out", out)
    assert code == 1
    assert "account bmw:" in stderr
    index = json.loads((out / "index.json").read_text(encoding="utf-8"))
    assert index["accounts"][0]["error"] and index["files"] == []


def test_default_folder_has_the_date_and_never_reuses_one(tmp_path: Path):
    day = datetime(2026, 3, 4, tzinfo=UTC).date()
    first = default_out(day, tmp_path)
    assert first.name == "mqttbridge-fingerprint-2026-03-04"
    first.mkdir()
    assert default_out(day, tmp_path).name == "mqttbridge-fingerprint-2026-03-04-2"


# --- the anonymiser on its own ---------------------------------------------------------------------


def test_anonymiser_replaces_consistently_and_masks_credentials():
    anonymiser = Anonymiser(["s3cret-password"])
    first = anonymiser.clean(
        {
            "vin": "WBY1Z21040V123456",
            "vehicleId": 4711,
            "nickname": "Anna's car",
            "licensePlate": "M-AB 123",
            "email": "anna@example.org",
            "access_token": "tok-abcdefgh",
            "position": {"lat": 48.1, "lon": 11.5, "heading": 90},
            "Location": {"GeoCoord": {"Latitude": 1.5, "Longitude": 2.5, "Altitude": 512}},
            "note": "see https://x/vehicles/WBY1Z21040V123456/status?token=tok-abcdefgh by anna@example.org",
            "login": "s3cret-password",
        }
    )
    second = anonymiser.clean({"list": [{"vin": "WBY1Z21040V123456", "vehicleId": 4711}]})
    assert first["vin"] == second["list"][0]["vin"] == "WBYFPRNT000000001"
    assert first["vehicleId"] == second["list"][0]["vehicleId"] != 4711
    assert first["nickname"] == "name-1" and first["licensePlate"] == "plate-1"
    assert first["email"] == "user-1@example.invalid"
    assert first["access_token"] == "token-1"
    assert first["position"] == {"lat": FIXED_LATITUDE, "lon": FIXED_LONGITUDE, "heading": 90}
    assert first["Location"]["GeoCoord"] == {"Latitude": FIXED_LATITUDE, "Longitude": FIXED_LONGITUDE, "Altitude": 0}
    assert first["note"] == "see https://x/vehicles/WBYFPRNT000000001/status?token=token-1 by user-1@example.invalid"
    assert "s3cret-password" not in json.dumps(first)
    assert anonymiser.clean(first) == first  # anonymising twice changes nothing


def test_anonymiser_finds_vins_it_was_not_told_about():
    anonymiser = Anonymiser()
    cleaned = anonymiser.clean({"message": "vehicle WAUZZZ8V0JA123456 not found", "model": "i3 94 (+ REX)"})
    assert cleaned["message"] == "vehicle WAUFPRNT000000001 not found"
    assert cleaned["model"] == "i3 94 (+ REX)"


def test_recorder_keeps_the_body_and_the_credentials_of_each_exchange(mocker):
    def answer(_adapter, request, **_kwargs):
        response = requests.Response()
        response.status_code, response._content = 200, b'{"ok": 1}'
        response.url, response.request = request.url, request
        response.headers["sid"] = "session-id-0123"
        return response

    mocker.patch.object(requests.adapters.HTTPAdapter, "send", autospec=True, side_effect=answer)
    recorder = Recorder()
    session = recorder.attach(requests.Session())
    with recorder.window() as got:
        session.get("https://vendor.invalid/api/status", headers={"Authorization": "Bearer abc-123456"})
    assert [(e.method, e.path, e.status, e.json()) for e in got] == [("GET", "/api/status", 200, {"ok": 1})]
    assert {"Bearer abc-123456", "session-id-0123"} <= set(got[0].secrets)


def test_a_read_that_fails_keeps_its_answers_and_says_so(mocker, caplog):
    """A capture keeps the vendor's error answers too; only the bridge's own errors are caught, nothing else."""

    def answer(_adapter, request, **_kwargs):
        response = requests.Response()
        response.status_code, response._content = 503, b'{"error": "busy"}'
        response.url, response.request = request.url, request
        return response

    mocker.patch.object(requests.adapters.HTTPAdapter, "send", autospec=True, side_effect=answer)
    recorder = Recorder()
    session = recorder.attach(requests.Session())

    def read(path: str) -> None:
        session.get(f"https://vendor.invalid{path}")
        raise ServerError("the vendor is busy")

    got = recorder.read("acct: status of VIN1", read, "/api/status")
    assert [(e.path, e.status, e.json()) for e in got] == [("/api/status", 503, {"error": "busy"})]
    assert "acct: status of VIN1: the vendor is busy (the answers are kept)" in caplog.text
    with pytest.raises(KeyError):  # a bug is not a vendor's answer: it propagates
        recorder.read("acct", lambda: {}["missing"])


# --- the Hyundai/Kia account with the library's HTTP faked -----------------------------------------

PASSWORD = "Kia-Passw0rd-xyz!"
PIN = "9876"
ACCESS = "Bearer eu-access-token-0123456789"
REFRESH = "eu-refresh-token-abcdefghij"
OK = {"retCode": "S", "resCode": "0000", "msgId": "00000000-0000-0000-0000-000000000000"}
VEHICLES = [
    {
        "vehicleId": "ev6-id-0001",
        "nickname": "Annas EV6",
        "vehicleName": "EV6",
        "regDate": "2023-03-01",
        "vin": "KNAC381AFP5000001",
        "type": "EV",
        "ccuCCS2ProtocolSupport": 0,
    },
    {
        "vehicleId": "ev9-id-0002",
        "nickname": "Family EV9",
        "vehicleName": "EV9",
        "regDate": "2024-05-01",
        "vin": "KNAC481AFR5000002",
        "type": "EV",
        "ccuCCS2ProtocolSupport": 1,
    },
    {
        "vehicleId": "sportage-id-0003",
        "nickname": "Toms Sportage",
        "vehicleName": "Sportage",
        "regDate": "2026-06-01",
        "vin": "U5YPU81AFT5000003",
        "type": "PE",
        "ccuCCS2ProtocolSupport": 1,
    },
]
STATUS = {
    "ev6-id-0001": "eu_kia_ev6_2023_with_soc.json",
    "ev9-id-0002": "eu_kia_ev9_2024_ccs2.json",
    "sportage-id-0003": "eu_kia_sportage_phev_2027_ccs2.json",
}


class Transport:
    """Answers at ``HTTPAdapter.send``: everything above it (sessions, hooks, the library) is real."""

    def __init__(self, fixtures: Path):
        self.routes: list[tuple[str, re.Pattern[str], Callable[[], Any]]] = []
        self.unexpected: list[str] = []
        capture_dir = fixtures / "hyundai_kia" / "hkc_api"
        for vehicle_id, name in STATUS.items():
            body = json.loads((capture_dir / name).read_text(encoding="utf-8"))
            body.pop("_fixture_meta")
            if "ccs2" in name:
                self.on(
                    "GET",
                    rf"/vehicles/{vehicle_id}/ccs2/carstatus/latest$",
                    {**OK, "resMsg": {"state": {"Vehicle": body}}},
                )
            else:
                self.on("GET", rf"/vehicles/{vehicle_id}/status/latest$", {**OK, "resMsg": {"vehicleStatusInfo": body}})
        self.on("GET", r"/api/v1/spa/vehicles$", {**OK, "resMsg": {"vehicles": VEHICLES}})
        self.on("GET", r"/location/park$", {"retCode": "F", "resCode": "5921", "resMsg": "No Data Found"})
        self.on("POST", r"/drvhistory$", {**OK, "resMsg": {}})
        self.on("POST", r"/spa/notifications/register$", {**OK, "resMsg": {"deviceId": "device-2"}})
        self.on(
            "POST",
            r"/auth/api/v2/user/oauth2/token$",
            {
                "token_type": "Bearer",
                "access_token": "renewed-access-token-xyz",
                "refresh_token": "renewed-refresh-xyz",
                "expires_in": 3600,
            },
        )

    def on(self, method: str, pattern: str, body: Any) -> None:
        self.routes.insert(0, (method, re.compile(pattern), lambda: body))

    def __call__(self, _adapter: Any, request: requests.PreparedRequest, **_kwargs: Any) -> requests.Response:
        for method, pattern, body in self.routes:
            if method == request.method and pattern.search(request.path_url.split("?")[0]):
                response = requests.Response()
                response.status_code = 200
                response._content = json.dumps(body()).encode()
                response.encoding = "utf-8"
                response.headers["Content-Type"] = "application/json"
                response.url, response.request = request.url, request
                return response
        self.unexpected.append(f"{request.method} {request.url}")
        raise requests.ConnectionError(f"no route for {request.method} {request.url}")


@pytest.fixture
def kia(mocker, fixtures_dir: Path, tmp_path: Path):
    pytest.importorskip("hyundai_kia_connect_api")
    from hyundai_kia_connect_api import Token
    from hyundai_kia_connect_api.KiaUvoApiEU import KiaUvoApiEU

    def login(*_args: Any, **_kwargs: Any) -> Token:  # the EU password login is an RSA and redirect flow
        return Token(
            username="anna@example.org",
            password=PASSWORD,
            access_token=ACCESS,
            refresh_token=REFRESH,
            device_id="device-1-abcdef",
            pin=PIN,
            valid_until=datetime.now(UTC) + timedelta(hours=1),
        )

    mocker.patch.object(KiaUvoApiEU, "login", autospec=True, side_effect=login)
    transport = Transport(fixtures_dir)
    mocker.patch.object(requests.adapters.HTTPAdapter, "send", autospec=True, side_effect=transport)
    config = write_config(
        tmp_path,
        {
            "name": "kia",
            "provider": "hyundai_kia",
            "region": "europe",
            "brand": "kia",
            "username": "anna@example.org",
            "password": PASSWORD,
            "pin": PIN,
        },
    )
    out = tmp_path / "capture"
    code, _stdout, stderr = run_cli("fingerprint", "-c", config, "--out", out)
    assert code == 0, stderr
    index = json.loads((out / "index.json").read_text(encoding="utf-8"))
    yield config, out, index
    assert not transport.unexpected, transport.unexpected


def test_hyundai_kia_files_and_index(kia):
    _config, out, index = kia
    account = index["accounts"][0]
    assert (account["region"], account["brand"]) == ("europe", "kia")
    aliases = [vehicle["vin"] for vehicle in account["vehicles"]]
    assert [alias[:3] for alias in aliases] == ["KNA", "KNA", "U5Y"] and len(set(aliases)) == 3
    assert (out / "kia" / "vehicles.json").is_file()
    statuses = {entry["vehicle"]: entry for entry in index["files"] if entry["kind"] == "status"}
    assert set(statuses) == set(aliases)
    for alias, entry in statuses.items():
        assert entry["file"] == f"kia/{alias}/status.json"
        command = f"mqttbridge replay --provider hyundai_kia --region europe --brand kia {entry['file']}"
        assert entry["replay"] == command
    ev6 = aliases[0]
    assert (out / "kia" / ev6 / "location_park.json").is_file()  # what else the read asked, beside the status
    assert not [e for e in index["files"] if "token" in e["file"] or "auth" in e["request"]]


def test_hyundai_kia_no_secret_and_no_real_vin_in_any_file(kia):
    _config, out, _index = kia
    texts = all_text(out)
    for secret in (PASSWORD, ACCESS, ACCESS.split(" ", 1)[1], REFRESH, "anna@example.org", "device-1-abcdef"):
        assert_absent(texts, secret)
    assert_absent(texts, PIN, whole_word=True)
    for vehicle in VEHICLES:
        for key in ("vin", "vehicleId", "nickname"):
            assert_absent(texts, vehicle[key])
    assert_absent(texts, "52.52")  # the EV6's position
    assert_absent(texts, "48.8566")  # the EV9's


def test_hyundai_kia_replay_of_the_saved_status_is_what_status_prints(kia):
    config, out, index = kia
    aliases = [vehicle["vin"] for vehicle in index["accounts"][0]["vehicles"]]
    for alias, vehicle in zip(aliases, VEHICLES, strict=True):
        code, stdout, stderr = run_cli("status", "-c", config, vehicle["vin"])
        assert code == 0, stderr
        live = json.loads(stdout)
        code, stdout, stderr = run_cli(
            "replay",
            "--provider",
            "hyundai_kia",
            "--region",
            "europe",
            "--brand",
            "kia",
            out / "kia" / alias / "status.json",
        )
        assert code == 0, stderr
        replayed = json.loads(stdout)
        assert {k: v for k, v in replayed.items() if k not in ANONYMISED} == {
            k: v for k, v in live.items() if k not in ANONYMISED
        }, alias
        if "location" in live:
            assert replayed["location"] == {"latitude": FIXED_LATITUDE, "longitude": FIXED_LONGITUDE}
        else:
            assert "location" not in replayed
        for name in ("odometer", "battery_level", "range_electric", "range_fuel", "door_lock_state", "updated_at"):
            assert replayed.get(name) == live.get(name), name
