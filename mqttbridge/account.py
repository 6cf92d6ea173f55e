"""One account at run time: its backend (inside its budget), its vehicles, its poller, its login state."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mqttbridge.backends import Backend
from mqttbridge.battery import ForcedReadPolicy
from mqttbridge.budget import BudgetLedger
from mqttbridge.config import VehicleConfig, default_vehicle_name
from mqttbridge.errors import ActionRequiredError
from mqttbridge.model import VehicleStatus
from mqttbridge.publish import Throttled, encode
from mqttbridge.vehicle import VehicleContext

if TYPE_CHECKING:
    from mqttbridge.bridge import Bridge
    from mqttbridge.polling import AccountPoller

log = logging.getLogger(__name__)


@dataclass
class AccountRuntime:
    bridge: Bridge
    account: Any
    backend: Backend
    ledger: BudgetLedger
    vehicles: list[VehicleContext] = field(default_factory=list)
    listed: threading.Event = field(default_factory=threading.Event)
    exhausted: bool = False
    #: publishes the retained budget topic, coalescing bursts
    budget_out: Throttled = field(default_factory=lambda: Throttled(lambda: None, 0.0))
    poller: AccountPoller | None = None
    #: the backend was started (``Backend.start``): once, after the first listing
    started: bool = False

    @property
    def policy(self) -> ForcedReadPolicy:
        return ForcedReadPolicy.from_poll(self.account.poll)

    def status_interval(self) -> float:
        """The configured interval, stretched so the day's budget lasts (CONTRACT section 8)."""
        return self.ledger.read_interval(max(1, len(self.vehicles)), float(self.account.poll.interval))

    @property
    def name(self) -> str:
        return str(self.account.name)

    def takes_codes(self) -> bool:
        return self.backend.takes_codes()

    def submit_code(self, kind: str, code: str) -> None:
        self.backend.submit_code(kind, code)

    def __post_init__(self) -> None:
        self.backend.login_listener = self

    # --- LoginListener: a login that changes on its own (a device code polled in the background) -------------

    def login_required(self, exc: ActionRequiredError) -> None:
        self.bridge.login.required(self.name, exc)

    def login_completed(self) -> None:
        self.bridge.login.ok(self.name)
        self.resume()

    def resume(self) -> None:
        """A login was completed: read every vehicle now (the account may have been waiting an hour)."""
        for ctx in self.vehicles:
            ctx.next_status = 0.0
        if self.poller is not None:
            self.poller.wake()

    def discover(self) -> None:
        """List the account's vehicles (configured ones only, when it lists any) and bridge them."""
        try:
            infos = self.backend.list_vehicles()
        except ActionRequiredError as exc:
            self.bridge.login.required(self.name, exc)
            raise
        self.bridge.login.ok(self.name)
        wanted = {v.vin.upper(): v for v in self.account.vehicles}
        # a retry after a partial listing adds no twin (in a cluster, ``vehicles`` holds only those served here)
        bridged = {ctx.vin.upper() for ctx in self.bridge.by_root.values() if ctx.runtime is self}
        for info in infos:
            vconfig = wanted.pop(info.vin.upper(), None)
            if (self.account.vehicles and vconfig is None) or info.vin.upper() in bridged:
                continue
            vconfig = vconfig or VehicleConfig(vin=info.vin, name=default_vehicle_name(info.vin))
            self.bridge.add_vehicle(VehicleContext(self.bridge, self, info, vconfig))
        for missing in wanted.values():
            log.error("account %s does not list the configured vehicle %s", self.account.name, missing.vin)
            self.bridge.event("vehicle_missing", account=self.account.name, vin=missing.vin)
        self.bridge.previous.resume(self)
        self.listed.set()
        self.bridge.vehicles_changed()
        if not self.started:  # a pushing backend (a stream) starts handing statuses over now
            self.started = True
            self.backend.start(self)

    def event(self, kind: str, /, **data: Any) -> None:
        """``StatusSink``: an event of the backend's own (a stream that keeps being dropped), with the account."""
        self.bridge.event(kind, account=self.name, **data)

    def relay(self, topic: str, payload: bytes) -> None:
        """``StatusSink``: a raw vendor message, unchanged and not retained (``stream.republish``)."""
        self.bridge.session.publish(topic, payload, retain=False, qos=0)

    def account_state(self, name: str, data: dict[str, Any]) -> None:
        """``StatusSink``: retained on ``<base>/bridge/accounts/<account>/<name>`` (published when it changes)."""
        self.bridge.publisher.retained(f"{self.bridge.base}/bridge/accounts/{self.name}/{name}", encode(data))

    def push(self, vin: str, status: VehicleStatus) -> None:
        """``StatusSink``: a status the backend pushed; charged to no budget, dropped for an unbridged car."""
        ctx = next((c for c in self.vehicles if c.vin.upper() == vin.upper()), None)
        if ctx is None:
            log.debug("account %s: a pushed status for %s, which is not bridged", self.name, vin)
            return
        ctx.push_status(status)
