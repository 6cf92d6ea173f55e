"""The daemon started, killed and started again on one state_dir, against a simulator on a test clock."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import requests

from mqttbridge.simulator import SimulatorServer, demo_vehicles

from .conftest import FakeClock
from .mqtt_helpers import Daemon

BASE = "car"
NAMES = ("i3", "i3_rex", "530e", "x1")


def start_vendor(real_time_step: float | None = None) -> SimulatorServer:
    """The simulator on a clock the test moves: an execution stays where it is until the test says. With
    ``real_time_step``, on the real clock: each step of an execution takes that long."""
    cars = demo_vehicles()
    if real_time_step is not None:
        server = SimulatorServer(cars, execution_step=real_time_step)
    else:
        clock = FakeClock()
        server = SimulatorServer(cars, execution_step=1.0, clock=clock)
        server.clock = clock
    server.start()
    server.cars = cars
    return server


def vendor_requests(vendor, part: str) -> list[dict]:
    return [r for r in requests.get(f"{vendor.url}/_sim/requests", timeout=5).json() if part in r["path"]]


def vendor_fault(vendor, **rule) -> None:
    requests.post(f"{vendor.url}/_sim/faults", json=rule, timeout=5).raise_for_status()


def config_for(broker, vendor, state_dir: Path, *, names=("i3",), vehicle: dict | None = None, **top) -> dict:
    vehicles = [
        {"vin": car.vin, "name": name, "allow_unlock": True, **(vehicle or {})}
        for car, name in zip(vendor.cars, NAMES, strict=True)
        if name in names
    ]
    return {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "base_topic": BASE, "client_id": "bridge-under-test"},
        "state_dir": str(state_dir),
        "log_level": "DEBUG",
        "accounts": [
            {
                "name": "sim",
                "provider": "bmw_legacy",
                "base_url": vendor.url,
                "username": "demo@example.com",
                "password": "demo",
                "api_key": "key",
                "api_secret": "secret-of-the-app",
                "retries": 2,
                "timeout": 20,
                "poll": {"interval": 600, "offline_after": 2},
                "commands": {"poll_interval": 0.1, "timeout": 60, "refresh_delay": 0},
                "vehicles": vehicles,
            }
        ],
        **top,
    }


def record(msg) -> dict:
    return json.loads(msg.payload)


def is_record(request_id: str, status: str | None = None, command: str = "lock", root: str = f"{BASE}/i3"):
    """A predicate for the record of one request on ``<root>/<command>/execution``."""

    def check(msg) -> bool:
        if msg.topic != f"{root}/{command}/execution" or not msg.payload:
            return False
        data = record(msg)
        return data["request_id"] == request_id and (status is None or data["status"] == status)

    return check


def is_event(kind: str, **fields):
    def check(msg) -> bool:
        if msg.topic != f"{BASE}/bridge/event":
            return False
        data = record(msg)
        return data["event"] == kind and all(data.get(k) == v for k, v in fields.items())

    return check


class Run:
    """Daemons started one after another on the same state_dir; their logs kept apart."""

    def __init__(self, tmp_path: Path, config: dict):
        self.tmp_path = tmp_path
        self.state = tmp_path / "state"
        self.config = config
        self.daemons: list[Daemon] = []

    def start(self, config: dict | None = None) -> Daemon:
        folder = self.tmp_path / f"run{len(self.daemons)}"
        folder.mkdir()
        daemon = Daemon(folder, config or self.config)
        daemon.start()
        self.daemons.append(daemon)
        return daemon

    def logs(self) -> str:
        return "\n".join(f"--- run {i} ---\n{d.tail()}" for i, d in enumerate(self.daemons))

    def close(self) -> None:
        for daemon in self.daemons:
            if daemon.alive():
                daemon.stop(signal.SIGKILL)
