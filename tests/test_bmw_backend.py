"""The BMW backend against the simulator over real HTTP on loopback."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import requests

from mqttbridge.backends import create_backend
from mqttbridge.backends.base import RetryPolicy
from mqttbridge.errors import (
    ApiGoneError,
    AuthError,
    BadResponseError,
    CommandOutcomeUnknown,
    ConnectionFailed,
    RateLimitedError,
    ServerError,
    UnsupportedError,
)
from mqttbridge.model import CommandRequest, ExecutionStatus
from mqttbridge.statestore import StateStore

from .conftest import account_data, make_config
from .mqtt_helpers import wait_until

BEV, REX, PHEV, PETROL = range(4)


class Sleeps(list):
    """Records the back-off the backend asked for instead of waiting it out."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def make_backend(sim, tmp_path: Path):
    created = []

    def make(**overrides):
        config = make_config(tmp_path, [account_data(sim.url, **overrides)])
        sleeps = Sleeps()
        backend = create_backend(
            config.accounts[0],
            StateStore(config.state_dir),
            sleep=sleeps,
            policy=RetryPolicy(attempts=4, backoff_initial=0.5, backoff_max=2.0),
        )
        backend.sleeps = sleeps
        created.append(backend)
        return backend

    yield make
    for backend in created:
        backend.close()


@pytest.fixture
def backend(make_backend):
    return make_backend()


def _vehicle(backend, index: int):
    return backend.list_vehicles()[index]


def test_login_then_token_reused_and_stored_0600(backend, sim, tmp_path: Path) -> None:
    vehicles = backend.list_vehicles()
    assert len(vehicles) == 4
    backend.read_status(vehicles[0])
    backend.read_status(vehicles[1])
    assert len(sim.requests("/oauth/token")) == 1
    assert backend.api.logins == 1
    token_file = tmp_path / "state" / "tokens" / "bmw.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    # a new process with the same state_dir reuses the stored token: no second login
    login = sim.requests("/oauth/token")[0]
    assert login["form"]["password"] == "***" and login["form"]["grant_type"] == "password"


def test_stored_token_survives_a_restart(make_backend, sim) -> None:
    make_backend().list_vehicles()
    second = make_backend()
    second.list_vehicles()
    assert second.api.logins == 0
    assert len(sim.requests("/oauth/token")) == 1


def test_gcdm_token_endpoint(make_backend, sim) -> None:
    make_backend(token_endpoint="gcdm").list_vehicles()
    assert [r["path"] for r in sim.requests("oauth")] == ["/gcdm/oauth/token"]


def test_relogin_once_after_401(backend, sim) -> None:
    vehicle = _vehicle(backend, BEV)
    requests.post(f"{sim.url}/_sim/tokens/revoke", timeout=5).raise_for_status()
    status = backend.read_status(vehicle)
    assert status.fields["battery_level"] is not None
    assert len(sim.requests("/oauth/token")) == 2
    assert backend.api.logins == 2


def test_wrong_password_is_one_login_not_a_storm(make_backend, sim) -> None:
    backend = make_backend(password="wrong-password-123")
    with pytest.raises(AuthError) as first:
        backend.list_vehicles()
    with pytest.raises(AuthError, match="not trying again"):
        backend.list_vehicles()
    assert len(sim.requests("/oauth/token")) == 1
    assert "wrong-password-123" not in str(first.value)
    assert backend.sleeps == []


def test_every_dataset(backend, sim) -> None:
    for vehicle in backend.list_vehicles():
        for name in sorted(vehicle.datasets):
            data = backend.read_dataset(vehicle, name)
            assert isinstance(data, dict | list), name
    i3 = _vehicle(backend, BEV)
    assert i3.datasets == {"last_trip", "all_trips", "charging_profile", "destinations", "range_map"}
    assert "weeklyPlanner" in backend.read_dataset(i3, "charging_profile")
    paths = {r["path"].rsplit(i3.vin + "/", 1)[-1] for r in sim.requests(i3.vin)}
    assert {"statistics/lastTrip", "statistics/allTrips", "chargingprofile", "destinations", "rangemap"} <= paths


def test_unsupported_dataset_is_never_requested(backend, sim) -> None:
    petrol = _vehicle(backend, PETROL)
    assert "charging_profile" not in petrol.datasets
    sim.clear_requests()
    with pytest.raises(UnsupportedError):
        backend.read_dataset(petrol, "charging_profile")
    assert sim.requests() == []


def _run(backend, sim, vehicle, request: CommandRequest) -> list[ExecutionStatus]:
    started = backend.execute(vehicle, request)
    seen = [started.status]
    assert started.event_id and started.event_id.endswith("@bmw.de")
    for _ in range(10):
        if seen[-1].final:
            break
        sim.clock.advance(1.0)
        seen.append(backend.execution_status(vehicle, started).status)
    return seen


FLOW = [ExecutionStatus.INITIATED, ExecutionStatus.PENDING, ExecutionStatus.DELIVERED, ExecutionStatus.EXECUTED]


