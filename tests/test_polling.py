"""The account poller's schedule with a fake clock: reads come on their interval, never faster."""

from __future__ import annotations

import logging
import threading
from itertools import pairwise
from types import SimpleNamespace

from mqttbridge.errors import ActionRequiredError, ServerError
from mqttbridge.polling import AccountPoller


class FakeCar:
    def __init__(self, vin: str, fail: bool = False, datasets: tuple[str, ...] = ()):
        self.vin = vin
        self.fail = fail
        self.reads: list[float] = []
        self.dataset_reads: list[tuple[str, float]] = []
        self.next_status = 0.0
        self.next_dataset = dict.fromkeys(datasets, 0.0)
        self.next_forced = None
        self.forced_reads: list[float] = []
        self.failures = 0
        self.clock = None

    def read_status(self, *, force: bool = False) -> None:
        if force:
            self.forced_reads.append(self.clock())
            return
        self.reads.append(self.clock())
        if self.fail:
            self.failures += 1
            raise ServerError("HTTP 500")
        self.failures = 0

    def read_dataset(self, name: str) -> None:
        self.dataset_reads.append((name, self.clock()))


class ScheduledPoller(AccountPoller):
    """Waits advance a fake clock instead of sleeping; the test ends after ``rounds`` waits.

    The reads run on the poller's pools: each wait first lets them end (real reads end long before
    the next is due), and a read that ended after the loop looked wakes it without moving the
    clock, as the real wait would.
    """

    def __init__(self, *args, rounds: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.rounds = rounds
        self.waits: list[float] = []
        self.woken = 0

    def _wait(self, seconds: float) -> bool:
        assert self.wait_idle(10), f"reads still running: {self.in_flight()}"
        if self._wake.is_set():
            self.woken += 1
            return self.stopping.is_set()
        self.waits.append(seconds)
        self.clock.now += seconds
        if len(self.waits) >= self.rounds:
            self.stopping.set()
        return self.stopping.is_set()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _poll(
    cars: list[FakeCar], rounds: int, force_interval: int | None = None, events: list | None = None
) -> ScheduledPoller:
    clock = Clock()
    for car in cars:
        car.clock = clock
    account = SimpleNamespace(
        name="a",
        poll=SimpleNamespace(
            interval=300, datasets_interval=3600, offline_after=3, max_parallel=2, force_interval=force_interval
        ),
    )
    runtime = SimpleNamespace(account=account, vehicles=cars, discover=lambda: None, status_interval=lambda: 300.0)
    events = [] if events is None else events
    poller = ScheduledPoller(
        runtime, stopping=threading.Event(), on_event=lambda k, d: events.append((k, d)), clock=clock, rounds=rounds
    )
    poller._loop()
    return poller


def test_reads_come_on_the_interval_and_the_poller_sleeps_in_between() -> None:
    cars = [FakeCar("A", datasets=("last_trip",)), FakeCar("B")]
    poller = _poll(cars, rounds=12)
    assert all(w > 0 for w in poller.waits), "a zero wait would be a spin"
    reads = sum(len(car.reads) + len(car.dataset_reads) for car in cars)
    assert poller.woken <= reads, "only a read that ended may cut a wait short"
    for car in cars:
        gaps = [b - a for a, b in pairwise(car.reads)]
        assert gaps and all(g >= 300 for g in gaps), gaps
    trips = [t for _, t in cars[0].dataset_reads]
    assert trips[0] == 0 and all(b - a >= 3600 for a, b in pairwise(trips))
    assert len(cars[0].reads) > 3 * len(trips)


def test_a_failing_car_is_read_later_and_later() -> None:
    bad, good = FakeCar("BAD", fail=True), FakeCar("OK")
    _poll([bad, good], rounds=60)
    gaps = [b - a for a, b in pairwise(bad.reads)]
    assert gaps[:4] == [300, 600, 1200, 2400]
    assert all(b >= a for a, b in pairwise(gaps)) and max(gaps) <= 3600
    good_gaps = [b - a for a, b in pairwise(good.reads)]
    assert all(g == 300 for g in good_gaps)


def test_forced_reads_only_on_force_interval_and_skipped_with_a_reason() -> None:
    allowed, refused = FakeCar("OK"), FakeCar("LOW")
    for car, reason in ((allowed, None), (refused, "the 12 V battery was last at 40 %")):
        car.next_forced = 7200.0
        car.bridge = SimpleNamespace(gateway=SimpleNamespace(forced_read_refusal=lambda ctx, r=reason: r))
    events: list = []
    _poll([allowed, refused], rounds=80, force_interval=7200, events=events)
    assert allowed.forced_reads[:3] == [7200.0, 14400.0, 21600.0]
    assert refused.forced_reads == []
    skipped = [data for kind, data in events if kind == "forced_read_skipped"]
    assert skipped and all(d["vin"] == "LOW" and "12 V battery" in d["reason"] for d in skipped)
    assert len(skipped) == len(allowed.forced_reads)  # one skip, with its reason, per due forced read


def test_no_forced_read_without_force_interval() -> None:
    car = FakeCar("A")
    _poll([car], rounds=30)
    assert car.forced_reads == [] and len(car.reads) > 10


def _discovering(exc: Exception, caplog) -> tuple[list, list]:
    """One failed listing of the vehicles: the events and the poller's log records."""
    account = SimpleNamespace(name="a", poll=SimpleNamespace(max_parallel=1))

    def discover() -> None:
        raise exc

    events: list = []
    runtime = SimpleNamespace(account=account, vehicles=[], discover=discover)
    poller = AccountPoller(runtime, stopping=threading.Event(), on_event=lambda k, d: events.append((k, d)))
    poller._wait = lambda seconds: True  # stop after the first attempt
    with caplog.at_level(logging.INFO, logger="mqttbridge.polling"):
        assert poller._discover() is False
    return events, [r for r in caplog.records if r.name == "mqttbridge.polling"]


def test_a_login_that_waits_for_the_user_is_not_logged_as_an_error(caplog) -> None:
    """A device code or one-time code the user has not entered yet is expected at a first start: the login
    topic says what to do; the poller says it waits, as a warning, not an error."""
    exc = ActionRequiredError("open LINK and enter the code CODE", kind="device_code")
    events, records = _discovering(exc, caplog)
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (
            logging.WARNING,
            "account a: waiting for the user's login (open LINK and enter the code CODE); asking again in 30 s",
        )
    ]
    assert events == [("account_error", {"account": "a", "error": "open LINK and enter the code CODE"})]


def test_a_failed_listing_is_an_error(caplog) -> None:
    events, records = _discovering(ServerError("HTTP 500"), caplog)
    assert [r.levelno for r in records] == [logging.ERROR]
    assert "cannot list vehicles: HTTP 500" in records[0].getMessage()
    assert events == [("account_error", {"account": "a", "error": "HTTP 500"})]
