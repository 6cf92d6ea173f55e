"""Polling: each account on its own thread and interval, its vehicles read with bounded concurrency.

The data sets (trips, charging profile, ...) have their own slower schedule and their own small
pool, so a data set that hangs never delays a status read. Reads run without waiting for each
other: the account thread starts what is due and not already running, and a read that ends wakes
it. At most ``poll.max_parallel`` status reads and one data set read of an account are running at
any time, and nothing waits queued beside them: the account thread keeps the reads in the order
they are due (a heap, so a fleet of 10,000 costs no scan of every car per read) and starts the next
when one ends. While the account's budget refuses reads (spent, or the vendor's own limit), none is
started until it allows them again. A failing vehicle is read again later and later (doubling,
capped at an hour), a 429 waits for the vendor's ``Retry-After``, and after ``offline_after``
failures in a row the vehicle's availability goes ``offline`` until the next success. Nothing here
ever reads faster than configured or spins, and the account thread outlives any surprise (``alive`` says if it did not).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mqttbridge.errors import (
    ActionRequiredError,
    AuthError,
    BackendError,
    BudgetExhaustedError,
    RateLimitedError,
    UnsupportedError,
)

if TYPE_CHECKING:
    from mqttbridge.account import AccountRuntime
    from mqttbridge.vehicle import VehicleContext

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 3600.0
LIST_RETRY_FIRST_S = 30.0
#: data sets are slow and optional: one at a time per account, beside the status reads
DATASET_WORKERS = 1
#: the reads that share the ``max_parallel`` pool; every other kind is a data set
STATUS_KINDS = ("status", "forced")
#: the account thread looks at every vehicle's due times again at least this often (a change made from outside
#: without ``wake``); in between it follows its heap of due reads
RESCAN_S = 60.0
#: while the budget refuses reads, it is asked again after at most this long
BUDGET_RECHECK_S = 300.0


def _lane(what: str) -> str:
    return "status" if what in STATUS_KINDS else "datasets"


def backoff(interval: float, failures: int, retry_after: float | None = None) -> float:
    """Seconds until the next read after ``failures`` failures in a row."""
    if failures <= 0:
        return interval
    delay = min(interval * 2 ** (failures - 1), max(interval, MAX_BACKOFF_S))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


class AccountPoller:
    """One account's thread: lists its vehicles, then starts each read when due on a bounded pool."""

    def __init__(
        self,
        runtime: AccountRuntime,
        *,
        stopping: threading.Event,
        on_event: Callable[[str, dict[str, Any]], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.runtime = runtime
        self.stopping = stopping
        self.on_event = on_event
        self.clock = clock
        self._wake = threading.Event()
        name = runtime.account.name
        self._pool = ThreadPoolExecutor(
            max_workers=runtime.account.poll.max_parallel, thread_name_prefix=f"poll-{name}"
        )
        self._dataset_pool = ThreadPoolExecutor(max_workers=DATASET_WORKERS, thread_name_prefix=f"datasets-{name}")
        #: (vin, kind) of every read running (none waits queued): none is started twice
        self._in_flight: set[tuple[str, str]] = set()
        self._idle = threading.Condition()
        #: reads each lane may run at once, and runs now
        self._slots = {"status": runtime.account.poll.max_parallel, "datasets": DATASET_WORKERS}
        self._running = {"status": 0, "datasets": 0}
        #: per lane, the reads not running as (due, order, kind, vehicle), soonest first
        self._due: dict[str, list[tuple[float, int, str, VehicleContext]]] = {"status": [], "datasets": []}
        self._order = itertools.count()
        #: reads that ended since the account thread last looked (their next due time is set)
        self._ended: list[tuple[VehicleContext, str]] = []
        self._rescan = True
        self._scanned_at = 0.0
        self._scanned_count = -1
        #: the vehicles as last scanned: a read that ends after its vehicle left (a cluster let it go) is not queued
        self._members: set[int] = set()  # ids: a vehicle need not be hashable
        self._died = False
        self.thread = threading.Thread(target=self._loop, name=f"account-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        """Look at every vehicle's due times again now (changed from outside: a login, vehicles added or taken
        over). A vehicle removed from ``runtime.vehicles`` is never read again once the loop saw the count change."""
        self._rescan = True
        self._wake.set()

    def alive(self) -> bool:
        """False only if the account thread ended while the bridge was not stopping (for the health check).

        True before ``start``, while the thread runs, and after it ended because ``stopping`` was set.
        """
        if self._died:
            return False
        return self.thread.ident is None or self.thread.is_alive() or self.stopping.is_set()

    def in_flight(self) -> set[tuple[str, str]]:
        """The (vin, kind) of the reads running now."""
        with self._idle:
            return set(self._in_flight)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no read is running; False if ``timeout`` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._in_flight, timeout)

    def _wait(self, seconds: float) -> bool:
        """Sleep until due, stopped (True) or woken (a read ended, a shutdown).

        The loop clears the wake-up before it looks at what is due, never here: a read that ends
        in between must still cut this sleep short.
        """
        if self.stopping.is_set():
            return True
        self._wake.wait(max(0.0, seconds))
        return self.stopping.is_set()

    def _loop(self) -> None:
        try:
            if self._discover():
                self._schedule()
        finally:
            self._died = not self.stopping.is_set()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._dataset_pool.shutdown(wait=False, cancel_futures=True)

    def _account_error(self, error: str) -> None:
        self.on_event("account_error", {"account": self.runtime.account.name, "error": error})

    def _discover(self) -> bool:
        """List the vehicles, again and again with back-off until it works; False if stopped first."""
        name = self.runtime.account.name
        failures = 0
        while not self.stopping.is_set():
            self._wake.clear()
            try:
                self.runtime.discover()
                return True
            except BackendError as exc:
                failures += 1
                delay = backoff(LIST_RETRY_FIRST_S, failures, getattr(exc, "retry_after", None))
                if isinstance(exc, ActionRequiredError):  # the login module says what to do (topic, event, alert)
                    log.warning(
                        "account %s: waiting for the user's login (%s); asking again in %.0f s", name, exc, delay
                    )
                else:
                    log.error("account %s: cannot list vehicles: %s; trying again in %.0f s", name, exc, delay)
                error = str(exc)
            except Exception as exc:  # e.g. a corrupt token: the thread must not die while the daemon looks fine
                failures += 1
                delay = backoff(LIST_RETRY_FIRST_S, failures)
                log.exception("account %s: listing vehicles failed unexpectedly; trying again in %.0f s", name, delay)
                error = f"internal error ({type(exc).__name__}); see the bridge's log"
            self._account_error(error)
            if self._wait(delay):
                return False
        return False

    def _schedule(self) -> None:
        """Start what is due, sleep until the next is due or a read ends; a surprise backs off, never ends it."""
        failures = 0
        while not self.stopping.is_set():
            self._wake.clear()  # before looking: a read ending from now on cuts the next wait short
            try:
                delay = self._start_due(self.clock())
                failures = 0
            except Exception as exc:
                failures += 1
                delay = backoff(LIST_RETRY_FIRST_S, failures)
                log.exception(
                    "account %s: polling failed unexpectedly; trying again in %.0f s", self.runtime.account.name, delay
                )
                self._account_error(f"internal error ({type(exc).__name__}); see the bridge's log")
            if self._wait(delay):
                return

    def _start_due(self, now: float) -> float:
        """Start the due reads that have a free slot, soonest due first; the seconds until the next one is due.

        Running reads are left out of the next due time: their end wakes the loop, and only then is their
        next time known (it is set before they leave ``_in_flight``). A lane without a free slot is left out
        too: a read of it ends first.
        """
        vehicles = self.runtime.vehicles
        if self._rescan or len(vehicles) != self._scanned_count or now - self._scanned_at >= RESCAN_S:
            self._scan(list(vehicles), now)
        else:
            with self._idle:
                ended, self._ended = self._ended, []
            for ctx, what in ended:
                self._push(ctx, what)
        refused = self._budget_refuses()
        if refused is not None:
            return refused
        upcoming: list[float] = []
        for lane, heap in self._due.items():
            while heap and heap[0][0] <= now and self._running[lane] < self._slots[lane]:
                due, _order, what, ctx = heapq.heappop(heap)
                current = self._due_time(ctx, what)
                if current is None or (ctx.vin, what) in self._in_flight:
                    continue  # not read any more, or running: its end puts it back
                if current != due:  # changed since it was queued (a wake-up would have rescanned)
                    heapq.heappush(heap, (current, next(self._order), what, ctx))
                    continue
                self._submit(ctx, what)
            if heap and self._running[lane] < self._slots[lane]:
                upcoming.append(heap[0][0])
        return (min(upcoming) if upcoming else now + MAX_BACKOFF_S) - now

    def _scan(self, vehicles: list[VehicleContext], now: float) -> None:
        """Every vehicle's reads that are not running, into the heaps (at the start, at a wake-up, now and then)."""
        self._rescan = False
        self._scanned_at, self._scanned_count = now, len(vehicles)
        self._members = {id(ctx) for ctx in vehicles}
        with self._idle:  # together: a read that ends from now on is in ``_ended``, not lost
            self._ended = []
            flying = set(self._in_flight)
        heaps: dict[str, list[tuple[float, int, str, VehicleContext]]] = {"status": [], "datasets": []}
        for ctx in vehicles:
            plan = [("status", ctx.next_status)]
            if ctx.next_forced is not None:
                plan.append(("forced", ctx.next_forced))
            plan += list(dict(ctx.next_dataset).items())
            for what, due in plan:
                if (ctx.vin, what) not in flying:
                    heaps[_lane(what)].append((due, next(self._order), what, ctx))
        for heap in heaps.values():
            heapq.heapify(heap)
        self._due = heaps

    @staticmethod
    def _due_time(ctx: VehicleContext, what: str) -> float | None:
        """When the read is due now; None: it is not read any more."""
        if what == "status":
            return ctx.next_status
        if what == "forced":
            return ctx.next_forced
        return ctx.next_dataset.get(what)

    def _push(self, ctx: VehicleContext, what: str) -> None:
        due = self._due_time(ctx, what)
        if due is not None and id(ctx) in self._members:
            heapq.heappush(self._due[_lane(what)], (due, next(self._order), what, ctx))

    def _budget_refuses(self) -> float | None:
        """Seconds to wait while the account's budget refuses reads (spent, or the vendor's own limit); None:
        it allows them. Each read asks the budget too: this only keeps them from being started at all."""
        ledger = getattr(self.runtime, "ledger", None)
        if ledger is None or ledger.allows("cached_read"):
            return None
        until = ledger.blocked_until() or ledger.resets_at()
        return min(self._until(until), BUDGET_RECHECK_S)

    def _submit(self, ctx: VehicleContext, what: str) -> None:
        key = (ctx.vin, what)
        lane = _lane(what)
        with self._idle:
            self._in_flight.add(key)
            self._running[lane] += 1
        pool = self._pool if lane == "status" else self._dataset_pool
        try:
            pool.submit(self._run, ctx, what)
        except RuntimeError:  # the pool is shut down: the poller is stopping
            self._finished(ctx, what)

    def _run(self, ctx: VehicleContext, what: str) -> None:
        try:
            self._read(ctx, what)
        except Exception:  # _read handles the vehicle's errors; this is a bug in the handling itself
            log.exception("%s: handling the %s read failed; next try in %.0f s", ctx.vin, what, MAX_BACKOFF_S)
            self._set_next(ctx, what, MAX_BACKOFF_S)  # else it would be due again at once: a spin
        finally:
            self._finished(ctx, what)

    def _finished(self, ctx: VehicleContext, what: str) -> None:
        with self._idle:
            self._in_flight.discard((ctx.vin, what))
            self._running[_lane(what)] -= 1
            self._ended.append((ctx, what))
            self._idle.notify_all()
        self._wake.set()

    @staticmethod
    def _until(moment: Any) -> float:
        if isinstance(moment, datetime):
            return max(60.0, (moment - datetime.now(moment.tzinfo)).total_seconds())
        return MAX_BACKOFF_S

    def _read(self, ctx: VehicleContext, what: str) -> None:
        if self.stopping.is_set():
            return
        account = self.runtime.account
        try:
            if what == "status":
                ctx.read_status()
            elif what == "forced":
                reason = ctx.bridge.gateway.forced_read_refusal(ctx)
                if reason is not None:  # battery protection: skipped, and said why
                    self.on_event("forced_read_skipped", {"account": account.name, "vin": ctx.vin, "reason": reason})
                else:
                    ctx.read_status(force=True)
            else:
                ctx.read_dataset(what)
        except UnsupportedError as exc:
            if what == "status":  # a status is never optional: read again later, not at once
                self._failed(ctx, what, exc)
                return
            log.info("%s: %s; not asking again", ctx.vin, exc)
            if what == "forced":
                ctx.next_forced = None
            else:
                ctx.next_dataset.pop(what, None)
            return
        except BackendError as exc:
            self._failed(ctx, what, exc)
            return
        except Exception:  # one car's surprise must not stop the account
            log.exception("%s: reading %s failed unexpectedly", ctx.vin, what)
            self._failed(ctx, what, BackendError("internal error"))
            return
        if what == "status":
            ctx.next_status = self.clock() + self.runtime.status_interval()
        elif what == "forced":
            ctx.next_forced = self.clock() + (account.poll.force_interval or MAX_BACKOFF_S)
        else:
            ctx.next_dataset[what] = self.clock() + account.poll.datasets_interval

    def _set_next(self, ctx: VehicleContext, what: str, delay: float) -> None:
        moment = self.clock() + delay
        if what == "status":
            ctx.next_status = moment
        elif what == "forced":
            ctx.next_forced = moment
        else:
            ctx.next_dataset[what] = moment

    def _failed(self, ctx: VehicleContext, what: str, exc: BackendError) -> None:
        account = self.runtime.account
        if isinstance(exc, BudgetExhaustedError):  # wait for the budget, not for a failing vendor
            wait = self._until(exc.until)
            self._set_next(ctx, what, wait)
            log.info("%s: %s; next %s read in %.0f s", ctx.vin, exc, what, wait)
            return
        retry_after = exc.retry_after if isinstance(exc, RateLimitedError) else None
        if what == "forced":
            ctx.next_forced = self.clock() + (account.poll.force_interval or MAX_BACKOFF_S)
            log.warning("%s: forced read failed: %s", ctx.vin, exc)
            return
        if what != "status":
            ctx.next_dataset[what] = self.clock() + backoff(account.poll.datasets_interval, 1, retry_after)
            log.warning("%s: reading %s failed: %s", ctx.vin, what, exc)
            return
        delay = backoff(account.poll.interval, ctx.failures, retry_after)
        ctx.next_status = self.clock() + delay
        log.warning("%s: status read failed (%d in a row): %s; next try in %.0f s", ctx.vin, ctx.failures, exc, delay)
        if isinstance(exc, AuthError):
            self.on_event("auth_error", {"account": account.name, "error": str(exc)})