@pytest.mark.parametrize(
    "index,request_,service",
    [
        (BEV, CommandRequest("lock", "LOCK"), "DOOR_LOCK"),
        (BEV, CommandRequest("lock", "UNLOCK"), "DOOR_UNLOCK"),
        (BEV, CommandRequest("climate", "ON"), "CLIMATE_NOW"),
        (BEV, CommandRequest("flash_lights", "PRESS", {"count": 2}), "LIGHT_FLASH"),
        (BEV, CommandRequest("horn", "PRESS"), "HORN_BLOW"),
        (BEV, CommandRequest("find_vehicle", "PRESS"), "VEHICLE_FINDER"),
        (
            BEV,
            CommandRequest(
                "charging_profile",
                "SET",
                {"profile": {"chargingMode": "IMMEDIATE_CHARGING", "climatizationEnabled": False}},
            ),
            "CHARGING_CONTROL",
        ),
    ],
)
def test_every_command_to_executed(backend, sim, index, request_, service) -> None:
    vehicle = _vehicle(backend, index)
    assert _run(backend, sim, vehicle, request_) == FLOW
    posts = sim.requests("executeService")
    assert [p["form"]["serviceType"] for p in posts] == [service]
    if service == "LIGHT_FLASH":
        assert posts[0]["form"]["count"] == "2"
    if service == "CHARGING_CONTROL":
        assert json.loads(posts[0]["form"]["data"]) == {
            "weeklyPlanner": {"chargingMode": "IMMEDIATE_CHARGING", "climatizationEnabled": False}
        }


def test_lock_and_charge_change_the_car(backend, sim) -> None:
    vehicle = _vehicle(backend, BEV)
    assert _run(backend, sim, vehicle, CommandRequest("lock", "UNLOCK"))[-1] is ExecutionStatus.EXECUTED
    assert backend.read_status(vehicle).fields["door_lock_state"] == "UNLOCKED"
    assert _run(backend, sim, vehicle, CommandRequest("lock", "LOCK"))[-1] is ExecutionStatus.EXECUTED
    assert backend.read_status(vehicle).fields["door_lock_state"] == "SECURED"


def test_charge_now_on_a_plugged_car(backend, sim) -> None:
    plugged = next(
        v
        for v in backend.list_vehicles()
        if v.supports("charging", "ON") and backend.read_status(v).fields.get("plugged_in")
    )
    assert _run(backend, sim, plugged, CommandRequest("charging", "ON")) == FLOW
    assert backend.read_status(plugged).fields["charging_status"] == "CHARGING"


@pytest.mark.parametrize("outcome", ["NOT_EXECUTED", "TIMED_OUT"])
def test_vendor_outcomes(backend, sim, outcome: str) -> None:
    vehicle = _vehicle(backend, BEV)
    sim.fault(endpoint="serviceExecutionStatus", outcome=outcome, count=1)
    seen = _run(backend, sim, vehicle, CommandRequest("lock", "LOCK"))
    assert seen[-1] is ExecutionStatus(outcome)
    assert seen[:-1] == FLOW[:3]


def test_unsupported_command_never_reaches_the_vendor(backend, sim) -> None:
    petrol = _vehicle(backend, PETROL)
    sim.clear_requests()
    with pytest.raises(UnsupportedError):
        backend.execute(petrol, CommandRequest("charging", "ON"))
    with pytest.raises(UnsupportedError):
        backend.execute(petrol, CommandRequest("climate", "OFF"))
    assert sim.requests("executeService") == []


def test_500_twice_then_success(backend, sim) -> None:
    vehicle = _vehicle(backend, BEV)
    sim.fault(endpoint="status", http_status=500, count=2)
    status = backend.read_status(vehicle)
    assert status.fields["odometer"] > 0
    assert [r["status"] for r in sim.requests("/status")] == [500, 500, 200]
    assert len(backend.sleeps) == 2 and all(0 < s <= 2.5 for s in backend.sleeps)


def test_500_until_attempts_run_out(backend, sim) -> None:
    vehicle = _vehicle(backend, BEV)
    sim.fault(endpoint="status", http_status=500, count=10)
    with pytest.raises(ServerError, match="server panic"):
        backend.read_status(vehicle)
    assert len(sim.requests("/status")) == 4


def test_execution_status_tolerates_a_server_panic(backend, sim) -> None:
    vehicle = _vehicle(backend, BEV)
    started = backend.execute(vehicle, CommandRequest("lock", "LOCK"))
    sim.fault(endpoint="serviceExecutionStatus", http_status=500, count=1)
    sim.clock.advance(1.0)
    assert backend.execution_status(vehicle, started).status is ExecutionStatus.PENDING


def test_429_honours_retry_after(backend, sim) -> None:
    vehicle = _vehicle(backend, BEV)
    sim.fault(endpoint="status", http_status=429, count=1, retry_after=7)
    backend.read_status(vehicle)
    assert backend.sleeps == [7.0]


