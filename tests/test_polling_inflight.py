"""Reads run without waiting for each other: a hanging data set never delays a status read (issue 8 F).

The poller runs on its own thread with its real waits; a fake clock decides what is due and
``wake()`` makes the loop look again. Event waits carry generous timeouts as upper bounds only.
"""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace

import pytest

from mqttbridge.polling import LIST_RETRY_FIRST_S, AccountPoller

from .test_polling import Clock, ScheduledPoller

UPPER_BOUND_S = 10.0  # never a timing assertion: only how long a broken poller may take to fail


class Car:
    """A fake vehicle whose status reads are counted with a condition and whose data set can hang."""

    def __init__(self, vin: str, clock: Clock, datasets: tuple[str, ...] = ()):
        self.vin = vin
        self.clock = clock
        self.failures = 0
        self.next_forced = None
        self.next_dataset = dict.fromkeys(datasets, 0.0)
        self._next_status = 0.0
        self.changed = threading.Condition()
        self.status_reads = 0
        self.scheduled = 0  # how often the poller set the next status time (after each read)
        self.dataset_started = 0
        self.dataset_done = 0
        self.release = threading.Event()
        self.release.set()

    @property
    def next_status(self) -> float:
        return self._next_status

    @next_status.setter
    def next_status(self, value: float) -> None:
        with self.changed:
            self._next_status = value
            self.scheduled += 1
            self.changed.notify_all()

    def read_status(self, *, force: bool = False) -> None:
        with self.changed:
            self.status_reads += 1
            self.changed.notify_all()

    def read_dataset(self, name: str) -> None:
        with self.changed:
            self.dataset_started += 1
            self.changed.notify_all()
        assert self.release.wait(UPPER_BOUND_S * 3), "the test never released the data set"
        with self.changed:
            self.dataset_done += 1
            self.changed.notify_all()

    def wait(self, what: str, predicate) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, UPPER_BOUND_S), f"{self.vin}: {what} did not happen"


def _runtime(cars: list[Car], *, max_parallel: int, discover=lambda: None) -> SimpleNamespace:
    account = SimpleNamespace(
        name="a",
        poll=SimpleNamespace(
            interval=300, datasets_interval=3600, offline_after=3, max_parallel=max_parallel, force_interval=None
        ),
    )
    return SimpleNamespace(account=account, vehicles=cars, discover=discover, status_interval=lambda: 300.0)


@pytest.fixture
def running():
    """Start a real poller thread; always release, stop and join it, even when the test failed."""
    started: list[tuple[AccountPoller, list[Car]]] = []

    def start(cars: list[Car], clock: Clock, max_parallel: int) -> AccountPoller:
        poller = AccountPoller(
            _runtime(cars, max_parallel=max_parallel),
            stopping=threading.Event(),
            on_event=lambda kind, data: None,
            clock=clock,
        )
        started.append((poller, cars))
        poller.start()
        return poller

    yield start
    for poller, cars in started:
        for car in cars:
            car.release.set()
        poller.stopping.set()
        poller.wake()
        poller.thread.join(UPPER_BOUND_S)
        assert not poller.thread.is_alive(), "the account thread did not stop"


@pytest.mark.parametrize("max_parallel", [1, 2])
def test_a_hanging_data_set_does_not_delay_the_status_reads(running, max_parallel: int) -> None:
    clock = Clock()
    a, b = Car("A", clock, datasets=("rangemap",)), Car("B", clock)
    a.release.clear()  # A's data set read hangs until the end of the test
    poller = running([a, b], clock, max_parallel)
    for car in (a, b):
        car.wait("the first status read, scheduled", lambda car=car: car.scheduled >= 1)
    a.wait("the data set read started", lambda: a.dataset_started == 1)

    clock.now += 301  # past the status interval
    poller.wake()
    for car in (b, a):
        car.wait("the second status read", lambda car=car: car.status_reads >= 2)
    assert a.dataset_done == 0, "the status reads came while the data set still hung"
    assert poller.alive()

    a.release.set()
    a.wait("the data set read ended", lambda: a.dataset_done == 1)


