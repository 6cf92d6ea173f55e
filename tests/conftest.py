"""Shared fixtures: the captures in ../shared, a simulator on a free loopback port, an account."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
import requests

# the helpers' own asserts report their operands, as a test's do
pytest.register_assert_rewrite("tests.cluster_helpers")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"


#: the outcome of a test's call phase, for fixtures that print their daemons' logs at teardown when it failed
CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    if report.when == "call":
        item.stash[CALL_REPORT] = report
    return report


def call_failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test using this fixture failed (a fixture cannot catch the test's own exception)."""
    report = request.node.stash.get(CALL_REPORT, None)
    return report is not None and report.failed


class _Daemons(Protocol):
    def close(self) -> None: ...

    def logs(self) -> str: ...


_D = TypeVar("_D", bound=_Daemons)


def closed_after(request: pytest.FixtureRequest, daemons: _D) -> Iterator[_D]:
    """A fixture's body for daemons (``yield from``): closed after the test, their logs printed under a failure
    (shown as the teardown's captured output)."""
    try:
        yield daemons
    finally:
        daemons.close()
        if call_failed(request):
            print(daemons.logs())


@pytest.fixture
def vendor():
    """The legacy simulator on a clock the test moves (``restart_helpers.start_vendor``)."""
    from .restart_helpers import start_vendor  # it imports this module

    server = start_vendor()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The real captures; only a user's clone without ../shared may skip these tests."""
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (a user's clone): capture-based tests skipped")
    return FIXTURES


class FakeClock:
    """Monotonic time that moves only when a test says so."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class Sim:
    """A running simulator plus the calls tests make to its /_sim/ control."""

    def __init__(self, server, clock: FakeClock):
        self.server = server
        self.clock = clock
        self.url = server.url

    def fault(self, **rule) -> None:
        response = requests.post(f"{self.url}/_sim/faults", json=rule, timeout=5)
        response.raise_for_status()

    def requests(self, path_part: str = "") -> list[dict]:
        entries = requests.get(f"{self.url}/_sim/requests", timeout=5).json()
        return [e for e in entries if path_part in e["path"]]

    def clear_requests(self) -> None:
        requests.delete(f"{self.url}/_sim/requests", timeout=5).raise_for_status()

    def patch_status(self, vin: str, patch: dict) -> dict:
        response = requests.patch(f"{self.url}/_sim/vehicles/{vin}/status", json=patch, timeout=5)
        response.raise_for_status()
        return response.json()


@pytest.fixture
def sim():
    from mqttbridge.simulator import SimulatorServer, demo_vehicles

    clock = FakeClock()
    server = SimulatorServer(demo_vehicles(), execution_step=1.0, clock=clock)
    server.start()
    try:
        yield Sim(server, clock)
    finally:
        server.stop()


def account_data(url: str, **overrides) -> dict:
    data = {
        "name": "bmw",
        "provider": "bmw_legacy",
        "base_url": url,
        "username": "demo@example.com",
        "password": "demo",
        "api_key": "app-key",
        "api_secret": "app-secret-value",
    }
    data.update(overrides)
    return data


def make_config(tmp_path: Path, accounts: list[dict], **top):
    from mqttbridge.config import parse_config

    data = {"state_dir": str(tmp_path / "state"), "accounts": accounts, **top}
    return parse_config(data, env={}, base_dir=tmp_path)


@pytest.fixture
def broker(tmp_path: Path):
    """A private mosquitto on a free loopback port (tests stop and start it to test reconnects)."""
    from tests.mqtt_helpers import Mosquitto

    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()
