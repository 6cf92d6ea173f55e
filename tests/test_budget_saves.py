"""When the budget file is written: at every call with a limit (a restart must not hand out calls twice), at most
once a minute without one (its counts decide nothing; a fleet's reads would write and fsync it at every call)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from mqttbridge.budget import UNLIMITED_SAVE_S, BudgetLedger
from mqttbridge.statestore import StateStore

from .test_budget import CET, MIDNIGHT, WallClock


class CountingStore(StateStore):
    def __init__(self, root: Path):
        super().__init__(root)
        self.writes = 0

    def write_json(self, name: str, data: object) -> bool:
        self.writes += 1
        return super().write_json(name, data)


@pytest.fixture
def clock() -> WallClock:
    return WallClock(datetime(2025, 6, 10, 8, 0, tzinfo=CET))


@pytest.fixture
def counting(tmp_path: Path) -> CountingStore:
    return CountingStore(tmp_path / "state")


def _ledger(store: StateStore, clock: WallClock, limit: int | None) -> BudgetLedger:
    return BudgetLedger("acct", limit=limit, reset=MIDNIGHT, reserve=5, store=store, now=clock)


def test_a_limited_account_saves_at_every_call(counting: CountingStore, clock: WallClock) -> None:
    budget = _ledger(counting, clock, limit=100)
    for _ in range(10):
        budget.spend("cached_read")
    assert counting.writes == 10
    assert _ledger(counting, clock, limit=100).remaining() == 90  # a restart now knows every call


def test_an_unlimited_account_saves_at_most_once_a_minute_and_at_stop(
    counting: CountingStore, clock: WallClock
) -> None:
    budget = _ledger(counting, clock, limit=None)
    for _ in range(1000):
        budget.spend("cached_read")
        clock.advance(0.01)
    assert counting.writes == 1, "the first call is saved, the next ones within the minute are not"
    clock.advance(UNLIMITED_SAVE_S)
    budget.spend("cached_read")
    assert counting.writes == 2
    budget.spend("cached_read")
    budget.flush()  # at stop (BudgetedBackend.close)
    assert counting.writes == 3
    assert _ledger(counting, clock, limit=None).snapshot()["by_kind"]["cached_read"] == 1002
    budget.flush()
    assert counting.writes == 3, "nothing new: nothing written"


def test_a_vendor_block_is_saved_at_once_without_a_limit(counting: CountingStore, clock: WallClock) -> None:
    budget = _ledger(counting, clock, limit=None)
    budget.spend("cached_read")
    budget.spend("cached_read")
    writes = counting.writes
    budget.vendor_limited()
    assert counting.writes == writes + 1
    assert _ledger(counting, clock, limit=None).blocked_until() is not None
