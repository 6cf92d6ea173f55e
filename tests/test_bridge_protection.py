"""Budgets, battery protection and alerts through a running bridge (in-process, real mosquitto)."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mqttbridge.backends.base import Backend
from mqttbridge.bridge import Bridge
from mqttbridge.config import parse_config
from mqttbridge.model import DriveTrain, ExecutionStatus, ExecutionUpdate, VehicleInfo, VehicleStatus
from mqttbridge.statestore import StateStore

from .mqtt_helpers import Mosquitto, Observer, retained_now

VIN = "KNAFAKE0000000001"


class FakeKia(Backend):
    """A backend with forced reads, like hyundai_kia, whose 12 V level the test sets."""

    provider = "hyundai_kia"

    def __init__(self, account, store, battery_12v: int = 80):
        super().__init__(account, store)
        self.battery_12v = battery_12v
        self.forced = 0
        self.cached = 0
        self.requests = []

    def list_vehicles(self):
        return [
            VehicleInfo(
                VIN,
                "EV6",
                "Kia",
                DriveTrain.BEV,
                commands={
                    "refresh": frozenset({"PRESS"}),
                    "force_refresh": frozenset({"PRESS"}),
                    "lock": frozenset({"LOCK"}),
                    "charge_limit": frozenset({"SET"}),
                },
            )
        ]

    def read_status(self, vehicle, *, force=False):
        if force:
            self.forced += 1
        else:
            self.cached += 1
        return VehicleStatus(
            VIN,
            {
                "battery_12v": self.battery_12v,
                "odometer": 1000 + self.forced,
                "door_lock_state": "LOCKED",
                "ev_charge_limits_dc": 90,
            },
            None,
            datetime.now().astimezone(),
        )

    def read_dataset(self, vehicle, name):
        raise NotImplementedError

    def execute(self, vehicle, request):
        self.requests.append(request)
        return ExecutionUpdate(ExecutionStatus.INITIATED, request.command, "a1")

    def execution_status(self, vehicle, started):
        return ExecutionUpdate(ExecutionStatus.NOT_EXECUTED, "lock", "a1")


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []
    arrived = threading.Condition()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with Hook.arrived:
            Hook.received.append(json.loads(body))
            Hook.arrived.notify_all()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hook():
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alert"
    server.shutdown()
    server.server_close()


def _start(
    tmp_path: Path,
    broker: Mosquitto,
    *,
    battery: int,
    quiet: str | None,
    budget: int | None = None,
    hook_url: str | None = None,
):
    poll = {"quiet_hours": quiet, "min_battery_12v": 50, "daily_budget": budget, "command_reserve": 2}
    data = {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "client_id": "protect-test"},
        "state_dir": str(tmp_path / "state"),
        "notify": [{"type": "webhook", "url": hook_url}] if hook_url else [],
        "accounts": [
            {
                "name": "kia",
                "provider": "hyundai_kia",
                "brand": "kia",
                "region": "europe",
                "username": "me",
                "password": "pw-secret",
                "poll": poll,
                "commands": {"poll_interval": 0.1, "refresh_delay": 0, "timeout": 10},
                "vehicles": [{"vin": VIN, "name": "ev6"}],
            }
        ],
    }
    config = parse_config(data, env={}, base_dir=tmp_path)
    fake = FakeKia(config.accounts[0], StateStore(config.state_dir), battery_12v=battery)
    bridge = Bridge(config, backends={"kia": fake})
    bridge.start()
    return bridge, fake


def _press(obs: Observer, command: str) -> dict:
    """Press and return this press's final record (not an earlier retained one)."""
    request_id = uuid.uuid4().hex[:8]
    mark = obs.mark()
    obs.publish(f"car/ev6/{command}/set", json.dumps({"action": "PRESS", "request_id": request_id}))
    msg = obs.wait_for(
        lambda m: (
            m.topic == f"car/ev6/{command}/execution"
            and json.loads(m.payload)["request_id"] == request_id
            and json.loads(m.payload)["status"] in ("REJECTED", "EXECUTED", "FAILED")
        ),
        start=mark,
    )
    return json.loads(msg.payload)


def _skipped(obs: Observer, mark: int) -> list[dict]:
    return [
        json.loads(m.payload)
        for m in obs.since(mark, "car/bridge/event")
        if json.loads(m.payload)["event"] == "forced_read_skipped"
    ]


