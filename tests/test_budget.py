"""The per-account call budget: spread over the day, kept across restarts, blocked by the vendor's limit.

Time is a fake clock moved by the tests; nothing sleeps.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time as systime
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mqttbridge.budget import CALL_KINDS, BudgetLedger
from mqttbridge.statestore import StateStore

CET = timezone(timedelta(hours=1))
MIDNIGHT = time(0, 0)
DAY = 86400.0


class WallClock:
    """An aware 'now' that moves only when a test says so."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state")


@pytest.fixture
def clock() -> WallClock:
    return WallClock(datetime(2025, 6, 10, 0, 0, tzinfo=CET))


def ledger(
    store: StateStore,
    clock: WallClock,
    *,
    limit: int | None = 50,
    reserve: int = 5,
    reset: time = MIDNIGHT,
    account: str = "kia",
) -> BudgetLedger:
    return BudgetLedger(account, limit=limit, reset=reset, reserve=reserve, store=store, now=clock)


def test_defaults_documented() -> None:
    from mqttbridge.providers import available

    assert {name: spec.default_budget for name, spec in available().items()} == {
        "bmw_legacy": None,
        "hyundai_kia": 100,
        "bmw_cardata": 50,
    }
    import mqttbridge.budget as module

    assert "30" in (module.__doc__ or "") and "5091" in (module.__doc__ or "")


def test_simulated_day_spreads_reads_and_keeps_the_reserve(store: StateStore, clock: WallClock) -> None:
    budget = ledger(store, clock, limit=50, reserve=5)
    day_end = budget.resets_at()
    assert day_end == datetime(2025, 6, 11, 0, 0, tzinfo=CET)
    vehicles, configured = 2, 300.0
    rounds: list[datetime] = []
    reads = 0
    while True:
        spent_this_round = 0
        for _vehicle in range(vehicles):
            if budget.allows("cached_read"):
                budget.spend("cached_read")
                spent_this_round += 1
        if spent_this_round:
            rounds.append(clock.now)
            reads += spent_this_round
        interval = budget.read_interval(vehicles, configured)
        assert interval >= configured
        if clock.now + timedelta(seconds=interval) >= day_end:
            break
        clock.advance(interval)

    assert reads == 50 - 5
    assert budget.remaining() == 5
    # Spread over the whole day, not burnt in the morning at the configured 300 s.
    assert rounds[-1] - rounds[0] > timedelta(hours=22)
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(rounds)]
    assert max(gaps) / min(gaps) < 1.05
    assert min(gaps) > 10 * configured
    # Reads stopped; the reserve still serves commands, and nothing goes over the limit.
    assert budget.exhausted()
    assert not budget.allows("cached_read") and not budget.allows("forced_read")
    assert budget.allows("command") and budget.allows("execution_check")
    commands = 0
    while budget.allows("command"):
        budget.spend("command")
        commands += 1
    assert commands == 5
    assert budget.snapshot()["used"] == 50 and budget.remaining() == 0
    assert not budget.allows("execution_check")
    # With nothing left to read, the next round waits for the new day.
    assert budget.read_interval(vehicles, configured) == pytest.approx((day_end - clock.now).total_seconds())


def test_reset_starts_a_new_period(store: StateStore, clock: WallClock) -> None:
    budget = ledger(store, clock, limit=10, reserve=2, reset=time(4, 0))
    clock.now = datetime(2025, 6, 10, 3, 0, tzinfo=CET)
    assert budget.resets_at() == datetime(2025, 6, 10, 4, 0, tzinfo=CET)
    budget.spend("cached_read", 8)
    assert not budget.allows("cached_read") and budget.exhausted()
    clock.now = datetime(2025, 6, 10, 4, 0, tzinfo=CET)
    assert budget.remaining() == 10
    assert budget.allows("cached_read") and not budget.exhausted()
    assert budget.snapshot()["by_kind"]["cached_read"] == 0
    assert budget.resets_at() == datetime(2025, 6, 11, 4, 0, tzinfo=CET)


