"""Providers are plug-ins: a provider installed as a package of its own is bridged without touching the core.

The tiny provider in ``tests/tiny_provider`` is installed (pip, into a folder of its own) beside
mqttbridge; the daemon finds it through the entry point ``mqttbridge.providers``, validates its own
account keys, reads its tractors, and publishes the status its backend pushes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from mqttbridge import providers
from mqttbridge.backends.base import Backend, StatusSink
from mqttbridge.bridge import Bridge
from mqttbridge.model import CommandRequest, DriveTrain, ExecutionUpdate, VehicleInfo, VehicleStatus
from mqttbridge.statestore import StateStore

from .conftest import account_data, make_config
from .fake_session import FakeSession
from .mqtt_helpers import Daemon, Observer, wait_until

HERE = Path(__file__).resolve().parent


def test_the_built_in_providers_are_found_through_entry_points() -> None:
    found = providers.available()
    assert {"bmw_legacy", "hyundai_kia"} <= set(found)
    for name, spec in found.items():
        assert spec.name == name and spec.account_schema.kind == "section"
        assert {"name", "provider", "poll", "commands", "vehicles"} <= set(spec.account_schema.fields)
    # the configuration's provider table is the installed providers' (nothing listed in the core)
    from mqttbridge.config import PROVIDERS

    assert set(PROVIDERS) == set(found)


@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny provider installed into a folder of its own, as `pip install` would into a venv."""
    target = tmp_path_factory.mktemp("tiny-site")
    build = tmp_path_factory.mktemp("tiny-build")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--target",
            str(target),
            str(HERE / "tiny_provider"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=build,
    )
    assert done.returncode == 0, done.stderr
    assert list(target.glob("mqttbridge_tiny_provider-*.dist-info"))
    return target


def _env(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def _config(tmp_path: Path, port: int, **account) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "mqtt": {"host": "127.0.0.1", "port": port, "base_topic": "farm"},
                "state_dir": str(tmp_path / "state"),
                "accounts": [{"name": "shed", "provider": "tiny", "tractors": 2, **account}],
            }
        )
    )
    path.chmod(0o600)
    return path


@pytest.mark.slow
def test_check_config_validates_the_plug_ins_own_keys(tiny_site: Path, tmp_path: Path) -> None:
    good = subprocess.run(
        [sys.executable, "-m", "mqttbridge", "check-config", "-c", str(_config(tmp_path, 1883))],
        capture_output=True,
        text=True,
        env=_env(tiny_site),
        timeout=60,
    )
    assert good.returncode == 0, good.stderr
    assert "account shed: tiny, 2 tractor(s)" in good.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "mqttbridge",
            "check-config",
            "-c",
            str(_config(tmp_path, 1883, tractors=9, colour="red")),
        ],
        capture_output=True,
        text=True,
        env=_env(tiny_site),
        timeout=60,
    )
    assert bad.returncode == 2
    assert "accounts[0].tractors: must be" in bad.stderr and "accounts[0].colour: unknown key" in bad.stderr
    # without the package the provider is unknown, and said so
    missing = subprocess.run(
        [sys.executable, "-m", "mqttbridge", "check-config", "-c", str(_config(tmp_path, 1883))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "accounts[0].provider" in missing.stderr


@pytest.mark.slow
def test_a_provider_from_its_own_package_is_bridged(tiny_site: Path, tmp_path: Path, broker) -> None:
    observer = Observer(broker.port, ("farm/#",))
    daemon = Daemon(tmp_path, yaml.safe_load(_config(tmp_path, broker.port).read_text()))
    env = _env(tiny_site)
    original = os.environ.copy()
    os.environ.update(env)  # the Daemon helper starts the process with this environment
    try:
        daemon.start()
    finally:
        os.environ.clear()
        os.environ.update(original)
    try:
        for n in range(2):
            observer.wait_topic(f"farm/tiny{n:013d}/availability", "online")
        # the pushed status of the first tractor is published like a read: only what changed
        observer.wait_for(
            lambda m: m.topic == "farm/tiny0000000000000/source" and m.text == "stream", what="the pushed status"
        )
        first = "farm/tiny0000000000000/state"
        state = json.loads(
            observer.wait_for(lambda m: m.topic == first and json.loads(m.payload)["source"] == "stream").payload
        )
        assert state["fuel_level"] == 40.0
        info = json.loads(observer.wait_topic("farm/bridge/info").payload)
        assert info["accounts"] == [{"name": "shed", "provider": "tiny"}]
        budget = json.loads(observer.wait_topic("farm/bridge/accounts/shed/budget").payload)
        assert budget["limit"] == 500  # the provider's default budget
    finally:
        assert daemon.stop() == 0, daemon.tail()
        observer.close()


VIN = "WBA00000000000001"


class PushingBackend(Backend):
    """A stand-in for a streamed provider (BMW CarData): one car, statuses pushed through the sink."""

    provider = "bmw_legacy"

    def __init__(self, account: Any, store: Any) -> None:
        super().__init__(account, store)
        self.sink: StatusSink | None = None

    def list_vehicles(self) -> list[VehicleInfo]:
        return [VehicleInfo(VIN, "i4", "BMW", DriveTrain.BEV)]

    def read_status(self, vehicle: VehicleInfo, *, force: bool = False) -> VehicleStatus:
        return VehicleStatus(vehicle.vin, {"battery_level": 50}, fetched_at=datetime.now(UTC))

    def read_dataset(self, vehicle: VehicleInfo, name: str) -> Any:
        raise NotImplementedError

    def execute(self, vehicle: VehicleInfo, request: CommandRequest) -> ExecutionUpdate:
        raise NotImplementedError

    def execution_status(self, vehicle: VehicleInfo, started: ExecutionUpdate) -> ExecutionUpdate:
        raise NotImplementedError

    def start(self, sink: StatusSink) -> None:
        self.sink = sink

    def push(self, fields: dict[str, Any]) -> None:
        assert self.sink is not None
        self.sink.push(VIN, VehicleStatus(VIN, fields, fetched_at=datetime.now(UTC)))


def test_a_pushed_status_is_published_like_a_read_and_costs_no_budget(tmp_path: Path, sim) -> None:
    config = make_config(
        tmp_path,
        [
            account_data(
                sim.url,
                poll={"interval": 3600, "daily_budget": 50},
                vehicles=[{"vin": "WBA00000000000001", "name": "i4"}],
            )
        ],
        mqtt={"base_topic": "car"},
    )
    backend = PushingBackend(config.accounts[0], StateStore(config.state_dir))
    bridge = Bridge(config, backends={"bmw": backend}, session_factory=FakeSession)
    bridge.start()
    session = bridge.session
    try:
        session.wait_for(lambda p: p.topic == "car/i4/battery_level" and p.text == "50")
        wait_until(lambda: backend.sink is not None, what="the backend started")
        used = bridge.accounts[0].ledger.snapshot()["used"]
        mark = session.mark()
        backend.push({"battery_level": 51})
        session.wait_for(lambda p: p.topic == "car/i4/battery_level" and p.text == "51", start=mark)
        mark = session.mark()
        backend.push({"battery_level": 51})  # nothing new: nothing published
        backend.push({"battery_level": 52})
        session.wait_for(lambda p: p.topic == "car/i4/battery_level" and p.text == "52", start=mark)
        assert [p.text for p in session.since(mark, "car/i4/battery_level")] == ["52"]
        assert bridge.accounts[0].ledger.snapshot()["used"] == used  # a push is no vendor call
    finally:
        bridge.stop()
