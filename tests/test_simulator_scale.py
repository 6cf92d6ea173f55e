"""The simulator at fleet size (issue 13): demo cars that keep no copy of their model until changed, a bounded
request log that still counts every request, and executions moved along without looking at every car."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime

from mqttbridge.simulator import demo_vehicles
from mqttbridge.simulator.server import Simulation
from mqttbridge.simulator.web import Request

NOW = datetime(2025, 6, 10, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _token(sim: Simulation) -> str:
    basic = base64.b64encode(b"k:s").decode()
    response = sim.handle(
        Request(
            "POST",
            "/webapi/oauth/token",
            headers={"authorization": f"Basic {basic}", "content-type": "application/x-www-form-urlencoded"},
            body=b"grant_type=password&username=demo%40example.com&password=demo",
        )
    )
    assert response.status == 200, response.body
    return str(json.loads(response.body)["access_token"])


def _get(sim: Simulation, token: str, path: str, query: dict[str, str] | None = None) -> tuple[int, object]:
    response = sim.handle(
        Request("GET", f"/webapi/v1/user{path}", query=query or {}, headers={"authorization": f"Bearer {token}"})
    )
    return response.status, json.loads(response.body)


def test_a_demo_car_answers_as_before_without_a_copy_of_its_own() -> None:
    cars = demo_vehicles(8, now=NOW)
    sim = Simulation(cars, wall_clock=lambda: NOW)
    token = _token(sim)
    for car in cars:
        status, body = _get(sim, token, f"/vehicles/{car.vin}/status")
        assert status == 200 and body["vehicleStatus"]["vin"] == car.vin
        for path in ("statistics/lastTrip", "chargingprofile"):
            assert _get(sim, token, f"/vehicles/{car.vin}/{path}")[0] == 200
    _, listing = _get(sim, token, "/vehicles")
    assert [entry["vin"] for entry in listing["vehicles"]] == [car.vin for car in cars]
    assert all(car._status is None and car._entry is None and car._datasets is None for car in cars), (
        "serving a car must not copy its model"
    )
    # the same answers a car with its own copy gives (the way every car was built before)
    own = copy.deepcopy(cars[1].status)
    assert cars[1]._status is not None and _get(sim, token, f"/vehicles/{cars[1].vin}/status")[1] == {
        "vehicleStatus": own
    }
    assert _get(sim, token, f"/vehicles/{cars[5].vin}/status")[1] == {"vehicleStatus": cars[5].status_view()}


def test_a_changed_demo_car_changes_alone() -> None:
    cars = demo_vehicles(8, now=NOW)  # cars 0 and 4 are of one model
    sim = Simulation(cars, wall_clock=lambda: NOW)
    token = _token(sim)
    cars[0].patch_status({"position": {"lat": 1.0}, "doorLockState": "UNLOCKED"}, NOW)
    _, mine = _get(sim, token, f"/vehicles/{cars[0].vin}/status")
    _, other = _get(sim, token, f"/vehicles/{cars[4].vin}/status")
    assert mine["vehicleStatus"]["position"]["lat"] == 1.0 and mine["vehicleStatus"]["doorLockState"] == "UNLOCKED"
    assert other["vehicleStatus"]["position"]["lat"] != 1.0 and other["vehicleStatus"]["doorLockState"] == "SECURED"
    assert cars[4]._status is None


def test_the_request_log_is_bounded_and_counts_every_request() -> None:
    cars = demo_vehicles(2, now=NOW)
    sim = Simulation(cars, wall_clock=lambda: NOW, log_limit=5)
    token = _token(sim)
    for _ in range(6):
        _get(sim, token, f"/vehicles/{cars[0].vin}/status", {"deviceTime": "x"})
    log = sim.request_log()
    assert len(log) == 5 and all(entry["path"].endswith("/status") for entry in log)
    assert log[-1] == {
        "method": "GET",
        "path": f"/webapi/v1/user/vehicles/{cars[0].vin}/status",
        "query": {"deviceTime": "x"},
        "form": {},
        "time": NOW.isoformat(),
        "status": 200,
    }
    count = sim.handle(Request("GET", "/_sim/requests/count"))
    assert json.loads(count.body) == {"count": 7, "kept": 5}
    sim.handle(Request("DELETE", "/_sim/requests"))
    assert json.loads(sim.handle(Request("GET", "/_sim/requests/count")).body) == {"count": 0, "kept": 0}


def test_the_token_request_is_logged_with_its_password_masked() -> None:
    sim = Simulation(demo_vehicles(1, now=NOW), wall_clock=lambda: NOW)
    _token(sim)
    (entry,) = sim.request_log()
    assert entry["form"]["password"] == "***" and entry["form"]["username"] == "demo@example.com"


def test_executions_end_in_order_with_many_cars() -> None:
    clock = Clock()
    cars = demo_vehicles(50, now=NOW)
    sim = Simulation(cars, execution_step=1.0, clock=clock, wall_clock=lambda: NOW)
    token = _token(sim)
    started = []
    for car in (cars[7], cars[3], cars[41]):
        response = sim.handle(
            Request(
                "POST",
                f"/webapi/v1/user/vehicles/{car.vin}/executeService",
                headers={"authorization": f"Bearer {token}", "content-type": "application/x-www-form-urlencoded"},
                body=b"serviceType=LIGHT_FLASH",
            )
        )
        assert response.status == 200, response.body
        started.append(car)
    assert len(sim._open) == 3
    clock.now += 3.0
    for car in started:
        _, body = _get(sim, token, f"/vehicles/{car.vin}/serviceExecutionStatus", {"serviceType": "LIGHT_FLASH"})
        assert body["executionStatus"]["status"] == "EXECUTED"
    assert sim._open == []
    assert [car.effects[0]["serviceType"] for car in started] == ["LIGHT_FLASH"] * 3
