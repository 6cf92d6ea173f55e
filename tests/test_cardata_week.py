"""A simulated week of a BMW CarData account at the default settings, with the stream running and a user who
presses refresh far more often than BMW's 50 calls a day allow (issue 11: "a simulated week stays within 50
calls a day").

What is real: the account's poller (``AccountPoller``, its schedule and back-off), the call ledger and the
budget wrapper, the CarData backend with its REST client and its stream handling, and the simulator, which
counts every REST request per UTC day as BMW does and answers CU-429 from the 51st. What is simulated: time
(one clock for all of them, moved by the poller's waits), and the stream's messages, handed to the backend
where its MQTT worker hands them (the broker plays no part in counting REST calls)."""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mqttbridge.backends.bmw_cardata.backend import CarDataBackend
from mqttbridge.backends.budgeted import BudgetedBackend
from mqttbridge.battery import parse_clock
from mqttbridge.budget import BudgetLedger
from mqttbridge.config import parse_config
from mqttbridge.errors import ActionRequiredError, BackendError
from mqttbridge.model import VehicleInfo
from mqttbridge.polling import AccountPoller
from mqttbridge.simulator.cardata import CarDataSimulator
from mqttbridge.statestore import StateStore

from .conftest import FakeClock

START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # a Monday, at BMW's quota reset
DAYS = 7
SOC = "vehicle.drivetrain.batteryManagement.header"
MILEAGE = "vehicle.vehicle.travelledDistance"


class Car:
    """What the poller needs of a vehicle, reading through the real (budgeted) backend."""

    def __init__(self, info: VehicleInfo, backend: BudgetedBackend):
        self.info, self.vin, self.backend = info, info.vin, backend
        self.next_status, self.next_dataset, self.next_forced = 0.0, {}, None
        self.failures = 0

    def read_status(self, *, force: bool = False) -> None:
        assert not force
        self.backend.read_status(self.info)
        self.failures = 0

    def read_dataset(self, name: str) -> None:
        raise AssertionError("CarData has no data sets")


class Week:
    """The script of the week: stream messages while the cars are used, refresh presses, one clock."""

    def __init__(self, clock: FakeClock, backend: CarDataBackend, cars: list[Car]):
        self.clock, self.backend, self.cars = clock, backend, cars
        self.end = START.timestamp() + DAYS * 86400
        rng = random.Random(11)
        self.events: list[tuple[float, str, str]] = []
        for day in range(DAYS):
            base = START.timestamp() + day * 86400
            for hour in (7.5, 8.25, 12.0, 17.5, 18.25):  # the first car is driven to work and back
                self.events.append((base + hour * 3600, "stream", cars[0].vin))
            self.events.append((base + 10 * 3600, "stream", cars[1].vin))  # the second barely
            for _ in range(30):  # an impatient user: 30 refreshes a day, BMW allows 50 calls in all
                self.events.append((base + rng.uniform(0, 86400), "refresh", rng.choice(cars).vin))
        self.events.sort()
        self.refreshes = Counter[str]()
        self.km = 48260

    def until(self, moment: float) -> None:
        """Move the clock to ``moment``, playing every scripted event on the way."""
        while self.events and self.events[0][0] <= moment:
            when, kind, vin = self.events.pop(0)
            self.clock.now = max(self.clock.now, when)
            if kind == "stream":
                self.km += 7
                stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                data = {SOC: {"value": 60 + len(self.events) % 30, "unit": "%", "timestamp": stamp}}
                data[MILEAGE] = {"value": self.km, "unit": "km", "timestamp": stamp}
                self.backend._streamed(
                    vin, {"vin": vin, "entityId": "e", "topic": vin, "timestamp": stamp, "data": data}
                )
            else:
                car = next(c for c in self.cars if c.vin == vin)
                try:
                    car.backend.refresh_status(car.info)
                    self.refreshes["answered"] += 1
                except BackendError as exc:  # the bridge's record would say FAILED with this
                    self.refreshes[type(exc).__name__] += 1
        # whole milliseconds: a sum of float waits may land a hair before 00:00 UTC, which the ledger (in
        # microseconds) would round up to the new day while the simulator (in floats) is still in the old one
        # and at least one millisecond on: a due time less than a float's spacing (~2e-7 s at this epoch) ahead
        # would otherwise add nothing to the clock, and the poller would wait for it forever
        self.clock.now = math.ceil(max(self.clock.now + 0.001, moment) * 1000) / 1000


