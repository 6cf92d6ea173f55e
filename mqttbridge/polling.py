"""Polling: each account on its own thread and interval, its vehicles read with bounded concurrency.

The data sets (trips, charging profile, ...) have their own slower schedule. A failing vehicle is
read again later and later (doubling, capped at an hour), a 429 waits for the vendor's
``Retry-After``, and after ``offline_after`` failures in a row the vehicle's availability goes
``offline`` until the next success. Nothing here ever reads faster than configured or spins.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mqttbridge.errors import AuthError, BackendError, BudgetExhaustedError, RateLimitedError, UnsupportedError

if TYPE_CHECKING:
    from mqttbridge.bridge import AccountRuntime, VehicleContext

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 3600.0
LIST_RETRY_FIRST_S = 30.0


def backoff(interval: float, failures: int, retry_after: float | None = None) -> float:
    """Seconds until the next read after ``failures`` failures in a row."""
    if failures <= 0:
        return interval
    delay = min(interval * 2 ** (failures - 1), max(interval, MAX_BACKOFF_S))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


class AccountPoller:
    def __init__(self, runtime: AccountRuntime, *, stopping: threading.Event,
                 on_event: Callable[[str, dict[str, Any]], None], clock: Callable[[], float] = time.monotonic):
        self.runtime = runtime
        self.stopping = stopping
        self.on_event = on_event
        self.clock = clock
        self._wake = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=runtime.account.poll.max_parallel,
                                        thread_name_prefix=f"poll-{runtime.account.name}")
        self.thread = threading.Thread(target=self._loop, name=f"account-{runtime.account.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _wait(self, seconds: float) -> bool:
        """Sleep until due, stopped (True) or woken (a new vehicle, a shutdown)."""
        self._wake.clear()
        if self.stopping.is_set():
            return True
        self._wake.wait(max(0.0, seconds))
        return self.stopping.is_set()

    def _loop(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                self.runtime.discover()
                break
            except BackendError as exc:
                failures += 1
                delay = backoff(LIST_RETRY_FIRST_S, failures, getattr(exc, "retry_after", None))
                log.error("account %s: cannot list vehicles: %s; trying again in %.0f s",
                          self.runtime.account.name, exc, delay)
                self.on_event("account_error", {"account": self.runtime.account.name, "error": str(exc)})
                if self._wait(delay):
                    return
        while not self.stopping.is_set():
            now = self.clock()
            jobs = [(ctx, "status") for ctx in self.runtime.vehicles if ctx.next_status <= now]
            jobs += [(ctx, "forced") for ctx in self.runtime.vehicles
                     if ctx.next_forced is not None and ctx.next_forced <= now]
            jobs += [(ctx, name) for ctx in self.runtime.vehicles for name, due in ctx.next_dataset.items()
                     if due <= now]
            if jobs:
                list(self._pool.map(lambda job: self._read(*job), jobs))
                continue
            upcoming = [ctx.next_status for ctx in self.runtime.vehicles]
            upcoming += [ctx.next_forced for ctx in self.runtime.vehicles if ctx.next_forced is not None]
            upcoming += [due for ctx in self.runtime.vehicles for due in ctx.next_dataset.values()]
            if self._wait((min(upcoming) if upcoming else 3600.0) - now):
                return
        self._pool.shutdown(wait=False, cancel_futures=True)

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
                reason = ctx.bridge.forced_read_refusal(ctx)
                if reason is not None:  # battery protection: skipped, and said why
                    self.on_event("forced_read_skipped", {"account": account.name, "vin": ctx.vin, "reason": reason})
                else:
                    ctx.read_status(force=True)
            else:
                ctx.read_dataset(what)
        except UnsupportedError as exc:
            log.info("%s: %s; not asking again", ctx.vin, exc)
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

    def _failed(self, ctx: VehicleContext, what: str, exc: BackendError) -> None:
        account = self.runtime.account
        if isinstance(exc, BudgetExhaustedError):  # wait for the budget, not for a failing vendor
            wait = self._until(exc.until)
            if what == "status":
                ctx.next_status = self.clock() + wait
            elif what == "forced":
                ctx.next_forced = self.clock() + wait
            else:
                ctx.next_dataset[what] = self.clock() + wait
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
