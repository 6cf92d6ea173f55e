"""Logins that need the user: the retained login topic, one-time codes over MQTT, and `mqttbridge login`."""

from __future__ import annotations

import io
import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mqttbridge.backends.base import Backend
from mqttbridge.bridge import Bridge
from mqttbridge.errors import ActionRequiredError, AuthError
from mqttbridge.model import CommandRequest, DriveTrain, ExecutionUpdate, VehicleInfo, VehicleStatus

from .conftest import account_data, make_config
from .fake_session import FakeSession, Published

VIN = "KNAC0000000000001"
CODE = "492817"


class OtpBackend(Backend):
    """A vendor that wants a one-time code before anything else, like the Hyundai/Kia login does."""

    provider = "fake_otp"

    def __init__(self, account: Any, store: Any) -> None:
        super().__init__(account, store)
        self.logged_in = threading.Event()
        self.codes: list[str] = []

    def _check(self) -> None:
        if not self.logged_in.is_set():
            raise ActionRequiredError(
                "the vendor sent a one-time code by e-mail", kind="otp", details={"sent_to": "e-mail"}
            )

    def list_vehicles(self) -> list[VehicleInfo]:
        self._check()
        return [VehicleInfo(VIN, "EV6", "Kia", DriveTrain.BEV, commands={"lock": frozenset({"LOCK"})})]

    def read_status(self, vehicle: VehicleInfo, *, force: bool = False) -> VehicleStatus:
        self._check()
        return VehicleStatus(VIN, {"battery_level": 80, "door_lock_state": "LOCKED"}, fetched_at=datetime.now(UTC))

    def read_dataset(self, vehicle: VehicleInfo, name: str) -> Any:
        raise NotImplementedError

    def execute(self, vehicle: VehicleInfo, request: CommandRequest) -> ExecutionUpdate:
        raise NotImplementedError

    def execution_status(self, vehicle: VehicleInfo, started: ExecutionUpdate) -> ExecutionUpdate:
        raise NotImplementedError

    def submit_code(self, kind: str, code: str) -> None:
        self.codes.append(code)
        if kind != "otp" or code != CODE:
            raise AuthError("the vendor refused the code (wrong or expired)")
        self.logged_in.set()


def is_event(kind: str):
    def check(p: Published) -> bool:
        return p.topic == "car/bridge/event" and json.loads(p.text)["event"] == kind

    return check


@pytest.fixture
def desk(tmp_path: Path):
    config = make_config(
        tmp_path,
        [
            account_data(
                "http://127.0.0.1:9", name="kia", poll={"interval": 600}, vehicles=[{"vin": VIN, "name": "ev6"}]
            )
        ],
        mqtt={"base_topic": "car"},
    )
    from mqttbridge.statestore import StateStore

    backend = OtpBackend(config.accounts[0], StateStore(config.state_dir))
    bridge = Bridge(config, backends={"kia": backend}, session_factory=FakeSession)
    bridge.start()
    session = bridge.session
    assert isinstance(session, FakeSession)
    try:
        yield bridge, session, backend
    finally:
        bridge.stop()