def test_restart_keeps_counts_and_block(store: StateStore, clock: WallClock) -> None:
    first = ledger(store, clock)
    first.spend("cached_read", 3)
    first.spend("command")
    until = clock.now + timedelta(hours=2)
    first.vendor_limited(until)
    path = store.path("budgets/kia.json")
    assert path.is_file() and (path.stat().st_mode & 0o777) == 0o600

    clock.advance(600)
    second = ledger(store, clock)
    assert second.remaining() == 46
    assert second.snapshot()["by_kind"] == {"cached_read": 3, "forced_read": 0, "command": 1, "execution_check": 0}
    assert second.blocked_until() == until
    assert not second.allows("command")


def test_file_from_an_earlier_period_is_ignored(store: StateStore, clock: WallClock) -> None:
    ledger(store, clock).spend("forced_read", 7)
    clock.now = datetime(2025, 6, 11, 9, 0, tzinfo=CET)
    fresh = ledger(store, clock)
    assert fresh.remaining() == 50
    assert fresh.snapshot()["used"] == 0


def test_vendor_limit_blocks_until_the_reset_then_clears(store: StateStore, clock: WallClock) -> None:
    budget = ledger(store, clock)
    clock.now = datetime(2025, 6, 10, 15, 0, tzinfo=CET)
    budget.spend("cached_read")
    budget.vendor_limited()
    assert budget.blocked_until() == datetime(2025, 6, 11, 0, 0, tzinfo=CET)
    assert not any(budget.allows(kind) for kind in CALL_KINDS)
    assert budget.snapshot()["blocked_until"] == "2025-06-11T00:00:00+01:00"
    clock.now = datetime(2025, 6, 10, 23, 59, 59, tzinfo=CET)
    assert not budget.allows("command")
    clock.now = datetime(2025, 6, 11, 0, 0, tzinfo=CET)
    assert budget.blocked_until() is None
    assert all(budget.allows(kind) for kind in CALL_KINDS)
    assert "blocked_until" not in budget.snapshot()


def test_vendor_limit_with_explicit_time(store: StateStore, clock: WallClock) -> None:
    budget = ledger(store, clock, limit=None)
    budget.vendor_limited(clock.now + timedelta(minutes=30))
    assert not budget.allows("cached_read")
    budget.vendor_limited(clock.now + timedelta(minutes=5))  # an earlier end never shortens the block
    clock.advance(29 * 60)
    assert not budget.allows("command")
    clock.advance(60)
    assert budget.allows("command") and budget.blocked_until() is None


def test_no_limit_never_blocks(store: StateStore, clock: WallClock) -> None:
    budget = ledger(store, clock, limit=None, reserve=5)
    budget.spend("forced_read", 10_000)
    assert all(budget.allows(kind) for kind in CALL_KINDS)
    assert budget.remaining() is None and not budget.exhausted()
    assert budget.read_interval(3, 600.0) == 600.0
    snap = budget.snapshot()
    assert snap["limit"] is None and snap["remaining"] is None and snap["used"] == 10_000


def test_unknown_kind_raises(store: StateStore, clock: WallClock) -> None:
    budget = ledger(store, clock)
    with pytest.raises(ValueError, match="unknown call kind"):
        budget.spend("status")
    with pytest.raises(ValueError, match="unknown call kind"):
        budget.allows("status")
    with pytest.raises(ValueError):
        budget.spend("command", -1)
    assert budget.remaining() == 50


def test_snapshot_shape(store: StateStore, clock: WallClock) -> None:
    budget = ledger(store, clock, limit=100, reserve=10)
    budget.spend("cached_read", 2)
    budget.spend("execution_check")
    snap = budget.snapshot()
    assert snap == {
        "limit": 100,
        "used": 3,
        "remaining": 97,
        "by_kind": {"cached_read": 2, "forced_read": 0, "command": 0, "execution_check": 1},
        "resets_at": "2025-06-11T00:00:00+01:00",
    }
    assert datetime.fromisoformat(snap["resets_at"]).utcoffset() == timedelta(hours=1)
    json.dumps(snap)


