"""The execution state machine: each accepted command followed until the vendor says it ended.

A vendor call that fails is ``FAILED``. One command runs at a time per vehicle, and a command identical to one
still queued or running is refused, so a double tap never unlocks twice. Parsing a command and the unlock rules,
which come before any of this, are in ``commands``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mqttbridge.commands import ParsedCommand, Rejected
from mqttbridge.errors import BackendError, UnsupportedError
from mqttbridge.model import CommandRequest, ExecutionStatus, ExecutionUpdate
from mqttbridge.normalize import iso

log = logging.getLogger(__name__)

#: the error of an execution a restarted bridge found without the vendor's confirmation (never resent)
NOT_CONFIRMED = "the bridge restarted before the vendor confirmed the command; not sent again"


def _now() -> str:
    return iso(datetime.now(UTC))


@dataclass
class Execution:
    """The record published on ``<root>/<command>/execution`` (CONTRACT section 5)."""

    request_id: str
    command: str
    action: str
    service: str | None = None
    status: ExecutionStatus = ExecutionStatus.INITIATED
    event_id: str | None = None
    received_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    error: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    #: the request's parameters (not published: kept so a restarted bridge knows what was sent)
    params: dict[str, Any] = field(default_factory=dict)
    #: identifies this execution in the journal of running executions (state_dir/executions.json)
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: wall time it arrived, for the duration metric (a resumed one: its received_at)
    arrived: float = field(default_factory=time.time)

    def record(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "command": self.command,
            "action": self.action,
            "service": self.service,
            "status": self.status.value,
            "event_id": self.event_id,
            "received_at": self.received_at,
            "updated_at": self.updated_at,
            "error": self.error,
        }


class CommandTarget:
    """What the runner needs of one vehicle; the bridge implements it (kept small to test the runner)."""

    def execute(self, request: CommandRequest) -> ExecutionUpdate:  # pragma: no cover - interface
        raise NotImplementedError

    def execution_status(self, started: ExecutionUpdate) -> ExecutionUpdate:  # pragma: no cover
        raise NotImplementedError

    def refresh(self, *, force: bool = False) -> None:  # pragma: no cover
        raise NotImplementedError

    def observed(self, command: str) -> str | None:  # pragma: no cover
        raise NotImplementedError

    def publish(self, execution: Execution) -> None:  # pragma: no cover
        raise NotImplementedError

    def lock_started(self, action: str) -> None:  # pragma: no cover
        raise NotImplementedError

    def lock_executed(self, action: str) -> None:
        """The vendor confirmed the lock command: show the state it produced until the car is read again
        (a no-op unless overridden)."""

    def lock_ended(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def remember(self, execution: Execution) -> None:
        """Keep a running execution where a restarted bridge finds it (a no-op unless overridden)."""

    def forget(self, execution: Execution) -> None:
        """The execution ended: nothing to resume (a no-op unless overridden)."""


def _duplicate_key(request: CommandRequest) -> tuple[str, str, str]:
    return request.command, request.action, json.dumps(request.params, sort_keys=True)


def _seconds_since(stamp: str) -> float:
    """Seconds since an ISO time (0 when it cannot be read: then the full timeout applies)."""
    try:
        then = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return 0.0
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - then).total_seconds())


class CommandRunner:
    """One vehicle's commands, one at a time, each followed until the vendor says it ended.

    A running execution is remembered (``CommandTarget.remember``) from before the vendor is called
    until it ends, so that a bridge killed meanwhile follows it after its restart (``resume``)
    instead of losing it, and never sends it twice.
    """

    def __init__(
        self,
        target: CommandTarget,
        *,
        poll_interval: float,
        timeout: float,
        refresh_delay: float,
        stopping: threading.Event,
        clock: Callable[[], float],
    ):
        self.target = target
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.refresh_delay = refresh_delay
        self.stopping = stopping
        self.clock = clock
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="command")
        self._lock = threading.Lock()
        self._active: dict[tuple[str, str, str], Execution] = {}
        self._show_again = threading.Event()

    def submit(self, parsed: ParsedCommand, execution: Execution) -> None:
        request = parsed.request
        execution.params = dict(request.params)
        self._claim(request, execution)
        self._worker.submit(self._run, request, execution)

    def resume(self, execution: Execution) -> None:
        """Follow an execution that an earlier run of the bridge sent: never sent again."""
        request = CommandRequest(execution.command, execution.action, dict(execution.params))
        self._claim(request, execution)
        if request.command == "lock" and not execution.status.final and execution.event_id:
            # now, not on the worker: the first read after the restart must not publish the old lock state
            self.target.lock_started(request.action)
        self._worker.submit(self._run, request, execution, True)

    def show_again(self) -> None:
        """The vehicle was taken hold of again (a cluster instance back from a gap) while an execution of ours ran:
        what it published meanwhile was dropped, so its record is published once more by the worker at its next
        status check (the worker alone publishes it: a record sent from here could land after a newer one)."""
        with self._lock:
            running = list(self._active.values())
        for execution in running:
            if execution.command == "lock" and not execution.status.final and execution.event_id:
                self.target.lock_started(execution.action)  # LOCKING/UNLOCKING before the first read shows the car
        if running:
            self._show_again.set()

    def busy(self, command: str) -> bool:
        """Whether an execution of ``command`` is queued or running (it owns the command's retained record)."""
        with self._lock:
            return any(key[0] == command for key in self._active)

    def idle(self) -> bool:
        """No execution queued or running (a cluster lets the vehicle go to another instance only then)."""
        with self._lock:
            return not self._active

    def _claim(self, request: CommandRequest, execution: Execution) -> None:
        key = _duplicate_key(request)
        with self._lock:
            running = self._active.get(key)
            if running is not None:
                raise Rejected(f"an identical command is still running (request_id {running.request_id})")
            self._active[key] = execution

    def _update(self, execution: Execution, status: ExecutionStatus, *, error: str | None = None) -> None:
        execution.status = status
        execution.updated_at = _now()
        if error is not None:
            execution.error = error
        if status.final:
            self._release(execution)  # once its end is published the same command may come again
        else:
            self.target.remember(execution)  # before it is published: what others saw is on disk
        if status is ExecutionStatus.EXECUTED and execution.command == "lock":
            self.target.lock_executed(execution.action)  # before the record: whoever reacts to it sees it
        self.target.publish(execution)
        if status.final:
            self.target.forget(execution)

    def _release(self, execution: Execution) -> None:
        with self._lock:
            for key, active in list(self._active.items()):
                if active is execution:
                    del self._active[key]

    def _run(self, request: CommandRequest, execution: Execution, resumed: bool = False) -> None:
        is_lock = request.command == "lock"
        try:
            if request.command in ("refresh", "force_refresh"):
                self._refresh(execution, force=request.command == "force_refresh")
                return
            if resumed:
                self._resume(request, execution, is_lock)
                return
            if is_lock:
                self.target.lock_started(request.action)
            self._follow(request, execution)
        except Exception as exc:  # a worker must always publish an end
            log.exception("command %s %s failed unexpectedly", request.command, request.action)
            self._update(execution, ExecutionStatus.FAILED, error=f"internal error: {type(exc).__name__}")
        finally:
            if is_lock:
                self.target.lock_ended()
            self._release(execution)

    def _refresh(self, execution: Execution, *, force: bool) -> None:
        self.target.publish(execution)
        try:
            self.target.refresh(force=force)
        except BackendError as exc:
            self._update(execution, ExecutionStatus.FAILED, error=str(exc))
        else:
            self._update(execution, ExecutionStatus.EXECUTED)

    def _follow(self, request: CommandRequest, execution: Execution) -> None:
        # on disk before the vendor hears of it: killed during the call, a restart must not resend it
        self.target.remember(execution)
        try:
            started = self.target.execute(request)
        except UnsupportedError as exc:
            log.warning("rejected %s %s (request %s): %s", request.command, request.action, execution.request_id, exc)
            self._update(execution, ExecutionStatus.REJECTED, error=str(exc))
            return
        except BackendError as exc:
            self._update(execution, ExecutionStatus.FAILED, error=str(exc))
            return
        execution.service = started.service
        execution.event_id = started.event_id
        last = ExecutionStatus.INITIATED
        if started.status not in (ExecutionStatus.UNKNOWN, last):
            last = started.status
        self._update(execution, last)
        self._poll(request, execution, started, last, self.clock() + self.timeout)

    def _resume(self, request: CommandRequest, execution: Execution, is_lock: bool) -> None:
        """After a restart: without the vendor's event id the outcome is unknown, so FAILED; else follow it
        from its last status until the timeout counted from when the command arrived."""
        if execution.status.final:  # it ended as the previous run stopped: publish that end once more
            self._update(execution, execution.status)
            return
        if not execution.event_id:
            log.warning(
                "%s %s (request %s) was sent by the previous run without a confirmation; not resent",
                request.command,
                request.action,
                execution.request_id,
            )
            self._update(execution, ExecutionStatus.FAILED, error=NOT_CONFIRMED)
            return
        log.info(
            "resuming %s %s (request %s, event %s) at %s",
            request.command,
            request.action,
            execution.request_id,
            execution.event_id,
            execution.status.value,
        )
        # LOCKING/UNLOCKING is shown already: resume() did it before this worker ran
        self.target.publish(execution)  # as it stood when the previous run ended
        started = ExecutionUpdate(execution.status, execution.service or "", execution.event_id)
        remaining = self.timeout - _seconds_since(execution.received_at)
        self._poll(request, execution, started, execution.status, self.clock() + remaining)

    def _poll(
        self,
        request: CommandRequest,
        execution: Execution,
        started: ExecutionUpdate,
        last: ExecutionStatus,
        deadline: float,
    ) -> None:
        problems = 0
        while not last.final:
            if self.clock() >= deadline:
                self._update(execution, ExecutionStatus.TIMED_OUT, error=self._timed_out(request))
                return
            if self._show_again.is_set():
                self._show_again.clear()
                self.target.publish(execution)
            if self.stopping.wait(self.poll_interval):
                log.info(
                    "stopping: %s %s left at %s (followed again at the next start)",
                    request.command,
                    request.action,
                    last.value,
                )
                return
            try:
                update = self.target.execution_status(started)
            except BackendError as exc:  # the legacy API's "server panic" 500s: keep polling
                problems += 1
                log.warning("%s status check %d failed: %s", started.service, problems, exc)
                continue
            if update.status is ExecutionStatus.UNKNOWN or update.status == last:
                continue
            last = update.status
            self._update(execution, last)
        if last is ExecutionStatus.EXECUTED:
            if self.refresh_delay and self.stopping.wait(self.refresh_delay):
                return
            try:
                self.target.refresh()
            except BackendError as exc:
                log.warning("reading the car after %s failed: %s", started.service, exc)

    def _timed_out(self, request: CommandRequest) -> str:
        """Some vendors (the Hyundai/Kia EU API) say PENDING long after the car acted: read the car and say
        what it shows, so the user can tell "nothing happened" from "it happened, unconfirmed"."""
        error = f"no final status from the vendor within {self.timeout:g} s"
        try:
            self.target.refresh()
        except BackendError as exc:
            return f"{error}; reading the car failed too ({exc})"
        seen = self.target.observed(request.command)
        return f"{error}; {seen}" if seen else error

    def shutdown(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
