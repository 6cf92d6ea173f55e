"""A login the backend completes on its own (a device code polled in the background, CONTRACT §9), and a
read-only provider's refusals: the core's side, with an in-memory session and a stand-in backend."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mqttbridge.backends.base import Backend
from mqttbridge.bridge import Bridge
from mqttbridge.errors import ActionRequiredError
from mqttbridge.model import CommandRequest, DriveTrain, ExecutionUpdate, VehicleInfo, VehicleStatus
from mqttbridge.statestore import StateStore

from .conftest import make_config
from .fake_session import FakeSession, Published

VIN = "WBA00000000000001"
LOGIN = "car/bridge/accounts/bmw/login"


def code(user_code: str) -> ActionRequiredError:
    return ActionRequiredError(
        "open the link and enter the code to let mqttbridge read this BMW account",
        kind="device_code",
        details={
            "user_code": user_code,
            "verification_uri": "https://customer.bmwgroup.com/oneid/link",
            "expires_at": "2026-11-29T12:05:00+00:00",
        },
    )


class DeviceCodeBackend(Backend):
    """Like CarData: no token yet, so every call says which code to enter, until the test approves it."""

    provider = "bmw_cardata"

    def __init__(self, account: Any, store: Any) -> None:
        super().__init__(account, store)
        self.pending: ActionRequiredError | None = code("AAAA1111")
        self.lock = threading.Lock()
        self.lists = 0
        self.refreshes = 0

    def _check(self) -> None:
        with self.lock:
            if self.pending is not None:
                raise self.pending

    # what the backend's polling thread does
    def new_code(self, user_code: str) -> None:
        with self.lock:
            self.pending = code(user_code)
        assert self.login_listener is not None
        self.login_listener.login_required(self.pending)

    def approved(self) -> None:
        with self.lock:
            self.pending = None
        assert self.login_listener is not None
        self.login_listener.login_completed()

    def list_vehicles(self) -> list[VehicleInfo]:
        self._check()
        self.lists += 1
        return [VehicleInfo(VIN, "i4 M50", "BMW", DriveTrain.BEV, commands={"refresh": frozenset({"PRESS"})})]

    def read_status(self, vehicle: VehicleInfo, *, force: bool = False) -> VehicleStatus:
        self._check()
        return VehicleStatus(VIN, {"battery_level": 74}, fetched_at=datetime.now(UTC))

    def refresh_status(self, vehicle: VehicleInfo) -> VehicleStatus:
        self.refreshes += 1  # a user's refresh: a pushing backend must ask the vendor, not its stream
        return self.read_status(vehicle)

    def read_dataset(self, vehicle: VehicleInfo, name: str) -> Any:
        raise NotImplementedError

    def execute(self, vehicle: VehicleInfo, request: CommandRequest) -> ExecutionUpdate:
        raise AssertionError("a read-only provider's backend must never be asked to execute")

    def execution_status(self, vehicle: VehicleInfo, started: ExecutionUpdate) -> ExecutionUpdate:
        raise AssertionError("never asked")


@pytest.fixture
def running(tmp_path: Path):
    config = make_config(
        tmp_path,
        [
            {
                "name": "bmw",
                "provider": "bmw_cardata",
                "client_id": "5f6b7c1e-0000-4000-8000-000000000000",
                "vehicles": [{"vin": VIN, "name": "i4"}],
            }
        ],
        mqtt={"base_topic": "car"},
    )
    backend = DeviceCodeBackend(config.accounts[0], StateStore(config.state_dir))
    bridge = Bridge(config, backends={"bmw": backend}, session_factory=FakeSession)
    bridge.start()
    session = bridge.session
    assert isinstance(session, FakeSession)
    try:
        yield bridge, session, backend
    finally:
        bridge.stop()


def on(topic: str):
    def check(p: Published) -> bool:
        return p.topic == topic

    return check


def test_a_new_code_is_shown_at_once_and_an_approval_reads_the_car_without_waiting_out_a_back_off(running) -> None:
    _bridge, session, backend = running
    first = json.loads(session.wait_for(on(LOGIN), what="the first code").text)
    assert first["state"] == "action_required" and first["kind"] == "device_code"
    assert first["user_code"] == "AAAA1111" and first["verification_uri"].startswith("https://")
    event = json.loads(session.wait_for(lambda p: p.topic == "car/bridge/event" and '"action_required"' in p.text).text)
    assert event["kind"] == "device_code" and event["user_code"] == "AAAA1111"

    # the code expired: the backend asked for another; the retained topic shows it at once (the account's
    # listing is in a back-off of 30 s and more, which the test does not wait out)
    mark = session.mark()
    backend.new_code("BBBB2222")
    second = json.loads(session.wait_for(on(LOGIN), start=mark, what="the new code").text)
    assert second["user_code"] == "BBBB2222" and second["kind"] == "device_code"
    backend.new_code("BBBB2222")  # the same code again: not published again
    assert len(session.since(mark, LOGIN)) == 1

    mark = session.mark()
    backend.approved()
    ok = json.loads(session.wait_for(on(LOGIN), start=mark, what="the login ok").text)
    assert ok == {"state": "ok"}
    state = json.loads(session.wait_for(on("car/i4/state"), start=mark, what="the first read").text)
    assert state["battery_level"] == 74
    assert backend.lists == 1


def test_the_home_assistant_login_entity_shows_the_code_and_the_link(running) -> None:
    _bridge, session, _backend = running
    session.wait_for(on(LOGIN))
    configs = [json.loads(p.text) for p in session.since(0) if p.topic.startswith("homeassistant/") and p.payload]
    components = [c for config in configs for c in config.get("components", {}).values()]
    login = next(c for c in components if c.get("state_topic") == LOGIN)
    template = login["value_template"]
    assert "user_code" in template and "verification_uri" in template and "value_json.state" in template
    assert login["json_attributes_topic"] == LOGIN
    # the account takes no typed code: no text entity for one
    assert not any(c["platform"] == "text" for c in components)


def test_a_read_only_provider_refuses_every_command_but_refresh(running) -> None:
    _bridge, session, backend = running
    backend.approved()
    session.wait_for(on("car/i4/state"), what="the first read")
    for command, payload in (("lock", "LOCK"), ("climate", "ON"), ("horn", "PRESS"), ("charging", "OFF")):
        mark = session.mark()
        session.deliver(f"car/i4/{command}/set", payload)
        record = json.loads(session.wait_for(on(f"car/i4/{command}/execution"), start=mark).text)
        assert record["status"] == "REJECTED"
        assert record["error"].startswith("read-only provider"), record["error"]
    mark = session.mark()
    session.deliver("car/i4/refresh/set", "PRESS")
    record = json.loads(
        session.wait_for(
            lambda p: p.topic == "car/i4/refresh/execution" and '"EXECUTED"' in p.text, start=mark, what="refresh"
        ).text
    )
    assert record["error"] is None
    assert backend.refreshes == 1  # through refresh_status, not a scheduled read