def test_a_read_still_running_is_not_started_again(running) -> None:
    clock = Clock()
    a = Car("A", clock, datasets=("rangemap",))
    a.release.clear()
    poller = running([a], clock, 1)
    a.wait("the first status read, scheduled", lambda: a.scheduled >= 1)
    a.wait("the data set read started", lambda: a.dataset_started == 1)
    for round_ in range(2, 5):  # the data set is due again each time, and still running
        clock.now += 3601
        poller.wake()
        a.wait("the next status read, scheduled", lambda round_=round_: a.scheduled >= round_)
    assert a.dataset_started == 1
    assert ("A", "rangemap") in poller.in_flight()
    a.release.set()
    a.wait("the data set read ended", lambda: a.dataset_done == 1)
    clock.now += 3601
    poller.wake()
    a.wait("the data set read again once it had ended", lambda: a.dataset_started == 2)


class CorruptToken(Exception):
    pass


def test_an_unexpected_error_while_listing_vehicles_is_reported_and_retried(caplog) -> None:
    clock = Clock()
    car = SimpleNamespace(vin="A", failures=0, next_status=0.0, next_forced=None, next_dataset={}, reads=[])
    car.read_status = lambda force=False: car.reads.append(clock())
    attempts: list[float] = []

    def discover() -> None:
        attempts.append(clock())
        if len(attempts) <= 2:
            raise CorruptToken("the token file holds garbage")

    events: list[tuple[str, dict]] = []
    poller = ScheduledPoller(
        _runtime([car], max_parallel=1, discover=discover),
        stopping=threading.Event(),
        on_event=lambda kind, data: events.append((kind, data)),
        clock=clock,
        rounds=4,
    )
    with caplog.at_level(logging.ERROR, logger="mqttbridge.polling"):
        poller._loop()  # returns only once stopped: the surprise did not end it
    assert attempts == [0.0, LIST_RETRY_FIRST_S, 3 * LIST_RETRY_FIRST_S]  # the same back-off as a vendor error
    errors = [data for kind, data in events if kind == "account_error"]
    assert [e["account"] for e in errors] == ["a", "a"]
    assert all("CorruptToken" in e["error"] and "garbage" not in e["error"] for e in errors)
    assert "Traceback" in caplog.text and "CorruptToken: the token file holds garbage" in caplog.text
    assert car.reads, "the vehicles were read once listing worked"


class Fatal(BaseException):
    """Something no handler may catch, to kill the account thread for the test."""


def test_alive_is_false_only_when_the_thread_died_while_not_stopping() -> None:
    def start(discover) -> AccountPoller:
        poller = AccountPoller(
            _runtime([], max_parallel=1, discover=discover),
            stopping=threading.Event(),
            on_event=lambda kind, data: None,
        )
        assert poller.alive(), "not started yet is not dead"
        poller.start()
        return poller

    listed = threading.Event()
    healthy = start(listed.set)
    assert listed.wait(UPPER_BOUND_S)
    assert healthy.alive()
    healthy.stopping.set()
    healthy.wake()
    healthy.thread.join(UPPER_BOUND_S)
    assert not healthy.thread.is_alive() and healthy.alive(), "stopped on purpose is not dead"

    def fatal() -> None:
        raise Fatal

    hook, caught = threading.excepthook, []
    threading.excepthook = caught.append  # the thread's death is expected here: keep it out of the output
    try:
        dead = start(fatal)
        dead.thread.join(UPPER_BOUND_S)
    finally:
        threading.excepthook = hook
    assert not dead.thread.is_alive() and [args.exc_type for args in caught] == [Fatal]
    assert dead.alive() is False
    dead.stopping.set()
    assert dead.alive() is False, "it died before the stop: stopping later does not hide it"
