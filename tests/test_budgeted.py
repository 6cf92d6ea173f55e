"""A backend inside its call budget: counted by kind, refused when spent, backing off on the vendor's limit."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path

import pytest

from mqttbridge.backends import create_backend
from mqttbridge.backends.base import RetryPolicy
from mqttbridge.backends.budgeted import BudgetedBackend
from mqttbridge.budget import BudgetLedger
from mqttbridge.errors import BudgetExhaustedError, RateLimitedError
from mqttbridge.model import CommandRequest, ExecutionStatus
from mqttbridge.statestore import StateStore

from .conftest import account_data, make_config


@pytest.fixture
def budgeted(sim, tmp_path: Path):
    def make(limit: int | None, reserve: int = 2):
        poll = {"daily_budget": limit, "command_reserve": reserve}
        config = make_config(tmp_path, [account_data(sim.url, poll=poll)])
        store = StateStore(config.state_dir)
        inner = create_backend(config.accounts[0], store, sleep=lambda s: None, policy=RetryPolicy(attempts=2))
        ledger = BudgetLedger("bmw", limit=limit, reset=time(0, 0), reserve=reserve, store=store)
        changes = []
        backend = BudgetedBackend(inner, ledger, on_change=lambda: changes.append(ledger.snapshot()))
        backend.changes = changes
        return backend

    return make


def test_calls_are_counted_by_kind_and_reads_stop_before_the_reserve(budgeted, sim) -> None:
    backend = budgeted(limit=6, reserve=2)
    vehicle = backend.list_vehicles()[0]  # 1 cached read
    backend.read_status(vehicle)
    backend.read_status(vehicle)
    backend.read_status(vehicle)  # 4 used: reads stop here, 2 are kept for commands
    sim.clear_requests()
    with pytest.raises(BudgetExhaustedError, match="resets at"):
        backend.read_status(vehicle)
    assert sim.requests() == []  # refused without a call
    started = backend.execute(vehicle, CommandRequest("horn", "PRESS"))  # the reserve serves commands
    assert started.status is ExecutionStatus.INITIATED
    snap = backend.ledger.snapshot()
    assert snap["by_kind"] == {"cached_read": 4, "forced_read": 0, "command": 1, "execution_check": 0}
    assert snap["used"] == 5 and snap["remaining"] == 1 and backend.changes[-1] == snap


def test_a_429_from_the_simulator_backs_off_until_the_reset(budgeted, sim) -> None:
    backend = budgeted(limit=100)
    vehicle = backend.list_vehicles()[0]
    sim.fault(endpoint="status", http_status=429, count=5, retry_after=7200)  # longer than we wait inline
    with pytest.raises(RateLimitedError):
        backend.read_status(vehicle)
    blocked = backend.ledger.blocked_until()
    assert blocked is not None and blocked > datetime.now().astimezone() + timedelta(minutes=100)
    sim.clear_requests()
    with pytest.raises(BudgetExhaustedError, match="vendor's own limit"):
        backend.read_status(vehicle)
    with pytest.raises(BudgetExhaustedError):
        backend.execute(vehicle, CommandRequest("horn", "PRESS"))
    assert sim.requests() == []


class LimitedVendor:
    """A Hyundai/Kia-like backend answering code 5091 ("Exceeds number of requests")."""

    def __init__(self, account, store) -> None:
        self.account, self.store = account, store
        self.sleep, self.clock, self.policy = None, None, None
        self.calls = 0

    def read_status(self, vehicle, *, force=False):
        self.calls += 1
        raise RateLimitedError("Exceeds number of requests", vendor_code="5091", http_status=509)

    def close(self) -> None:
        pass


def test_a_5091_answer_backs_off_until_the_reset(tmp_path: Path) -> None:
    from types import SimpleNamespace

    store = StateStore(tmp_path)
    account = SimpleNamespace(name="kia", poll=SimpleNamespace(command_reserve=10))
    vendor = LimitedVendor(account, store)
    ledger = BudgetLedger("kia", limit=100, reset=time(0, 0), reserve=10, store=store)
    backend = BudgetedBackend(vendor, ledger)  # type: ignore[arg-type]
    with pytest.raises(RateLimitedError):
        backend.read_status(object())
    assert ledger.blocked_until() == ledger.resets_at()
    with pytest.raises(BudgetExhaustedError):
        backend.read_status(object())
    assert vendor.calls == 1
    restarted = BudgetLedger("kia", limit=100, reset=time(0, 0), reserve=10, store=store)
    assert restarted.blocked_until() == ledger.resets_at()  # a restart does not forget the vendor's no


def test_a_backend_that_meters_its_requests_is_charged_for_each_one(budgeted, sim) -> None:
    """One read of ours may cost the vendor several requests (the Hyundai/Kia library's token checks):
    the budget counts what the vendor saw, and a login's requests too."""
    backend = budgeted(limit=20, reserve=2)
    vehicle = backend.list_vehicles()[0]
    assert backend.ledger.snapshot()["used"] == 1  # a backend that does not meter: one each
    requests_seen = iter([3, 2])
    backend.inner.take_vendor_calls = lambda: next(requests_seen)
    backend.read_status(vehicle)  # the vendor saw 3 requests
    assert backend.ledger.snapshot()["by_kind"]["cached_read"] == 4
    backend.login()  # 2 more, though no read of ours
    assert backend.ledger.snapshot()["used"] == 6
