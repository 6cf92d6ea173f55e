"""A simulated week of a Hyundai/Kia account at the default settings: inside the budget, no forced read."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

from mqttbridge.budget import BudgetLedger
from mqttbridge.config import parse_config
from mqttbridge.polling import AccountPoller
from mqttbridge.statestore import StateStore

START = datetime(2026, 11, 23, 0, 0, tzinfo=timezone(timedelta(hours=1)))
WEEK = 7 * 86400


class Car:
    def __init__(self, vin: str, ledger: BudgetLedger, now):
        self.vin, self.ledger, self.now = vin, ledger, now
        self.next_status, self.next_dataset, self.next_forced = 0.0, {}, None
        self.failures = 0
        self.reads: list[datetime] = []

    def read_status(self, *, force: bool = False) -> None:
        assert not force, "no forced read at the default settings"
        assert self.ledger.allows("cached_read")
        self.ledger.spend("cached_read")
        self.reads.append(self.now())


class WeekPoller(AccountPoller):
    def _wait(self, seconds: float) -> bool:
        assert self.wait_idle(10), "a read did not finish"  # reads run beside the loop: let them end first
        if self._wake.is_set():  # a read that ended woke the loop: it looks at the schedule again
            return self.stopping.is_set()
        assert seconds > 0, "the poller must never spin"
        self.clock.now += seconds
        if self.clock.now >= WEEK:
            self.stopping.set()
        return self.stopping.is_set()


def test_a_week_at_the_defaults(tmp_path: Path) -> None:
    config = parse_config(
        {
            "accounts": [
                {
                    "name": "kia",
                    "provider": "hyundai_kia",
                    "brand": "kia",
                    "region": "europe",
                    "username": "me",
                    "password": "pw",
                }
            ]
        },
        env={},
        base_dir=tmp_path,
    )
    poll = config.accounts[0].poll
    assert poll.force_interval is None  # the default: forced reads never happen on a schedule

    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()

    def wall() -> datetime:
        return START + timedelta(seconds=clock.now)

    ledger = BudgetLedger(
        "kia",
        limit=poll.daily_budget,
        reset=time(0, 0),
        reserve=poll.command_reserve,
        store=StateStore(tmp_path / "state"),
        now=wall,
    )
    cars = [Car("A", ledger, wall), Car("B", ledger, wall)]
    runtime = SimpleNamespace(
        account=SimpleNamespace(name="kia", poll=poll),
        vehicles=cars,
        discover=lambda: None,
        status_interval=lambda: ledger.read_interval(len(cars), float(poll.interval)),
    )
    WeekPoller(runtime, stopping=threading.Event(), on_event=lambda *a: None, clock=clock)._loop()
    end = START + timedelta(days=7)  # a float clock can land a hair before midnight of the 8th day
    per_day = Counter(read.date() for car in cars for read in car.reads if read < end - timedelta(seconds=1))
    assert len(per_day) == 7, per_day
    reads_allowed = poll.daily_budget - poll.command_reserve
    assert all(n <= reads_allowed for n in per_day.values()), per_day
    assert min(per_day.values()) >= reads_allowed * 0.8, per_day  # the budget is used, not wasted
    assert abs(len(cars[0].reads) - len(cars[1].reads)) <= 7  # both cars get their share
    print(f"reads per day at the defaults, 2 cars: {sorted(per_day.values())}; forced reads: 0")
