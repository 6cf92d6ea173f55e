"""A backend wrapped in its account's call budget: every vendor call is counted by kind and refused
once the budget says so, whatever the vendor. Wrapping keeps the budget out of each backend's code.

One logical call counts once, even when the backend retries it: the ledger is a plan, not a meter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from mqttbridge.backends.base import Backend, StatusSink
from mqttbridge.budget import BudgetLedger
from mqttbridge.errors import BudgetExhaustedError, RateLimitedError
from mqttbridge.model import CommandRequest, ExecutionUpdate, VehicleInfo, VehicleStatus

log = logging.getLogger(__name__)
T = TypeVar("T")


class BudgetedBackend(Backend):
    def __init__(
        self,
        inner: Backend,
        ledger: BudgetLedger,
        *,
        on_change: Callable[[], None] | None = None,
        on_call: Callable[[str, str], None] | None = None,
    ):
        super().__init__(inner.account, inner.store, sleep=inner.sleep, clock=inner.clock, policy=inner.policy)
        self.inner = inner
        self.ledger = ledger
        self.on_change = on_change or (lambda: None)
        #: told (kind, result) after every call that reached the backend: the metrics count them
        self.on_call = on_call or (lambda kind, result: None)

    @property
    def provider(self) -> str:  # type: ignore[override]
        return self.inner.provider

    def _call(self, kind: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        blocked = self.ledger.blocked_until()
        if blocked is not None:
            raise BudgetExhaustedError(
                f"the vendor's own limit was reached; no calls until {blocked.isoformat(timespec='minutes')}",
                until=blocked,
            )
        if not self.ledger.allows(kind):
            snap = self.ledger.snapshot()
            raise BudgetExhaustedError(
                f"the daily call budget allows no more {kind.replace('_', ' ')}s ({snap['used']} of "
                f"{snap['limit']} used, {self.account.poll.command_reserve} kept for commands); "
                f"it resets at {self.ledger.resets_at().isoformat(timespec='minutes')}",
                until=self.ledger.resets_at(),
            )
        self.ledger.spend(kind)
        result = "error"
        try:
            value = func(*args, **kwargs)
            result = "ok"
            return value
        except RateLimitedError as exc:
            result = "rate_limited"
            until = None
            if exc.retry_after is not None:
                until = datetime.now().astimezone() + timedelta(seconds=exc.retry_after)
            self.ledger.vendor_limited(until)
            log.warning(
                "%s: the vendor's rate limit answered; backing off until %s",
                self.account.name,
                (until or self.ledger.resets_at()).isoformat(timespec="minutes"),
            )
            raise
        finally:
            made = self._vendor_calls()
            if made is not None and made > 1:  # the vendor counted every request it saw: so do we
                self.ledger.spend(kind, made - 1)
            elif made == 0:  # nor more: answered without the vendor (a read from a stream's latest data)
                self.ledger.unspend(kind)
            if made and kind == "cached_read":
                self.ledger.read_cost(made)
            self.on_call(kind, result)
            self.on_change()

    def list_vehicles(self) -> list[VehicleInfo]:
        return self._call("cached_read", self.inner.list_vehicles)

    def read_status(self, vehicle: VehicleInfo, *, force: bool = False) -> VehicleStatus:
        kind = "forced_read" if force else "cached_read"
        return self._call(kind, self.inner.read_status, vehicle, force=force)

    def refresh_status(self, vehicle: VehicleInfo) -> VehicleStatus:
        refresh = getattr(self.inner, "refresh_status", None)  # a test's stand-in backend may have none
        if not callable(refresh):
            refresh = self.inner.read_status
        # a read, though a user asked for it: the command reserve stays for commands that act (an unlock)
        return self._call("cached_read", refresh, vehicle)

    def read_dataset(self, vehicle: VehicleInfo, name: str) -> Any:
        return self._call("cached_read", self.inner.read_dataset, vehicle, name)

    def execute(self, vehicle: VehicleInfo, request: CommandRequest) -> ExecutionUpdate:
        return self._call("command", self.inner.execute, vehicle, request)

    def execution_status(self, vehicle: VehicleInfo, started: ExecutionUpdate) -> ExecutionUpdate:
        return self._call("execution_check", self.inner.execution_status, vehicle, started)

    def start(self, sink: StatusSink) -> None:
        start = getattr(self.inner, "start", None)  # a test's stand-in backend may have none
        if callable(start):
            start(sink)  # pushed statuses cost no call: nothing to count

    def stop(self) -> None:
        stop = getattr(self.inner, "stop", None)
        if callable(stop):
            stop()

    def login(self) -> None:
        try:
            self.inner.login()
        finally:
            self._spend_unplanned()

    def submit_code(self, kind: str, code: str) -> None:
        try:
            self.inner.submit_code(kind, code)
        finally:
            self._spend_unplanned()

    def _vendor_calls(self) -> int | None:
        take = getattr(self.inner, "take_vendor_calls", None)  # a stand-in backend of a test may lack it
        return take() if callable(take) else None

    def _spend_unplanned(self) -> None:
        """A login's requests are no read, but a metering vendor counted them against the day's limit."""
        made = self._vendor_calls()
        if made:
            self.ledger.spend("cached_read", made)
            self.on_change()

    def takes_codes(self) -> bool:
        return self.inner.takes_codes()

    def close(self) -> None:
        super().close()
        self.inner.close()
        self.ledger.flush()