def test_read_interval_floor_and_remaining_time(store: StateStore, clock: WallClock) -> None:
    budget = ledger(store, clock, limit=1000, reserve=0)
    assert budget.read_interval(1, 600.0) == 600.0  # plenty left: the configured interval wins
    clock.now = datetime(2025, 6, 10, 12, 0, tzinfo=CET)
    budget.spend("cached_read", 990)
    assert budget.read_interval(1, 600.0) == pytest.approx(12 * 3600 / (10 + 1))
    assert budget.read_interval(2, 600.0) == pytest.approx(12 * 3600 * 2 / (10 + 2))


def test_reads_are_spread_by_what_they_cost_the_vendor(store: StateStore, clock: WallClock) -> None:
    """A Hyundai/Kia read costs the vendor about 3 requests: 12 left are 4 reads, not 12."""
    budget = ledger(store, clock, limit=1000, reserve=0)
    clock.now = datetime(2025, 6, 10, 12, 0, tzinfo=CET)
    budget.spend("cached_read", 988)
    for _ in range(40):
        budget.read_cost(3)  # what the backend keeps reporting
    assert budget.read_interval(1, 600.0) == pytest.approx(12 * 3600 / (4 + 1), rel=1e-3)


def test_exhausted_turns_true_once_reads_stop(store: StateStore, clock: WallClock) -> None:
    budget = ledger(store, clock, limit=10, reserve=3)
    budget.spend("cached_read", 6)
    assert not budget.exhausted() and budget.allows("cached_read")
    budget.spend("cached_read")
    assert budget.exhausted() and not budget.allows("cached_read") and budget.allows("command")


def test_corrupt_file_does_not_crash(store: StateStore, clock: WallClock, caplog: pytest.LogCaptureFixture) -> None:
    path = store.path("budgets/kia.json")
    path.parent.mkdir(parents=True)
    path.write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="mqttbridge.budget"):
        budget = ledger(store, clock)
    assert budget.remaining() == 50
    assert any(r.name == "mqttbridge.budget" and "budget file" in r.getMessage() for r in caplog.records)
    assert list(path.parent.glob("kia.json.corrupt-*"))
    budget.spend("command")
    assert ledger(store, clock).remaining() == 49


def test_malformed_file_is_ignored_with_a_warning(
    store: StateStore, clock: WallClock, caplog: pytest.LogCaptureFixture
) -> None:
    store.write_json("budgets/kia.json", {"period_start": "yesterday", "by_kind": {"command": "x"}})
    with caplog.at_level(logging.WARNING, logger="mqttbridge.budget"):
        budget = ledger(store, clock)
    assert budget.remaining() == 50
    assert any(r.name == "mqttbridge.budget" and "malformed" in r.getMessage() for r in caplog.records)


def test_dst_spring_day_has_23_hours(store: StateStore) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    clock = WallClock(datetime(2025, 3, 30, 0, 0, tzinfo=berlin))
    budget = ledger(store, clock, limit=25, reserve=1)
    reset = budget.resets_at()
    assert reset == datetime(2025, 3, 31, 0, 0, tzinfo=berlin)
    assert reset.isoformat() == "2025-03-31T00:00:00+02:00"
    assert budget.read_interval(1, 60.0) == pytest.approx(23 * 3600 / (24 + 1))


def test_dst_autumn_day_has_25_hours(store: StateStore) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    clock = WallClock(datetime(2025, 10, 26, 0, 0, tzinfo=berlin))
    budget = ledger(store, clock, limit=25, reserve=0)
    budget.spend("cached_read", 5)
    assert budget.read_interval(1, 60.0) == pytest.approx(25 * 3600 / (20 + 1))
    clock.now = datetime(2025, 10, 26, 23, 59, tzinfo=berlin)
    assert budget.remaining() == 20
    clock.now = datetime(2025, 10, 27, 0, 0, tzinfo=berlin)
    assert budget.remaining() == 25