def test_forced_read_refused_below_the_12v_threshold(tmp_path: Path, broker) -> None:
    obs = Observer(broker.port)
    bridge, fake = _start(tmp_path, broker, battery=40, quiet=None)
    try:
        obs.wait_topic("car/ev6/battery_12v", "40")
        mark = obs.mark()
        record = _press(obs, "force_refresh")
        assert record["status"] == "REJECTED" and "12 V battery was last at 40 %" in record["error"]
        obs.wait_for(lambda m: m.topic == "car/bridge/event" and "forced_read_skipped" in m.text, start=mark)
        assert "below min_battery_12v" in _skipped(obs, mark)[0]["reason"]
        assert fake.forced == 0
    finally:
        bridge.stop()
        obs.close()


def test_forced_read_refused_in_quiet_hours_and_allowed_outside(tmp_path: Path, broker) -> None:
    now = datetime.now().astimezone()
    around_now = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=1)):%H:%M}"
    obs = Observer(broker.port)
    bridge, fake = _start(tmp_path, broker, battery=80, quiet=around_now)
    try:
        obs.wait_topic("car/ev6/availability", "online")
        mark = obs.mark()
        record = _press(obs, "force_refresh")
        assert record["status"] == "REJECTED" and "quiet hours" in record["error"]
        obs.wait_for(lambda m: m.topic == "car/bridge/event" and "forced_read_skipped" in m.text, start=mark)
        assert fake.forced == 0
    finally:
        bridge.stop()
        obs.close()
    obs = Observer(broker.port)
    (tmp_path / "b").mkdir()
    bridge, fake = _start(tmp_path / "b", broker, battery=80, quiet=None)
    try:
        obs.wait_topic("car/ev6/availability", "online")
        record = _press(obs, "force_refresh")
        assert record["status"] == "EXECUTED", record
        assert fake.forced == 1
    finally:
        bridge.stop()
        obs.close()


def test_budget_topic_exhaustion_alert_and_the_command_reserve(tmp_path: Path, broker, hook: str) -> None:
    obs = Observer(broker.port)
    bridge, fake = _start(tmp_path, broker, battery=80, quiet=None, budget=6, hook_url=hook)
    try:
        obs.wait_topic("car/ev6/availability", "online")  # list + first read: 2 calls
        assert _press(obs, "refresh")["status"] == "EXECUTED"
        assert _press(obs, "refresh")["status"] == "EXECUTED"  # 4 used: reads stop (2 kept for commands)
        refused = _press(obs, "refresh")
        assert refused["status"] == "FAILED" and "budget" in refused["error"]
        budget = json.loads(
            retained_now(broker.port, "car/bridge/accounts/kia/budget")["car/bridge/accounts/kia/budget"]
        )
        assert set(budget) >= {"limit", "used", "remaining", "by_kind", "resets_at"}
        assert budget["limit"] == 6 and budget["used"] == 4 and budget["by_kind"]["cached_read"] == 4
        assert fake.cached == 3  # the refused read never reached the vendor
        with Hook.arrived:
            Hook.arrived.wait_for(lambda: any(a["kind"] == "budget_exhausted" for a in Hook.received), 10)
        mark = obs.mark()
        obs.publish("car/ev6/lock/set", "LOCK")  # the reserve still serves a command
        obs.wait_for(lambda m: m.topic == "car/ev6/lock/status" and m.text == "NOT_EXECUTED", start=mark)
        with Hook.arrived:
            Hook.arrived.wait_for(lambda: any(a["kind"] == "command_failed" for a in Hook.received), 10)
        alert = next(a for a in Hook.received if a["kind"] == "budget_exhausted")
        assert alert["account"] == "kia" and "pw-secret" not in json.dumps(Hook.received)
    finally:
        bridge.stop()
        obs.close()


def test_a_single_charge_limit_keeps_the_other_one(tmp_path: Path, broker) -> None:
    obs = Observer(broker.port)
    bridge, fake = _start(tmp_path, broker, battery=80, quiet=None)
    try:
        obs.wait_topic("car/ev6/availability", "online")
        mark = obs.mark()
        obs.publish("car/ev6/charge_limit/set", '{"ac": 80}')  # what Home Assistant's AC slider sends
        obs.wait_for(lambda m: m.topic == "car/ev6/charge_limit/status" and m.text == "NOT_EXECUTED", start=mark)
        assert fake.requests[-1].params == {"ac": 80, "dc": 90}
    finally:
        bridge.stop()
        obs.close()
