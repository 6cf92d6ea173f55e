"""The vendor simulator over real HTTP on loopback, with a fake clock driving executions and tokens."""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from mqttbridge.errors import MqttBridgeError
from mqttbridge.simulator import (
    SimulatorError,
    SimulatorServer,
    SimVehicle,
    build_vehicles,
    demo_vehicles,
    load_vehicle_dir,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CAPTURES = SHARED / "fixtures" / "bmw_legacy"
START_WALL = datetime(2021, 11, 5, 8, 30, 0, tzinfo=UTC)
BEV, REX, PHEV, PETROL = range(4)


class TestClock:
    """Monotonic seconds and the matching wall time; both move only when the test says so."""

    __test__ = False

    def __init__(self) -> None:
        self.now = 5000.0
        self._start = self.now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def wall(self) -> datetime:
        with self._lock:
            return START_WALL + timedelta(seconds=self.now - self._start)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class Client:
    """A minimal client of the simulated API, plus the /_sim/ control calls."""

    def __init__(self, server: SimulatorServer, clock: TestClock):
        self.server = server
        self.clock = clock
        self.url = server.url
        self.http = requests.Session()
        self.token: str | None = None

    def login(
        self,
        path: str = "/gcdm/oauth/token",
        password: str = "demo",
        auth: tuple[str, str] | None = ("app-key", "app-secret"),
    ) -> requests.Response:
        form = {
            "grant_type": "password",
            "username": "demo@example.com",
            "password": password,
            "scope": "authenticate_user vehicle_data remote_services",
        }
        response = self.http.post(self.url + path, data=form, auth=auth, timeout=5)
        if response.status_code == 200:
            self.token = response.json()["access_token"]
        return response

    def _headers(self) -> dict[str, str]:
        if self.token is None:
            self.login().raise_for_status()
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 5)
        return self.http.get(f"{self.url}/webapi/v1{path}", headers=self._headers(), **kwargs)

    def post(self, path: str, data: dict[str, str], **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 5)
        return self.http.post(f"{self.url}/webapi/v1{path}", data=data, headers=self._headers(), **kwargs)

    def status(self, vin: str) -> dict[str, Any]:
        response = self.get(f"/user/vehicles/{vin}/status")
        assert response.status_code == 200, response.text
        return response.json()["vehicleStatus"]

    def execute(self, vin: str, service: str, **form: str) -> requests.Response:
        return self.post(f"/user/vehicles/{vin}/executeService", {"serviceType": service, **form})

    def execution(self, vin: str, service: str) -> requests.Response:
        return self.get(f"/user/vehicles/{vin}/serviceExecutionStatus", params={"serviceType": service})

    def fault(self, **rule: Any) -> requests.Response:
        return self.http.post(f"{self.url}/_sim/faults", json=rule, timeout=5)

    def log(self, path_part: str = "") -> list[dict[str, Any]]:
        entries = self.http.get(f"{self.url}/_sim/requests", timeout=5).json()
        return [e for e in entries if path_part in e["path"]]

    def sim_vehicles(self) -> list[dict[str, Any]]:
        return self.http.get(f"{self.url}/_sim/vehicles", timeout=5).json()


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def make_client(clock: TestClock) -> Iterator[Any]:
    servers: list[SimulatorServer] = []

    def make(vehicles: list[SimVehicle] | None = None, step: float = 1.0, **kwargs: Any) -> Client:
        cars = vehicles if vehicles is not None else demo_vehicles(now=START_WALL)
        server = SimulatorServer(cars, execution_step=step, clock=clock, wall_clock=clock.wall, **kwargs)
        server.start()
        servers.append(server)
        return Client(server, clock)

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def client(make_client: Any) -> Client:
    return make_client()


@pytest.fixture
def vins(client: Client) -> list[str]:
    return list(client.server.vehicles)


@pytest.fixture
def captures() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is absent: the capture-based tests need it")
    return CAPTURES


def _run_to_end(client: Client, vin: str, service: str, **form: str) -> list[str]:
    """Send a service and poll once per simulated second until it ends; the statuses seen."""
    started = client.execute(vin, service, **form)
    assert started.status_code == 200, started.text
    seen = [started.json()["executionStatus"]["status"]]
    for _ in range(6):
        if seen[-1] not in ("INITIATED", "PENDING", "DELIVERED"):
            break
        client.clock.advance(1.0)
        seen.append(client.execution(vin, service).json()["executionStatus"]["status"])
    return seen


FLOW = ["INITIATED", "PENDING", "DELIVERED", "EXECUTED"]


# --- authentication ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/webapi/oauth/token", "/webapi/oauth/token/", "/gcdm/oauth/token"])
def test_login_gives_a_bearer_token(client: Client, path: str) -> None:
    response = client.login(path)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 28799
    assert body["scope"] == "authenticate_user vehicle_data remote_services"
    assert re.fullmatch(r"[0-9a-f]{32,}", body["access_token"])
    assert client.get("/user/vehicles").status_code == 200


def test_each_login_gets_its_own_token(client: Client) -> None:
    first = client.login().json()["access_token"]
    second = client.login().json()["access_token"]
    assert first != second


def test_wrong_password_is_invalid_grant(client: Client) -> None:
    response = client.login(password="wrong")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant" and response.json()["error_description"]