def test_an_otp_demand_is_retained_on_the_login_topic_and_a_code_completes_it(desk, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    _bridge, session, backend = desk
    login = session.wait_for(lambda p: p.topic == "car/bridge/accounts/kia/login", what="the login topic")
    state = json.loads(login.text)
    assert login.retain and state["state"] == "action_required" and state["kind"] == "otp"
    assert state["sent_to"] == "e-mail" and state["accepts_code"] is True
    assert state["code_topic"] == "car/bridge/accounts/kia/otp/set"
    event = json.loads(session.wait_for(is_event("action_required")).text)
    assert event["account"] == "kia" and event["kind"] == "otp"
    assert "car/bridge/accounts/+/otp/set" in session.subscriptions
    # Home Assistant gets a text entity that writes the code there, and the login state
    configs = [json.loads(p.text) for p in session.since(0) if p.topic.startswith("homeassistant/") and p.payload]
    components = [c for config in configs for c in config.get("components", {}).values()]
    text = next(c for c in components if c["platform"] == "text")
    assert text["command_topic"] == "car/bridge/accounts/kia/otp/set" and text["max"] == 32
    assert any(c.get("state_topic") == "car/bridge/accounts/kia/login" for c in components)

    mark = session.mark()
    session.deliver("car/bridge/accounts/kia/otp/set", "735291")  # a wrong one
    failed = json.loads(session.wait_for(is_event("login_failed"), start=mark).text)
    assert "refused the code" in failed["error"]
    assert session.retained()["car/bridge/accounts/kia/login"] == login.text  # still waiting

    mark = session.mark()
    session.deliver("car/bridge/accounts/kia/otp/set", f" {CODE}\n")
    session.wait_for(is_event("login_completed"), start=mark)
    assert json.loads(session.retained()["car/bridge/accounts/kia/login"]) == {"state": "ok"}
    # the account goes on at once, not after its back-off
    session.wait_for(lambda p: p.topic == "car/ev6/availability" and p.text == "online", start=mark)
    assert backend.codes == ["735291", CODE]
    everything = "".join(p.text for p in session.since(0)) + caplog.text
    where = [line for line in everything.splitlines() if CODE in line]
    assert not where, where
    assert CODE not in everything and "735291" not in everything


@pytest.mark.parametrize(
    "payload,error",
    [
        ("12 34", "not a one-time code"),
        ("", "not a one-time code"),
        ("x" * 40, "not a one-time code"),
    ],
)
def test_junk_is_no_code(desk, payload: str, error: str) -> None:
    _bridge, session, backend = desk
    session.wait_for(lambda p: p.topic == "car/bridge/accounts/kia/login")
    mark = session.mark()
    session.deliver("car/bridge/accounts/kia/otp/set", payload)
    assert error in json.loads(session.wait_for(is_event("login_failed"), start=mark).text)["error"]
    assert backend.codes == []


def test_a_retained_code_is_never_used_and_is_deleted(desk) -> None:
    _bridge, session, backend = desk
    mark = session.mark()
    session.deliver("car/bridge/accounts/kia/otp/set", CODE, retain=True)
    session.wait_for(is_event("retained_command_ignored"), start=mark)
    assert session.since(mark, "car/bridge/accounts/kia/otp/set")[0].payload in (b"", "")
    assert backend.codes == []


def test_a_code_for_an_unknown_account_is_answered(desk) -> None:
    _bridge, session, backend = desk
    mark = session.mark()
    session.deliver("car/bridge/accounts/nope/otp/set", CODE)
    assert "no account 'nope'" in json.loads(session.wait_for(is_event("login_failed"), start=mark).text)["error"]
    assert backend.codes == []


def test_login_on_a_terminal(tmp_path: Path, monkeypatch, capsys) -> None:
    """`mqttbridge login -c config.yaml ACCOUNT` asks for the code the vendor sent and completes the login."""
    from mqttbridge import cli

    config = make_config(tmp_path, [account_data("http://127.0.0.1:9", name="kia")])
    made: list[OtpBackend] = []

    def fake_create(account: Any, store: Any, **_kwargs: Any) -> OtpBackend:
        made.append(OtpBackend(account, store))
        return made[-1]

    monkeypatch.setattr("mqttbridge.cli.accounts._load", lambda _args: config)  # where login finds it
    monkeypatch.setattr("mqttbridge.backends.create_backend", fake_create)
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{CODE}\n"))
    assert cli.main(["login", "-c", "unused.yaml", "kia"]) == 0
    out = capsys.readouterr().out
    assert "e-mail" in out and "logged in" in out and CODE not in out
    assert made[0].codes == [CODE]

    monkeypatch.setattr("sys.stdin", io.StringIO("000000\n"))
    assert cli.main(["login", "-c", "unused.yaml", "kia"]) == 1
    assert "refused the code" in capsys.readouterr().err
    assert cli.main(["login", "-c", "unused.yaml", "nope"]) == 2
