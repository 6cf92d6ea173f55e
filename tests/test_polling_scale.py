"""The poller at fleet size (issue 13): bounded reads per account, nothing queued, the budget obeyed, no scan per read.

A fake clock decides what is due; reads that block are released by the test. Event waits carry generous
timeouts as upper bounds only: nothing here measures time.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from types import SimpleNamespace

from mqttbridge.polling import BUDGET_RECHECK_S, AccountPoller

from .test_polling import Clock, FakeCar, ScheduledPoller

UPPER_BOUND_S = 10.0


def _runtime(cars: list, *, max_parallel: int, ledger: object | None = None) -> SimpleNamespace:
    account = SimpleNamespace(
        name="a",
        poll=SimpleNamespace(
            interval=300, datasets_interval=3600, offline_after=3, max_parallel=max_parallel, force_interval=None
        ),
    )
    runtime = SimpleNamespace(account=account, vehicles=cars, discover=lambda: None, status_interval=lambda: 300.0)
    if ledger is not None:
        runtime.ledger = ledger
    return runtime


class GatedCars:
    """Cars whose status reads block until released, counting how many run at once."""

    def __init__(self, count: int):
        self.lock = threading.Condition()
        self.running = 0
        self.most = 0
        self.started = 0
        self.release = threading.Semaphore(0)
        self.cars = [FakeCar(f"V{i:03d}") for i in range(count)]
        for car in self.cars:
            car.read_status = self._read  # type: ignore[method-assign]

    def _read(self, *, force: bool = False) -> None:
        with self.lock:
            self.running += 1
            self.started += 1
            self.most = max(self.most, self.running)
            self.lock.notify_all()
        assert self.release.acquire(timeout=UPPER_BOUND_S * 3), "the test never released the read"
        with self.lock:
            self.running -= 1
            self.lock.notify_all()

    def wait_started(self, count: int) -> None:
        with self.lock:
            assert self.lock.wait_for(lambda: self.started >= count, UPPER_BOUND_S), f"{self.started} of {count}"


def test_never_more_than_max_parallel_reads_in_flight_and_none_queued() -> None:
    gated = GatedCars(12)
    clock = Clock()
    for car in gated.cars:
        car.clock = clock
    poller = AccountPoller(
        _runtime(gated.cars, max_parallel=3), stopping=threading.Event(), on_event=lambda k, d: None, clock=clock
    )
    poller.start()
    try:
        for done in range(12):
            gated.wait_started(min(done + 3, 12))
            flying = poller.in_flight()
            assert len(flying) <= 3, f"more than max_parallel reads in flight (or queued): {sorted(flying)}"
            gated.release.release()  # one read ends: the next starts
        assert poller.wait_idle(UPPER_BOUND_S)
        assert gated.started == 12 and gated.most == 3
    finally:
        for _ in range(12):
            gated.release.release()
        poller.stopping.set()
        poller.wake()
        poller.thread.join(UPPER_BOUND_S)
    assert not poller.thread.is_alive()


class Ledger:
    """The budget as the poller sees it: refuses reads while ``open`` is false or ``left`` is spent."""

    def __init__(self, left: int | None = None, open: bool = True):
        self.left = left
        self.open = open
        self.asked = 0

    def allows(self, kind: str) -> bool:
        assert kind == "cached_read"
        self.asked += 1
        return self.open and (self.left is None or self.left > 0)

    def spend(self) -> None:
        if self.left is not None:
            self.left -= 1

    def blocked_until(self) -> datetime | None:
        return None

    def resets_at(self) -> datetime:
        return datetime.now().astimezone() + timedelta(hours=5)


def _poll(cars: list[FakeCar], ledger: Ledger, rounds: int, max_parallel: int = 1) -> ScheduledPoller:
    clock = Clock()
    for car in cars:
        car.clock = clock
        read = car.read_status

        def counted(*, force: bool = False, read=read) -> None:
            ledger.spend()
            read(force=force)

        car.read_status = counted  # type: ignore[method-assign]
    poller = ScheduledPoller(
        _runtime(cars, max_parallel=max_parallel, ledger=ledger),
        stopping=threading.Event(),
        on_event=lambda k, d: None,
        clock=clock,
        rounds=rounds,
    )
    poller._schedule()  # the loop without its end (which shuts the pools): the test may go on with it
    return poller


def _go_on(poller: ScheduledPoller, rounds: int) -> None:
    poller.stopping.clear()
    poller.rounds += rounds
    poller._schedule()


def test_no_read_starts_while_the_budget_refuses_reads() -> None:
    cars = [FakeCar(f"V{i}") for i in range(5)]
    poller = _poll(cars, Ledger(open=False), rounds=4)
    assert all(car.reads == [] for car in cars)
    assert poller.waits == [BUDGET_RECHECK_S] * 4, "it asks again later, it does not spin"


def test_reads_stop_when_the_budget_is_spent_and_go_on_when_it_allows_them() -> None:
    cars = [FakeCar(f"V{i}") for i in range(6)]
    ledger = Ledger(left=4)
    poller = _poll(cars, ledger, rounds=3)
    assert [len(car.reads) for car in cars] == [1, 1, 1, 1, 0, 0], "one read at a time: the fifth never started"
    assert poller.waits == [BUDGET_RECHECK_S] * 3
    refused_at = poller.clock()
    ledger.left = None  # the budget allows reads again (a new day): the cars not read yet come first
    _go_on(poller, rounds=1)
    assert cars[4].reads == cars[5].reads == [refused_at]
    assert all(car.reads == [0.0, refused_at] for car in cars[:4])


class CountingPoller(ScheduledPoller):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scans = 0

    def _scan(self, vehicles, now):
        self.scans += 1
        super()._scan(vehicles, now)


def test_a_large_fleet_is_not_scanned_at_every_read() -> None:
    cars = [FakeCar(f"V{i:05d}", datasets=("last_trip",)) for i in range(2000)]
    clock = Clock()
    for car in cars:
        car.clock = clock
    poller = CountingPoller(
        _runtime(cars, max_parallel=4), stopping=threading.Event(), on_event=lambda k, d: None, clock=clock, rounds=3
    )
    poller._loop()
    assert all(len(car.reads) == 3 and len(car.dataset_reads) == 1 for car in cars)
    # 8,000 reads; the due ones come from the heap: every car is looked at once per round at most (RESCAN_S)
    assert poller.scans <= 3, poller.scans


def test_a_due_time_changed_from_outside_is_seen_after_a_wake_up() -> None:
    cars = [FakeCar("A"), FakeCar("B")]
    clock = Clock()
    for car in cars:
        car.clock = clock
    poller = AccountPoller(
        _runtime(cars, max_parallel=2), stopping=threading.Event(), on_event=lambda k, d: None, clock=clock
    )
    try:
        poller._start_due(0.0)
        assert poller.wait_idle(UPPER_BOUND_S)
        assert poller._start_due(0.0) == 300.0  # both read; next at 300
        cars[1].next_status = 0.0  # changed from outside, e.g. a login completed: read now
        poller.wake()
        poller._start_due(0.0)
        assert poller.wait_idle(UPPER_BOUND_S)
        assert cars[0].reads == [0.0] and cars[1].reads == [0.0, 0.0]
    finally:
        poller._pool.shutdown()
        poller._dataset_pool.shutdown()


def test_a_vehicle_removed_while_its_read_runs_is_not_read_again() -> None:
    gated = GatedCars(2)
    clock = Clock()
    for car in gated.cars:
        car.clock = clock
    vehicles = list(gated.cars)
    poller = AccountPoller(
        _runtime(vehicles, max_parallel=2), stopping=threading.Event(), on_event=lambda k, d: None, clock=clock
    )
    try:
        poller._start_due(0.0)
        gated.wait_started(2)
        vehicles.remove(gated.cars[1])  # e.g. another instance serves it now (a cluster lets it go)
        poller._start_due(0.0)  # the count changed: every vehicle looked at again
        gated.release.release()
        gated.release.release()
        assert poller.wait_idle(UPPER_BOUND_S)
        clock.now = 300.0  # both would be due again
        poller._start_due(300.0)
        gated.wait_started(3)
        assert poller.in_flight() == {("V000", "status")}
    finally:
        for _ in range(4):
            gated.release.release()
        poller._pool.shutdown()
        poller._dataset_pool.shutdown()