@pytest.mark.parametrize(
    "authorization", [None, "Bearer abc", "Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode()]
)
def test_token_needs_a_basic_client_credential(client: Client, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    form = {"grant_type": "password", "username": "demo@example.com", "password": "demo", "scope": "x"}
    response = requests.post(f"{client.url}/gcdm/oauth/token", data=form, headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_api_needs_a_valid_bearer_token(client: Client) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = requests.get(f"{client.url}/webapi/v1/user/vehicles", headers=headers, timeout=5)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == 401


def test_token_expires_on_the_clock(make_client: Any) -> None:
    client = make_client(token_lifetime=60)
    assert client.login().json()["expires_in"] == 60
    client.clock.advance(59)
    assert client.get("/user/vehicles").status_code == 200
    client.clock.advance(1)
    assert client.get("/user/vehicles").status_code == 401


def test_revoke_forces_a_new_login(client: Client) -> None:
    assert client.get("/user/vehicles").status_code == 200
    revoked = client.http.post(f"{client.url}/_sim/tokens/revoke", timeout=5)
    assert revoked.status_code == 200
    assert client.get("/user/vehicles").status_code == 401
    client.login()
    assert client.get("/user/vehicles").status_code == 200


# --- reading --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/user/vehicles", "/user/vehicles/"])
def test_vehicle_list(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    vehicles = response.json()["vehicles"]
    assert [v["driveTrain"] for v in vehicles] == ["BEV", "BEV_REX", "PHEV", "CONV"]
    assert [v["bodytype"] for v in vehicles] == ["I01", "I01", "G30", "F48"]
    assert vehicles[PETROL]["chargeNow"] == "NOT_SUPPORTED" and vehicles[PETROL]["fuelType"] == "PETROL"
    assert vehicles[PETROL]["chargingControl"] == "NOT_SUPPORTED"
    assert vehicles[BEV]["chargeNow"] == "ACTIVATED" and vehicles[BEV]["chargingControl"] == "WEEKLY_PLANNER"
    for entry in vehicles:
        assert len(entry["vin"]) == 17
        for flag in ("doorLock", "doorUnlock", "hornBlow", "lightFlash", "vehicleFinder", "climateNow"):
            assert entry[flag] in ("ACTIVATED", "NOT_SUPPORTED")
        assert isinstance(entry["statisticsAvailable"], bool)
        assert entry["lastDestinations"] and entry["rangeMap"]


def test_responses_carry_gateway_headers_and_a_length(client: Client) -> None:
    response = client.get("/user/vehicles")
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert re.fullmatch(r"Id-[0-9a-f]{32} 0", response.headers["X-CorrelationID"])
    assert response.headers["X-Powered-By"] == "JOY"
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert response.raw.version == 11


def test_status_ignores_the_observer_query(client: Client, vins: list[str]) -> None:
    response = client.get(
        f"/user/vehicles/{vins[BEV]}/status", params={"deviceTime": "2021-11-05T08:30:00", "dlat": "0.0", "dlon": "0.0"}
    )
    status = response.json()["vehicleStatus"]
    assert status["vin"] == vins[BEV]
    assert status["remainingFuel"] == 0 and "remainingRangeFuel" not in status
    assert status["position"]["status"] == "OK"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000", status["updateTime"])
    assert client.log("/status")[0]["query"]["dlat"] == "0.0"


def test_demo_cars_have_the_fields_of_their_drive_train(client: Client, vins: list[str]) -> None:
    statuses = [client.status(vin) for vin in vins]
    for status in statuses:
        for key in (
            "doorLockState",
            "mileage",
            "updateTime",
            "updateReason",
            "hood",
            "trunk",
            "windowDriverFront",
            "cbsData",
            "checkControlMessages",
            "remainingFuel",
        ):
            assert key in status, key
    for index in (BEV, REX, PHEV):
        for key in (
            "chargingLevelHv",
            "remainingRangeElectric",
            "maxRangeElectric",
            "chargingStatus",
            "connectionStatus",
        ):
            assert key in statuses[index], key
    assert "chargingStatus" not in statuses[PETROL] and statuses[PETROL]["remainingRangeFuel"] > 0
    assert 0 < statuses[REX]["maxFuel"] <= 10 and "remainingRangeFuel" in statuses[REX]
    plugged = [s for s in statuses if s.get("connectionStatus") == "CONNECTED"]
    assert plugged and all(s["chargingStatus"] != "CHARGING" for s in plugged)


DATASET_PATHS = {
    "statistics/lastTrip": "lastTrip",
    "statistics/allTrips": "allTrips",
    "chargingprofile": "weeklyPlanner",
    "destinations": "destinations",
    "rangemap": "rangemap",
}


@pytest.mark.parametrize("path,key", sorted(DATASET_PATHS.items()))
def test_each_dataset_and_its_empty_form(client: Client, vins: list[str], path: str, key: str) -> None:
    full = client.get(f"/user/vehicles/{vins[BEV]}/{path}")
    assert full.status_code == 200
    assert list(full.json()) == [key] and full.json()[key]
    empty = client.get(f"/user/vehicles/{vins[PETROL]}/{path}")
    assert empty.status_code == 200
    assert empty.json() == {key: [] if key == "destinations" else {}}


def test_unknown_vin_path_and_method(client: Client, vins: list[str]) -> None:
    unknown = client.get("/user/vehicles/WBA00000000000000/status")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == 404
    assert client.get(f"/user/vehicles/{vins[BEV]}/nothing").status_code == 404
    assert client.get(f"/user/vehicles/{vins[BEV]}/executeService").status_code == 405


def test_concurrent_requests(client: Client, vins: list[str]) -> None:
    headers = client._headers()

    def fetch(vin: str) -> int:
        return requests.get(
            f"{client.url}/webapi/v1/user/vehicles/{vin}/status", headers=headers, timeout=5
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(fetch, vins * 8)) == {200}
    assert len(client.log("/status")) == 32


# --- remote services ------------------------------------------------------------------------------


def test_execution_timeline(client: Client, vins: list[str]) -> None:
    started = client.execute(vins[BEV], "LIGHT_FLASH", count="2").json()["executionStatus"]
    assert started["status"] == "INITIATED" and started["serviceType"] == "LIGHT_FLASH"
    assert re.fullmatch(r"[0-9a-f]{24}@bmw\.de", started["eventId"])
    # (seconds to advance, status then, extendedStatus.result); binary-exact steps, no float drift
    expected = [
        (0.0, "INITIATED", None),
        (0.75, "INITIATED", None),
        (0.25, "PENDING", "STATUS_UNKNOWN"),
        (0.75, "PENDING", "STATUS_UNKNOWN"),
        (0.25, "DELIVERED", "STATUS_UNKNOWN"),
        (0.75, "DELIVERED", "STATUS_UNKNOWN"),
        (0.25, "EXECUTED", "STATUS_CHANGED"),
        (100, "EXECUTED", "STATUS_CHANGED"),
    ]
    for advance, status, result in expected:
        client.clock.advance(advance)
        body = client.execution(vins[BEV], "LIGHT_FLASH").json()["executionStatus"]
        assert body["status"] == status and body["eventId"] == started["eventId"]
        assert body.get("extendedStatus", {}).get("result") == result


def _position(status: dict[str, Any]) -> tuple[float, float]:
    return status["position"]["lat"], status["position"]["lon"]


@pytest.mark.parametrize(
    "index,service,form,check",
    [
        (
            PETROL,
            "DOOR_LOCK",
            {},
            lambda before, after: (before["doorLockState"], after["doorLockState"]) == ("UNLOCKED", "SECURED"),
        ),
        (
            BEV,
            "DOOR_UNLOCK",
            {},
            lambda before, after: (before["doorLockState"], after["doorLockState"]) == ("SECURED", "UNLOCKED"),
        ),
        (
            BEV,
            "CLIMATE_NOW",
            {},
            lambda before, after: (before["DCS_CCH_Ongoing"], after["DCS_CCH_Ongoing"]) == (False, True),
        ),
        (
            BEV,
            "CHARGE_NOW",
            {},
            lambda before, after: (
                after["chargingStatus"] == "CHARGING"
                and after["chargingTimeRemaining"] > 0
                and after["updateReason"] == "CHARGING_STARTED"
                and "chargingTimeRemaining" not in before
            ),
        ),
        (
            BEV,
            "VEHICLE_FINDER",
            {},
            lambda before, after: (
                after["position"]["status"] == "OK"
                and _position(after) != _position(before)
                and abs(_position(after)[0] - _position(before)[0]) < 0.01
            ),
        ),
        (BEV, "LIGHT_FLASH", {"count": "2"}, lambda before, after: before == after),
        (PHEV, "HORN_BLOW", {}, lambda before, after: before == after),
    ],
)
def test_service_reaches_executed_and_changes_the_car(
    client: Client, vins: list[str], index: int, service: str, form: dict[str, str], check: Any
) -> None:
    vin = vins[index]
    before = client.status(vin)
    assert _run_to_end(client, vin, service, **form) == FLOW
    after = client.status(vin)
    assert check(before, after)
    effects = client.server.vehicles[vin].effects
    assert [e["serviceType"] for e in effects] == [service]
    if before != after:
        assert after["updateTime"] == "2021-11-05T08:30:03+0000"
        assert after["internalDataTimeUTC"] == "2021-11-05T08:30:03"
    else:
        assert effects[0]["changes"] == {}


def test_charging_control_replaces_the_profile(client: Client, vins: list[str]) -> None:
    profile = {"weeklyPlanner": {"chargingMode": "IMMEDIATE_CHARGING", "climatizationEnabled": False}}
    assert _run_to_end(client, vins[BEV], "CHARGING_CONTROL", data=json.dumps(profile)) == FLOW
    assert client.get(f"/user/vehicles/{vins[BEV]}/chargingprofile").json() == profile


def test_charging_control_inner_object_is_wrapped(client: Client, vins: list[str]) -> None:
    inner = {"chargingMode": "DELAYED_CHARGING"}
    assert _run_to_end(client, vins[REX], "CHARGING_CONTROL", data=json.dumps(inner))[-1] == "EXECUTED"
    assert client.get(f"/user/vehicles/{vins[REX]}/chargingprofile").json() == {"weeklyPlanner": inner}


def test_effect_happens_without_polling(client: Client, vins: list[str]) -> None:
    assert client.execute(vins[BEV], "DOOR_UNLOCK").status_code == 200
    client.clock.advance(2.9)
    assert client.status(vins[BEV])["doorLockState"] == "SECURED"
    client.clock.advance(0.1)
    assert client.status(vins[BEV])["doorLockState"] == "UNLOCKED"


def test_step_zero_is_final_at_the_first_read(make_client: Any) -> None:
    client = make_client(step=0)
    vin = list(client.server.vehicles)[BEV]
    assert client.execute(vin, "DOOR_UNLOCK").json()["executionStatus"]["status"] == "INITIATED"
    assert client.execution(vin, "DOOR_UNLOCK").json()["executionStatus"]["status"] == "EXECUTED"
    assert client.status(vin)["doorLockState"] == "UNLOCKED"


def test_charge_now_unplugged_is_not_executed(client: Client, vins: list[str]) -> None:
    before = client.status(vins[PHEV])
    assert before["connectionStatus"] == "DISCONNECTED"
    assert _run_to_end(client, vins[PHEV], "CHARGE_NOW") == [*FLOW[:3], "NOT_EXECUTED"]
    assert client.status(vins[PHEV]) == before
    assert client.server.vehicles[vins[PHEV]].effects == []


def test_last_execution_of_the_type_is_reported(client: Client, vins: list[str]) -> None:
    first = client.execute(vins[BEV], "DOOR_LOCK").json()["executionStatus"]["eventId"]
    client.clock.advance(5)
    second = client.execute(vins[BEV], "DOOR_LOCK").json()["executionStatus"]["eventId"]
    body = client.execution(vins[BEV], "DOOR_LOCK").json()["executionStatus"]
    assert first != second and body["eventId"] == second and body["status"] == "INITIATED"


@pytest.mark.parametrize(
    "index,form,problem",
    [
        (PETROL, {"serviceType": "CHARGE_NOW"}, "not activated"),
        (BEV, {"serviceType": "SELF_DESTRUCT"}, "unknown"),
        (BEV, {}, "missing"),
        (BEV, {"serviceType": "CHARGING_CONTROL", "data": "[1, 2]"}, "JSON object"),
        (BEV, {"serviceType": "CHARGING_CONTROL", "data": "{not json"}, "JSON object"),
        (BEV, {"serviceType": "CHARGING_CONTROL"}, "JSON object"),
        (PETROL, {"serviceType": "CHARGING_CONTROL", "data": "{}"}, "not activated"),
        (BEV, {"serviceType": "LIGHT_FLASH", "count": "many"}, "count"),
    ],
)
def test_refused_services(client: Client, vins: list[str], index: int, form: dict[str, str], problem: str) -> None:
    response = client.post(f"/user/vehicles/{vins[index]}/executeService", form)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400 and problem in response.json()["error"]["description"]
    assert client.server.vehicles[vins[index]].executions == []


def test_execution_status_without_execution_is_404(client: Client, vins: list[str]) -> None:
    response = client.execution(vins[BEV], "DOOR_LOCK")
    assert response.status_code == 404 and response.json()["error"]["code"] == 404


# --- outcome rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["NOT_EXECUTED", "TIMED_OUT"])
def test_outcome_rule_ends_the_next_execution(client: Client, vins: list[str], outcome: str) -> None:
    assert client.fault(endpoint="serviceExecutionStatus", outcome=outcome, count=1).status_code == 200
    assert _run_to_end(client, vins[BEV], "DOOR_UNLOCK") == [*FLOW[:3], outcome]
    assert client.status(vins[BEV])["doorLockState"] == "SECURED"  # nothing happened
    # count 1: the next one runs normally again
    assert _run_to_end(client, vins[BEV], "DOOR_UNLOCK") == FLOW
    assert client.http.get(f"{client.url}/_sim/faults", timeout=5).json() == []


def test_outcome_pending_never_ends(client: Client, vins: list[str]) -> None:
    client.fault(endpoint="serviceExecutionStatus", outcome="PENDING", count=1)
    client.execute(vins[BEV], "DOOR_UNLOCK")
    for advance in (1, 1, 1, 1000):
        client.clock.advance(advance)
        assert client.execution(vins[BEV], "DOOR_UNLOCK").json()["executionStatus"]["status"] == "PENDING"
    assert client.status(vins[BEV])["doorLockState"] == "SECURED"


def test_outcome_rule_is_replaced_and_cleared(client: Client, vins: list[str]) -> None:
    client.fault(endpoint="serviceExecutionStatus", outcome="TIMED_OUT", count=5)
    client.fault(endpoint="serviceExecutionStatus", outcome="NOT_EXECUTED", count=1)
    rules = client.http.get(f"{client.url}/_sim/faults", timeout=5).json()
    assert rules == [{"endpoint": "serviceExecutionStatus", "outcome": "NOT_EXECUTED", "count": 1}]
    assert _run_to_end(client, vins[BEV], "HORN_BLOW")[-1] == "NOT_EXECUTED"
    client.fault(endpoint="serviceExecutionStatus", outcome="TIMED_OUT", count=3)
    client.fault(endpoint="serviceExecutionStatus", outcome="TIMED_OUT", count=0)
    assert _run_to_end(client, vins[BEV], "HORN_BLOW")[-1] == "EXECUTED"


def test_outcome_rule_and_http_rule_live_apart(client: Client, vins: list[str]) -> None:
    client.fault(endpoint="serviceExecutionStatus", outcome="NOT_EXECUTED", count=1)
    client.fault(endpoint="serviceExecutionStatus", http_status=500, count=1)
    client.execute(vins[BEV], "DOOR_LOCK")
    client.clock.advance(3)
    assert client.execution(vins[BEV], "DOOR_LOCK").status_code == 500
    assert client.execution(vins[BEV], "DOOR_LOCK").json()["executionStatus"]["status"] == "NOT_EXECUTED"


# --- HTTP faults ----------------------------------------------------------------------------------


def test_fault_count_then_success(client: Client, vins: list[str]) -> None:
    client.status(vins[BEV])
    assert client.fault(endpoint="status", http_status=500, count=2).status_code == 200
    first = client.get(f"/user/vehicles/{vins[BEV]}/status")
    assert first.status_code == 500 and "server panic" in first.json()["error"]["description"]
    assert client.get(f"/user/vehicles/{vins[REX]}/status").status_code == 500
    assert client.get("/user/vehicles").status_code == 200  # another endpoint is not affected
    assert client.get(f"/user/vehicles/{vins[BEV]}/status").status_code == 200
    assert [e["status"] for e in client.log("/status")] == [200, 500, 500, 200]


def test_new_rule_replaces_and_count_zero_clears(client: Client, vins: list[str]) -> None:
    path = f"/user/vehicles/{vins[BEV]}/status"
    client.fault(endpoint="status", http_status=500, count=5)
    client.fault(endpoint="status", http_status=503, count=1)
    assert client.get(path).status_code == 503
    assert client.get(path).status_code == 200
    client.fault(endpoint="status", http_status=500, count=5)
    listed = client.http.get(f"{client.url}/_sim/faults", timeout=5).json()
    assert [(r["endpoint"], r["http_status"], r["count"]) for r in listed] == [("status", 500, 5)]
    client.fault(endpoint="status", count=0)
    assert client.get(path).status_code == 200
    assert client.http.get(f"{client.url}/_sim/faults", timeout=5).json() == []


def test_429_has_retry_after(client: Client, vins: list[str]) -> None:
    client.fault(endpoint="status", http_status=429, count=2, retry_after=7)
    response = client.get(f"/user/vehicles/{vins[BEV]}/status")
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert response.json()["error"]["code"] == 429
    client.fault(endpoint="status", http_status=429, count=1)
    assert "Retry-After" not in client.get(f"/user/vehicles/{vins[BEV]}/status").headers


def test_410_is_the_html_shutdown_page(client: Client, vins: list[str]) -> None:
    client.fault(endpoint="status", http_status=410, count=1)
    response = client.get(f"/user/vehicles/{vins[BEV]}/status")
    assert response.status_code == 410
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<h1>HTTP Status 410 - Gone</h1>" in response.text and "Payara Micro #badassfish" in response.text


def test_raw_body_fault(client: Client, vins: list[str]) -> None:
    client.fault(endpoint="status", http_status=200, count=1, body="<<not json>>")
    response = client.get(f"/user/vehicles/{vins[BEV]}/status")
    assert response.status_code == 200 and response.text == "<<not json>>"
    assert response.headers["Content-Type"] == "text/plain"
    client.fault(endpoint="vehicles", http_status=502, count=1, body="<b>bad gateway</b>", content_type="text/html")
    response = client.get("/user/vehicles")
    assert response.status_code == 502 and response.headers["Content-Type"] == "text/html"


def test_token_faults_use_the_oauth_shape(client: Client) -> None:
    client.fault(endpoint="token", http_status=401, count=1)
    response = client.login()
    assert response.status_code == 401 and isinstance(response.json()["error"], str)
    client.fault(endpoint="token", http_status=400, count=1)
    refused = client.login().json()
    assert refused == {"error": "invalid_grant", "error_description": "the authN circuit failed"}
    assert client.login().status_code == 200


def test_any_fault_hits_every_endpoint_after_the_specific_one(client: Client, vins: list[str]) -> None:
    client.login()
    client.fault(endpoint="any", http_status=503, count=2)
    client.fault(endpoint="vehicles", http_status=500, count=1)
    assert client.get("/user/vehicles").status_code == 500
    assert client.get("/user/vehicles").status_code == 503
    assert client.get(f"/user/vehicles/{vins[BEV]}/rangemap").status_code == 503
    assert client.get(f"/user/vehicles/{vins[BEV]}/rangemap").status_code == 200


def test_a_faulted_command_creates_no_execution(client: Client, vins: list[str]) -> None:
    client.fault(endpoint="executeService", http_status=500, count=1)
    assert client.execute(vins[BEV], "DOOR_UNLOCK").status_code == 500
    client.clock.advance(10)
    assert client.server.vehicles[vins[BEV]].executions == []
    assert client.status(vins[BEV])["doorLockState"] == "SECURED"
    assert client.execution(vins[BEV], "DOOR_UNLOCK").status_code == 404


def test_delay_without_failure_answers_late_and_takes_effect(client: Client, vins: list[str]) -> None:
    client.fault(endpoint="executeService", http_status=200, count=1, delay=0.3)
    began = time.monotonic()
    response = client.execute(vins[BEV], "DOOR_UNLOCK")
    assert time.monotonic() - began >= 0.3
    assert response.status_code == 200 and response.json()["executionStatus"]["status"] == "INITIATED"
    assert len(client.server.vehicles[vins[BEV]].executions) == 1


def test_delay_makes_a_client_time_out(client: Client, vins: list[str]) -> None:
    client.fault(endpoint="status", http_status=500, count=1, delay=2)
    client.login()
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.get(f"/user/vehicles/{vins[BEV]}/status", timeout=0.2)


@pytest.mark.parametrize(
    "rule,problem",
    [
        ({"endpoint": "statuz", "http_status": 500}, "endpoint"),
        ({"endpoint": "status", "http_status": "500"}, "http_status"),
        ({"endpoint": "status", "http_status": 500, "count": "2"}, "count"),
        ({"endpoint": "status", "http_status": 500, "count": True}, "count"),
        ({"endpoint": "status", "http_status": 500, "count": -1}, "count"),
        ({"endpoint": "status", "http_status": 500, "retry_after": "soon"}, "retry_after"),
        ({"endpoint": "status", "http_status": 500, "body": {"a": 1}}, "body"),
        ({"endpoint": "status", "http_status": 500, "delay": -1}, "delay"),
        ({"endpoint": "status", "http_status": 500, "colour": "red"}, "unknown key"),
        ({"endpoint": "status"}, "http_status"),
        ({"endpoint": "serviceExecutionStatus", "outcome": "EXPLODED"}, "outcome"),
        ({"endpoint": "status", "outcome": "NOT_EXECUTED"}, "serviceExecutionStatus"),
        ({"endpoint": "serviceExecutionStatus", "outcome": "TIMED_OUT", "http_status": 500}, "http_status"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_fault_rules_are_refused(client: Client, rule: Any, problem: str) -> None:
    response = client.http.post(f"{client.url}/_sim/faults", json=rule, timeout=5)
    assert response.status_code == 400
    assert problem in response.json()["error"]
    assert client.http.get(f"{client.url}/_sim/faults", timeout=5).json() == []


def test_fault_body_that_is_not_json(client: Client) -> None:
    response = client.http.post(f"{client.url}/_sim/faults", data="{endpoint", timeout=5)
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]


# --- control --------------------------------------------------------------------------------------


def test_patch_merges_and_null_removes(client: Client, vins: list[str]) -> None:
    vin = vins[BEV]
    client.clock.advance(60)
    patch = {"doorLockState": "UNLOCKED", "position": {"heading": 90}, "sunroof": None, "chargingLevelHv": 80}
    response = client.http.patch(f"{client.url}/_sim/vehicles/{vin}/status", json=patch, timeout=5)
    assert response.status_code == 200
    patched = response.json()["vehicleStatus"]
    status = client.status(vin)
    assert patched == status
    assert status["doorLockState"] == "UNLOCKED" and status["chargingLevelHv"] == 80
    assert status["position"] == {"lat": 48.137462, "lon": 11.575382, "heading": 90, "status": "OK"}
    assert "sunroof" not in status
    assert status["updateTime"] == "2021-11-05T08:31:00+0000"
    client.http.patch(
        f"{client.url}/_sim/vehicles/{vin}/status", json={"updateTime": "2021-01-01T00:00:00+0000"}, timeout=5
    )
    assert client.status(vin)["updateTime"] == "2021-01-01T00:00:00+0000"
    assert client.log("/_sim") == []


@pytest.mark.parametrize(
    "vin_index,body,status",
    [
        (BEV, "{broken", 400),
        (BEV, "[1]", 400),
        (None, "{}", 404),
    ],
)
def test_bad_patches(client: Client, vins: list[str], vin_index: int | None, body: str, status: int) -> None:
    vin = vins[vin_index] if vin_index is not None else "NOPE"
    response = client.http.patch(
        f"{client.url}/_sim/vehicles/{vin}/status", data=body, headers={"Content-Type": "application/json"}, timeout=5
    )
    assert response.status_code == status and response.json()["error"]


def test_request_log_masks_secrets(client: Client, vins: list[str]) -> None:
    client.login(password="demo")
    client.execute(vins[BEV], "DOOR_UNLOCK", bmwSkAnswer="my-first-car")
    client.get(f"/user/vehicles/{vins[BEV]}/nothing")
    log = client.log()
    assert [(e["method"], e["status"]) for e in log] == [("POST", 200), ("POST", 200), ("GET", 404)]
    assert log[0]["path"] == "/gcdm/oauth/token"
    assert log[0]["form"]["password"] == "***" and log[0]["form"]["username"] == "demo@example.com"
    assert log[1]["form"] == {"serviceType": "DOOR_UNLOCK", "bmwSkAnswer": "***"}
    assert datetime.fromisoformat(log[0]["time"]) == START_WALL
    assert "my-first-car" not in json.dumps(client.sim_vehicles())
    assert client.http.delete(f"{client.url}/_sim/requests", timeout=5).status_code == 200
    assert client.log() == []


def test_sim_vehicles_lists_executions(client: Client, vins: list[str]) -> None:
    client.execute(vins[REX], "VEHICLE_FINDER")
    client.clock.advance(1)
    listed = {v["vin"]: v for v in client.sim_vehicles()}
    assert list(listed) == vins
    rex = listed[vins[REX]]
    assert rex["model"] == "i3 94 (+ REX)" and rex["driveTrain"] == "BEV_REX"
    assert rex["vehicleStatus"]["vin"] == vins[REX]
    assert [(e["serviceType"], e["status"]) for e in rex["executions"]] == [("VEHICLE_FINDER", "PENDING")]


def test_unknown_control_path(client: Client) -> None:
    assert client.http.get(f"{client.url}/_sim/whatever", timeout=5).status_code == 404
    assert client.http.put(f"{client.url}/_sim/faults", timeout=5).status_code == 405


# --- cars -----------------------------------------------------------------------------------------


def test_demo_vehicles_cycle_with_distinct_vins() -> None:
    cars = demo_vehicles(9, now=START_WALL)
    vins = [car.vin for car in cars]
    assert len(set(vins)) == 9 and all(len(vin) == 17 for vin in vins)
    assert [car.drive_train for car in cars[:5]] == ["BEV", "BEV_REX", "PHEV", "CONV", "BEV"]
    assert [car.vin for car in demo_vehicles(now=START_WALL)] == vins[:4]
    assert all(car.status["vin"] == car.vin for car in cars)
    cars[0].status["doorLockState"] = "UNLOCKED"
    cars[0].datasets["lastTrip"]["lastTrip"]["totalDistance"] = -1
    fresh = demo_vehicles(1, now=START_WALL)[0]
    assert fresh.status["doorLockState"] == "SECURED"
    assert fresh.datasets["lastTrip"]["lastTrip"]["totalDistance"] != -1
    assert cars[4].status["position"] is not cars[0].status["position"]


@pytest.mark.parametrize("count", [0, -3])
def test_demo_vehicles_refuses_silly_counts(count: int) -> None:
    with pytest.raises(SimulatorError, match=">= 1"):
        demo_vehicles(count)


def test_simulator_error_is_a_bridge_error() -> None:
    assert issubclass(SimulatorError, MqttBridgeError)


def test_build_vehicles_without_folders_gives_demo_cars() -> None:
    assert len(build_vehicles([], None)) == 4
    assert len(build_vehicles([], 6)) == 6


def test_duplicate_vins_refused_by_the_server() -> None:
    car = demo_vehicles(1)[0]
    with pytest.raises(SimulatorError, match="twice"):
        SimulatorServer([car, demo_vehicles(1)[0]])


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SimulatorError, match=f"cannot listen on 127.0.0.1:{port}"):
            SimulatorServer(demo_vehicles(1), port=port)


def test_context_manager_serves_and_stops() -> None:
    with SimulatorServer(demo_vehicles(1)) as server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
        assert requests.get(f"{server.url}/_sim/vehicles", timeout=5).status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{server.url}/_sim/vehicles", timeout=1)


# --- cars from capture folders --------------------------------------------------------------------


def _capture_folders(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("status.json"))


def test_every_capture_folder_loads_and_is_served(captures: Path, make_client: Any) -> None:
    folders = _capture_folders(captures)
    assert len(folders) >= 7
    cars = build_vehicles(folders, None)
    client = make_client(cars)
    listed = client.get("/user/vehicles").json()["vehicles"]
    assert [v["vin"] for v in listed] == [car.vin for car in cars]
    for folder, car in zip(folders, cars, strict=True):
        expected = json.loads((folder / "status.json").read_text(encoding="utf-8"))["vehicleStatus"]
        served = client.status(car.vin)
        assert {k: v for k, v in served.items() if k != "vin"} == {k: v for k, v in expected.items() if k != "vin"}, (
            folder.name
        )
        assert served["vin"] == car.vin


def test_capture_drive_trains_and_entries(captures: Path) -> None:
    loaded = {folder.name: load_vehicle_dir(folder) for folder in _capture_folders(captures)}
    trains = {name: car.drive_train for name, car in loaded.items()}
    assert trains["I01_NOREX"] == "BEV"
    assert trains["I01_REX"] == "BEV_REX"
    assert trains["G30_PHEV_OS7"] == "PHEV"
    assert trains["G31_NBTevo"] == "CONV" and trains["openhab_F31_318i"] == "CONV"
    f48 = loaded["F48"]  # its list is vehicles_single_F48.json, whose vin is "my_vin"
    assert f48.vin == "F48_VIN" and f48.entry["vin"] == "F48_VIN" and f48.model == "X1 sDrive18i"
    phev = loaded["openhab_G30_530e_PHEV"]
    assert phev.model == "530e iPerformance" and phev.entry["chargeNow"] == "NOT_SUPPORTED"
    rex = loaded["I01_REX"].entry  # synthesised
    assert rex["model"] == "I01_REX" and rex["bodytype"] == "I01" and rex["chargeNow"] == "ACTIVATED"
    assert rex["statisticsAvailable"] is False and rex["chargingControl"] == "NOT_SUPPORTED"
    os7 = loaded["G30_PHEV_OS7"].entry
    assert os7["chargingControl"] == "WEEKLY_PLANNER"
    assert os7["statisticsAvailable"] is True  # all_trips.json has content; last_trip.json is empty
    assert os7["lastDestinations"] == "NOT_SUPPORTED" and os7["rangeMap"] == "NOT_SUPPORTED"
    assert loaded["G31_NBTevo"].entry["chargeNow"] == "NOT_SUPPORTED"


def test_capture_datasets_are_served_as_they_are(captures: Path, make_client: Any) -> None:
    folder = captures / "G30_PHEV_OS7"
    client = make_client([load_vehicle_dir(folder)])
    vin = "G30_PHEV_OS7_VIN"
    files = {
        "statistics/lastTrip": "last_trip.json",
        "statistics/allTrips": "all_trips.json",
        "chargingprofile": "charging_profile.json",
        "destinations": "last_destinations.json",
        "rangemap": "range_maps.json",
    }
    for path, name in files.items():
        expected = json.loads((folder / name).read_text(encoding="utf-8"))
        assert client.get(f"/user/vehicles/{vin}/{path}").json() == expected, path


def test_capture_car_runs_a_command(captures: Path, make_client: Any) -> None:
    client = make_client([load_vehicle_dir(captures / "I01_REX")])
    assert _run_to_end(client, "I01_VIN", "CHARGE_NOW") == FLOW  # it is plugged in
    assert _run_to_end(client, "I01_VIN", "DOOR_UNLOCK") == FLOW
    assert client.status("I01_VIN")["doorLockState"] == "UNLOCKED"


def test_folder_without_status_json_names_the_alternatives(captures: Path) -> None:
    folder = captures / "openhab_I01_REX_2017"
    with pytest.raises(SimulatorError) as caught:
        load_vehicle_dir(folder)
    message = str(caught.value)
    assert str(folder) in message and "status.json" in message
    assert "status_charging.json" in message and "status_vehicle_secured.json" in message


def test_missing_folder_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(SimulatorError, match="does not exist"):
        load_vehicle_dir(tmp_path / "nope")
    with pytest.raises(SimulatorError, match=r"no status\.json"):
        load_vehicle_dir(tmp_path)
    (tmp_path / "status.json").write_text('{"vehicleStatus": {"vin": "X"')
    with pytest.raises(SimulatorError, match=re.escape(str(tmp_path / "status.json"))):
        load_vehicle_dir(tmp_path)
    (tmp_path / "status.json").write_text('{"something": 1}')
    with pytest.raises(SimulatorError, match="vehicleStatus"):
        load_vehicle_dir(tmp_path)
    (tmp_path / "status.json").write_text('{"vehicleStatus": {"vin": "X"}}')
    (tmp_path / "range_maps.json").write_text("nope")
    with pytest.raises(SimulatorError, match=r"range_maps\.json"):
        load_vehicle_dir(tmp_path)


def test_vehicle_list_entry_matching_the_status_vin_is_used(tmp_path: Path) -> None:
    folder = tmp_path / "my_car"
    folder.mkdir()
    status = {"vehicleStatus": {"vin": "B", "doorLockState": "LOCKED"}}
    (folder / "status.json").write_text(json.dumps(status))
    (folder / "vehicles.json").write_text(
        json.dumps(
            {
                "vehicles": [
                    {"vin": "A", "model": "first", "driveTrain": "CONV"},
                    {"vin": "B", "model": "second", "driveTrain": "PHEV"},
                ]
            }
        )
    )
    (folder / "destinations.json").write_text(json.dumps({"destinations": [{"lat": 1, "lon": 2}]}))
    car = load_vehicle_dir(folder)
    assert car.vin == "B" and car.model == "second" and car.drive_train == "PHEV"
    assert car.dataset_body("destinations") == {"destinations": [{"lat": 1, "lon": 2}]}
    (folder / "status.json").write_text(json.dumps({"vehicleStatus": {"doorLockState": "LOCKED"}}))
    car = load_vehicle_dir(folder)
    assert car.vin == "A" and car.status["vin"] == "A" and car.model == "first"
    (folder / "vehicles.json").unlink()
    car = load_vehicle_dir(folder)
    assert car.vin == "my_car" and car.entry["driveTrain"] == "CONV"
    assert car.entry["lastDestinations"] == "SUPPORTED" and car.entry["rangeMap"] == "NOT_SUPPORTED"


def test_duplicate_capture_vins_are_renamed(captures: Path, caplog: pytest.LogCaptureFixture) -> None:
    folders = [captures / name for name in ("openhab_F31_318i", "openhab_G30_530e_PHEV", "openhab_F31_318i")]
    with caplog.at_level(logging.WARNING, logger="mqttbridge.simulator"):
        cars = build_vehicles(folders, 3)
    assert [car.vin for car in cars] == ["ANONYMOUS", "ANONYMOUS_2", "ANONYMOUS_3"]
    assert [car.status["vin"] for car in cars] == ["ANONYMOUS", "ANONYMOUS_2", "ANONYMOUS_3"]
    assert cars[1].entry["vin"] == "ANONYMOUS_2"
    assert sum("ANONYMOUS" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records) == 2
