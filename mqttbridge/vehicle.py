"""One bridged vehicle: its backend calls, its retained topics, its last status and its command runner.

Threads meet here (the account's poller, the vehicle's command worker, a pushing backend's thread), so
its reads run one at a time and the lock topic changes under its own lock.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from mqttbridge import discovery, providers
from mqttbridge.config import VehicleConfig
from mqttbridge.errors import ActionRequiredError, BackendError, BudgetExhaustedError, UnsupportedError
from mqttbridge.execution import CommandRunner, CommandTarget, Execution
from mqttbridge.model import CommandRequest, ExecutionUpdate, VehicleInfo, VehicleStatus
from mqttbridge.publish import VehiclePublisher

if TYPE_CHECKING:
    from mqttbridge.account import AccountRuntime
    from mqttbridge.bridge import Bridge

log = logging.getLogger(__name__)


class VehicleContext(CommandTarget):
    """One bridged vehicle: its backend, its topics, its last status and its command runner."""

    def __init__(self, bridge: Bridge, runtime: AccountRuntime, info: VehicleInfo, vconfig: VehicleConfig):
        self.bridge = bridge
        self.runtime = runtime
        self.info = info
        self.config = vconfig
        self.vin = info.vin
        self.root = bridge.config.root_topic(vconfig)
        #: what the provider's cars have beyond the common fields (its field names stay out of the core)
        self.offers = providers.offers(runtime.account.provider)
        self.out = VehiclePublisher(bridge.publisher, self.root)
        self.status: VehicleStatus | None = None
        #: the discovery topics last published for this vehicle (their payloads: ``Publisher.payload``)
        self.announced: list[str] = []
        self.failures = 0
        self.available: bool | None = None
        self.next_status = 0.0
        self.next_dataset: dict[str, float] = dict.fromkeys(sorted(info.datasets), 0.0)
        force_interval = runtime.account.poll.force_interval
        #: forced (waking) reads only on a schedule when force_interval asks for one
        self.next_forced: float | None = (
            bridge.clock() + force_interval if force_interval and info.supports("force_refresh") else None
        )
        self._read_lock = threading.Lock()
        #: reads started so far, and the count when a lock command's produced state was shown: only a read
        #: that started after the vendor's EXECUTED may replace that state (an older one would show the past)
        self._reads_started = 0
        self._lock_shown_at: int | None = None
        self._lock_state = threading.Lock()
        commands = runtime.account.commands
        self.runner = CommandRunner(
            self,
            poll_interval=commands.poll_interval,
            timeout=commands.timeout,
            refresh_delay=commands.refresh_delay,
            stopping=bridge.stopping,
            clock=bridge.clock,
        )
        saved = bridge.previous.restored.get(self.vin)
        if saved is not None and saved.root == self.root:
            # the last run's status: battery rules and discovery have it before the first read
            self.status = self.out.restore(self.vin, saved.topics)

    # --- reading ---------------------------------------------------------------------------------

    def read_status(self, *, force: bool = False, asked: bool = False) -> VehicleStatus:
        """``asked``: a user's refresh, which a pushing backend answers from the vendor, not from its stream."""
        with self._read_lock:  # a refresh command and the poller never read the same car at once
            with self._lock_state:
                self._reads_started += 1
                started = self._reads_started
            try:
                backend = self.runtime.backend
                if asked and not force:
                    status = backend.refresh_status(self.info)
                else:
                    status = backend.read_status(self.info, force=force)
            except BudgetExhaustedError:
                raise  # our own budget, not the vendor failing: availability stays as it is
            except ActionRequiredError as exc:
                self.failures += 1
                self.set_available(False)
                self.bridge.login.required(self.runtime.name, exc)  # said once, not at every read
                raise
            except BackendError:
                self.failures += 1
                if self.failures >= self.runtime.account.poll.offline_after:
                    self.set_available(False)
                raise
            self._accept(status, started)
            return status

    def push_status(self, status: VehicleStatus) -> None:
        """A status a pushing backend handed over (a stream): published like a read, only what changed."""
        with self._read_lock:
            with self._lock_state:
                self._reads_started += 1
                started = self._reads_started
            self._accept(status, started)

    def _accept(self, status: VehicleStatus, started: int) -> None:
        if not self._held():  # a read that ended after another instance took the vehicle over: not ours to show
            return
        self.failures = 0
        self.status = status
        self.bridge.login.ok(self.runtime.name)
        self.bridge.metrics.vehicle_read(self.vin, self.config.name, time.time())
        with self._lock_state:  # with lock_started: the lock topic never goes back to the old state
            if self._lock_shown_at is not None and started > self._lock_shown_at:
                self._lock_shown_at = None  # the car was read after the command: its state is the truth
                self.out.lock_override = None
            changed = self.out.status(status)
            self.out.lock()  # also when nothing else changed: a shown LOCKED gives way to the car's state
        self.set_available(True)
        if changed or not self.announced:
            self.bridge.announcer.publish(self)

    def read_dataset(self, name: str) -> None:
        self.out.dataset(name, self.runtime.backend.read_dataset(self.info, name))

    def set_available(self, online: bool) -> None:
        if self.available is online or not self._held():
            return
        self.available = online
        self.out.availability(online)
        if not online:
            self.bridge.event(
                "vehicle_offline",
                account=self.runtime.account.name,
                vin=self.vin,
                root=self.root,
                failures=self.failures,
            )

    # --- CommandTarget ---------------------------------------------------------------------------

    def execute(self, request: CommandRequest) -> ExecutionUpdate:
        cluster = self.bridge.cluster
        if cluster is not None and not cluster.acts_on(self.vin):  # the last guard before the vendor
            raise BackendError("this instance does not serve the vehicle any more; not sent")
        if request.command == "charge_limit":
            request = self._both_limits(request)
        return self.runtime.backend.execute(self.info, request)

    def _both_limits(self, request: CommandRequest) -> CommandRequest:
        """The vendor sets AC and DC together; a slider moves one, so the other keeps its current value."""
        params = dict(request.params)
        fields = self.status.fields if self.status else {}
        names = dict(zip(("ac", "dc"), self.offers.charge_limits or ("", ""), strict=True))
        for side in ("ac", "dc"):
            if side not in params:
                current = fields.get(names[side])
                if current is None:
                    raise UnsupportedError(f"the current {side.upper()} charge limit is unknown; send both ac and dc")
                params[side] = int(current)
        return CommandRequest(request.command, request.action, params)

    def execution_status(self, started: ExecutionUpdate) -> ExecutionUpdate:
        return self.runtime.backend.execution_status(self.info, started)

    def refresh(self, *, force: bool = False) -> None:
        self.read_status(force=force, asked=True)

    def observed(self, command: str) -> str | None:
        """What the car shows now for ``command`` (after a timeout: did it act anyway?)."""
        name = self.offers.observed.get(command)
        if name is None or self.status is None or name not in self.status.fields:
            return None
        return f"the car now reports {name} {self.status.fields[name]}"

    def publish(self, execution: Execution) -> None:
        if self._held():
            self.bridge.gateway.publish_execution(self, execution)

    def _held(self) -> bool:
        """Whether this instance publishes for the vehicle (always, unless a cluster gave it to another)."""
        cluster = self.bridge.cluster
        return cluster is None or cluster.holds(self.vin)

    def lock_started(self, action: str) -> None:
        if not self._held():
            return
        with self._lock_state:
            self._lock_shown_at = None
            self.out.lock_override = "LOCKING" if action == "LOCK" else "UNLOCKING"
            self.out.lock()

    def lock_executed(self, action: str) -> None:
        """The vendor said EXECUTED: show LOCKED/UNLOCKED now, not after the re-read (``refresh_delay``)."""
        if not self._held():
            return
        with self._lock_state:
            self._lock_shown_at = self._reads_started
            self.out.lock_override = "LOCKED" if action == "LOCK" else "UNLOCKED"
            self.out.lock()

    def lock_ended(self) -> None:
        """A produced state stays until a read confirms or corrects it; a transition word never outlives it."""
        with self._lock_state:
            if self._lock_shown_at is None:
                self.out.lock_override = None
                self.out.lock()

    def remember(self, execution: Execution) -> None:
        self.bridge.journal.save(self.vin, execution)
        if self.bridge.cluster is not None and not execution.event_id:
            # on the broker before the vendor hears of it: if this instance dies now, the next owner finds the
            # command and ends it FAILED instead of never answering (it is never sent twice)
            self.publish(execution)

    def forget(self, execution: Execution) -> None:
        self.bridge.journal.remove(execution)

    def discovered(self) -> discovery.DiscoveredVehicle:
        return discovery.DiscoveredVehicle(
            vin=self.vin,
            name=self.config.name,
            root=self.root,
            info=self.info,
            fields=dict(self.status.fields) if self.status else {},
            has_location=bool(self.status and self.status.location),
            unlock_code=self.config.unlock_code is not None,
            offers=self.offers,
        )