def test_429_with_a_long_retry_after_is_raised_for_the_scheduler(backend, sim) -> None:
    vehicle = _vehicle(backend, BEV)
    sim.fault(endpoint="status", http_status=429, count=1, retry_after=3600)
    with pytest.raises(RateLimitedError) as caught:
        backend.read_status(vehicle)
    assert caught.value.retry_after == 3600
    assert backend.sleeps == []


def test_410_html_page(backend, sim) -> None:
    vehicle = _vehicle(backend, BEV)
    sim.fault(endpoint="status", http_status=410, count=1)
    with pytest.raises(ApiGoneError, match="410"):
        backend.read_status(vehicle)
    assert len(sim.requests("/status")) == 1  # gone is gone: not retried


def test_non_json_body(backend, sim) -> None:
    vehicle = _vehicle(backend, BEV)
    sim.fault(endpoint="status", http_status=200, count=1, body="<<not json>>", content_type="text/plain")
    with pytest.raises(BadResponseError, match="not JSON"):
        backend.read_status(vehicle)


def test_command_500_is_reported_not_resent(backend, sim) -> None:
    vehicle = _vehicle(backend, BEV)
    sim.fault(endpoint="executeService", http_status=500, count=1)
    with pytest.raises(ServerError, match="HTTP 500"):
        backend.execute(vehicle, CommandRequest("lock", "UNLOCK"))
    assert len(sim.requests("executeService")) == 1


def test_command_429_was_refused_so_it_is_retried(backend, sim) -> None:
    vehicle = _vehicle(backend, BEV)
    sim.fault(endpoint="executeService", http_status=429, count=1, retry_after=1)
    assert backend.execute(vehicle, CommandRequest("lock", "LOCK")).status is ExecutionStatus.INITIATED
    assert [r["status"] for r in sim.requests("executeService")] == [429, 200]


def test_command_timeout_after_sending_is_outcome_unknown(make_backend, sim) -> None:
    backend = make_backend(timeout=1)
    vehicle = backend.list_vehicles()[BEV]
    sim.fault(endpoint="executeService", http_status=200, count=1, delay=3)
    with pytest.raises(CommandOutcomeUnknown, match="not sent again"):
        backend.execute(vehicle, CommandRequest("lock", "UNLOCK"))
    assert len(sim.requests("executeService")) <= 1


def test_unreachable_server_for_a_command_is_retried_then_reported(tmp_path: Path) -> None:
    from mqttbridge.simulator.ports import free_port

    port = free_port()  # nobody listens on it, and no connection's own source port can be it
    config = make_config(tmp_path, [account_data(f"http://127.0.0.1:{port}")])
    sleeps = Sleeps()
    backend = create_backend(
        config.accounts[0], StateStore(config.state_dir), sleep=sleeps, policy=RetryPolicy(attempts=3)
    )
    with pytest.raises(ConnectionFailed) as caught:
        backend.list_vehicles()
    assert caught.value.sent is False and len(sleeps) == 2


def test_unlock_carries_the_security_answer(make_backend, sim) -> None:
    backend = make_backend(security_answer="my-first-car")
    vehicle = backend.list_vehicles()[BEV]
    backend.execute(vehicle, CommandRequest("lock", "UNLOCK"))
    backend.execute(vehicle, CommandRequest("lock", "LOCK"))
    forms = [r["form"] for r in sim.requests("executeService")]
    assert forms[0]["bmwSkAnswer"] == "***"
    assert "bmwSkAnswer" not in forms[1]


def test_unreadable_token_file_is_set_aside(make_backend, sim, tmp_path: Path) -> None:
    tokens = tmp_path / "state" / "tokens"
    tokens.mkdir(parents=True)
    (tokens / "bmw.json").write_text("{not json")
    backend = make_backend()
    backend.list_vehicles()
    assert backend.api.logins == 1
    assert any(p.name.startswith("bmw.json.corrupt-") for p in tokens.iterdir())
    assert json.loads((tokens / "bmw.json").read_text())["access_token"]
    assert os.stat(tokens / "bmw.json").st_mode & 0o077 == 0


def test_closing_the_backend_ends_a_read_that_is_backing_off(sim, tmp_path: Path) -> None:
    """A stopping daemon must not wait out a failing vendor's retries (5 tries, up to 30 s apart)."""
    import threading

    from mqttbridge.errors import BackendError

    config = make_config(tmp_path, [account_data(sim.url)])
    backend = create_backend(
        config.accounts[0],
        StateStore(config.state_dir),
        policy=RetryPolicy(attempts=5, backoff_initial=600.0, backoff_max=600.0),
    )
    vehicle = backend.list_vehicles()[0]
    sim.fault(endpoint="status", http_status=500, count=10)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: _capture(outcome, backend.read_status, vehicle))
    reader.start()
    wait_until(lambda: sim.requests(f"{vehicle.vin}/status"), what="the first failed read")
    backend.close()  # now waiting out a back-off of at least 600 s
    reader.join(30)
    assert not reader.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], BackendError)
    assert len(sim.requests(f"{vehicle.vin}/status")) <= 2  # no retry after the close


def _capture(outcome: list, func, *args) -> None:
    try:
        func(*args)
    except BaseException as exc:
        outcome.append(exc)