class WeekPoller(AccountPoller):
    week: Week

    def _wait(self, seconds: float) -> bool:
        assert self.wait_idle(30), "a read did not finish"
        if self._wake.is_set():
            return self.stopping.is_set()
        assert seconds > 0, "the poller must never spin"
        self.week.until(self.clock() + seconds)
        if self.clock() >= self.week.end:
            self.stopping.set()
        return self.stopping.is_set()


def test_a_week_with_the_stream_and_an_impatient_user_stays_inside_50_calls_a_day(tmp_path: Path) -> None:
    clock = FakeClock(START.timestamp())
    with CarDataSimulator(clock=clock, stream=False, fixtures=True) as sim:
        config = parse_config(
            {"accounts": [sim.account("bmw", "week-client")]},
            env={},
            base_dir=tmp_path,
        )
        account = config.accounts[0]
        poll = account.poll
        assert (poll.daily_budget, poll.budget_reset, poll.interval) == (50, "00:00 UTC", 3600)  # the defaults
        store = StateStore(tmp_path / "state")
        approved = threading.Event()

        def sleep(seconds: float) -> None:  # the login's polling waits on the simulated clock, once approved
            approved.wait(30)
            clock.advance(seconds)

        backend = CarDataBackend(account, store, sleep=sleep, clock=clock)
        done = threading.Event()
        backend.login_listener = SimpleNamespace(login_required=lambda exc: None, login_completed=done.set)
        ledger = BudgetLedger(
            "bmw",
            limit=poll.daily_budget,
            reset=parse_clock(poll.budget_reset),
            reserve=poll.command_reserve,
            store=store,
            now=lambda: datetime.fromtimestamp(clock(), UTC),
        )
        budgeted = BudgetedBackend(backend, ledger)
        try:
            try:
                budgeted.list_vehicles()
                raise AssertionError("a new account must log in first")
            except ActionRequiredError as exc:
                assert exc.kind == "device_code"
                assert sim.approve(str(exc.details["user_code"]))
            approved.set()
            assert done.wait(30), "the approved login did not complete"
            cars = [Car(info, budgeted) for info in budgeted.list_vehicles()]
            assert len(cars) == 2
            week = Week(clock, backend, cars)
            runtime = SimpleNamespace(
                account=account,
                vehicles=cars,
                discover=lambda: None,
                status_interval=lambda: ledger.read_interval(len(cars), float(poll.interval)),
            )
            poller = WeekPoller(runtime, stopping=threading.Event(), on_event=lambda *a: None, clock=clock)
            poller.week = week
            poller._loop()
        finally:
            backend.close()
        log: list[dict[str, Any]] = sim.simulation.log
        rest = [e for e in log if e["path"].startswith("/customers/")]

    end = (START + timedelta(days=DAYS)).isoformat()[:19]
    per_day = Counter(e["time"][:10] for e in rest if e["time"][:19] < end)
    print(
        f"CarData REST calls per UTC day over a week: {dict(sorted(per_day.items()))};",
        f"refreshes: {dict(week.refreshes)}",
    )
    assert len(per_day) == DAYS, per_day
    assert max(per_day.values()) <= 50, per_day  # BMW's limit, never passed
    assert not [e for e in rest if e["status"] == 403], "BMW never had to say CU-429"
    # the budget is used, not wasted: reads and refreshes take most of each day's calls
    assert min(per_day.values()) >= 48, per_day
    # the stream answered the poller's reads while it was live: far fewer REST reads than hours in a week
    telematic = [e for e in rest if e["path"].endswith("/telematicData")]
    assert week.refreshes["answered"] > 0 and week.refreshes["BudgetExhaustedError"] > 0
    assert len(telematic) <= DAYS * 50
    assert sum(1 for e in rest if e["method"] == "POST" and e["path"] == "/customers/containers") == 1