@pytest.fixture
def berlin_system_zone() -> Iterator[None]:
    """The process's local zone is Europe/Berlin for one test, as on a user's machine."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    systime.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        systime.tzset()


@pytest.mark.usefixtures("berlin_system_zone")
def test_dst_with_the_default_fixed_offset_clock(store: StateStore) -> None:
    """``datetime.now().astimezone()`` has only a fixed offset; the reset must still follow DST."""
    clock = WallClock(datetime(2025, 3, 30, 1, 0).astimezone())
    assert clock.now.utcoffset() == timedelta(hours=1)
    budget = ledger(store, clock)
    assert budget.resets_at().isoformat() == "2025-03-31T00:00:00+02:00"
    assert budget.resets_at() == datetime(2025, 3, 30, 22, 0, tzinfo=UTC)


# --- a reset in UTC (BMW CarData's quota: 00:00 UTC, CONTRACT section 9) ----------------------------------


def test_a_reset_in_utc_falls_on_utc_midnight_whatever_the_local_zone(store: StateStore) -> None:
    from mqttbridge.battery import parse_clock

    clock = WallClock(datetime(2025, 6, 10, 0, 30, tzinfo=CET))  # 23:30 UTC on the 9th
    book = ledger(store, clock, reset=parse_clock("00:00 UTC"), reserve=0, limit=50)
    assert book.resets_at() == datetime(2025, 6, 10, 0, 0, tzinfo=UTC)
    book.spend("cached_read", 50)
    assert not book.allows("cached_read")
    clock.advance(29 * 60)  # 23:59 UTC: still the same quota day
    assert not book.allows("cached_read")
    clock.advance(60)  # 00:00 UTC, 01:00 local: a local-midnight quota would have reset an hour ago
    assert book.allows("cached_read")
    assert book.snapshot()["used"] == 0
    assert book.resets_at() == datetime(2025, 6, 11, 0, 0, tzinfo=UTC)


def test_a_local_reset_is_unchanged(store: StateStore) -> None:
    from mqttbridge.battery import parse_clock

    assert parse_clock("00:00").tzinfo is None
    clock = WallClock(datetime(2025, 6, 10, 1, 30, tzinfo=CET))
    book = ledger(store, clock, reset=parse_clock("00:00"))
    assert book.resets_at() == datetime(2025, 6, 11, 0, 0, tzinfo=CET)


def test_calls_the_vendor_never_saw_are_taken_back(store: StateStore, clock: WallClock) -> None:
    book = ledger(store, clock)
    book.spend("cached_read", 3)
    book.unspend("cached_read")
    assert book.snapshot()["by_kind"]["cached_read"] == 2
    book.unspend("cached_read", 5)  # never below zero
    assert book.snapshot()["by_kind"]["cached_read"] == 0


def test_a_cluster_instance_spends_its_share_of_the_account_budget(store: StateStore, clock: WallClock) -> None:
    """Three instances serving 1, 2 and 3 of an account's 6 cars: 50 calls a day become 8, 16 and 25 (rounded
    down: together never more than the vendor's limit), the reserve likewise."""
    book = ledger(store, clock, limit=50, reserve=6)
    book.share(1, 6)
    assert (book.limit, book.reserve) == (8, 1)
    book.share(2, 6)
    assert (book.limit, book.reserve) == (16, 2)
    book.share(1, 6)
    book.spend("cached_read", 7)
    assert not book.allows("cached_read") and book.allows("command")  # the reserve's one call is kept
    book.share(3, 6)  # it took over a dead instance's cars
    assert (book.limit, book.reserve) == (25, 3) and book.allows("cached_read")
    book.share(6, 6)
    assert (book.limit, book.reserve) == (50, 6)
    book.share(0, 6)  # it serves none of them now
    assert (book.limit, book.reserve) == (0, 0) and not book.allows("command")
    unlimited = ledger(store, clock, limit=None, account="other")
    unlimited.share(1, 6)
    assert unlimited.limit is None
