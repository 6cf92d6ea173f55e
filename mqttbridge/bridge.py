"""The bridge: accounts, their vehicles, the MQTT session, commands and discovery wired together.

Threads: paho's network thread (copies messages into a queue), the MQTT dispatcher (routes them),
one poller per account (plus its bounded read pool), one command worker per vehicle. The vehicle
context is where they meet, so its state changes under its own lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from mqttbridge import __version__
from mqttbridge.account import AccountRuntime
from mqttbridge.alerts import Notifier, NotifyTarget
from mqttbridge.announcer import DiscoveryAnnouncer
from mqttbridge.backends import Backend, create_backend
from mqttbridge.backends.budgeted import BudgetedBackend
from mqttbridge.battery import parse_clock
from mqttbridge.budget import BudgetLedger
from mqttbridge.cluster import Cluster
from mqttbridge.config import Config
from mqttbridge.gateway import CommandGateway
from mqttbridge.lockout import UnlockLockout
from mqttbridge.login import LoginDesk
from mqttbridge.metrics import Metrics
from mqttbridge.mqtt import Incoming, MqttSession, SessionFactory
from mqttbridge.normalize import iso
from mqttbridge.persist import ExecutionJournal, SnapshotKeeper
from mqttbridge.polling import AccountPoller
from mqttbridge.publish import Publisher, Throttled, encode
from mqttbridge.restart import PreviousRun
from mqttbridge.statestore import StateStore, take_set_aside
from mqttbridge.vehicle import VehicleContext

log = logging.getLogger(__name__)

#: bridge events that also go to the alert targets (CONTRACT section 8), as their alert kind
EVENT_ALERTS = {
    "auth_error": "auth_failed",
    "action_required": "auth_failed",
    "account_error": "account_failing",
    "vehicle_offline": "account_failing",
    "budget_exhausted": "budget_exhausted",
    "command_failed": "command_failed",
}

#: the retained budget topic is republished at most this often (a change waits at most this long)
BUDGET_INTERVAL_S = 5.0


class Bridge:
    def __init__(
        self,
        config: Config,
        *,
        backends: dict[str, Backend] | None = None,
        clock: Callable[[], float] = time.monotonic,
        session_factory: SessionFactory = MqttSession,
    ):
        self.config = config
        self.clock = clock
        self.base = config.mqtt.base_topic
        self.stopping = threading.Event()
        self.started_at = iso(datetime.now(UTC))
        #: told True/False whenever the broker session comes up or goes down (the service heartbeat)
        self.connection_listeners: list[Callable[[bool], None]] = []
        #: several instances (CONTRACT section 10): the will moves to this instance's own topic
        self.cluster = Cluster(self, config.cluster) if config.cluster is not None else None
        self._session_factory = session_factory  # a cluster instance opens a second, silent one (its presence)
        self.session = session_factory(
            config.mqtt,
            will_topic=self.cluster.will_topic if self.cluster else f"{self.base}/bridge/state",
            on_connect=self._connected,
            on_message=self._message,
            on_disconnect=self._disconnected,
        )
        self.publisher = Publisher(self.session)
        self.notifier = Notifier(
            [NotifyTarget(n.type, n.url) for n in config.notify], interval=float(config.notify_interval)
        )
        self.metrics = Metrics(config.metrics)  # imports prometheus-client only when configured
        store = StateStore(config.state_dir)
        self.accounts = []
        for account in config.accounts:
            inner = (backends or {}).get(account.name) or create_backend(account, store)
            ledger = BudgetLedger(
                account.name,
                limit=account.poll.daily_budget,
                reset=parse_clock(account.poll.budget_reset),
                reserve=account.poll.command_reserve,
                store=store,
            )
            runtime = AccountRuntime(self, account, inner, ledger)
            runtime.budget_out = Throttled(
                partial(self._publish_budget_topic, runtime), BUDGET_INTERVAL_S, name=f"budget-{account.name}"
            )
            runtime.backend = BudgetedBackend(
                inner,
                ledger,
                on_change=partial(self.publish_budget, runtime),
                on_call=partial(self.metrics.vendor_call, account.name),
            )
            self.accounts.append(runtime)
        self.by_root: dict[str, VehicleContext] = {}
        self._lock = threading.Lock()
        self.login = LoginDesk(self.base, self.publisher, self.event)
        for runtime in self.accounts:
            self.login.add(runtime)
        # what the previous run left: running executions, wrong unlock codes, the published state
        self.journal = ExecutionJournal(store)
        entries = self.journal.load() if self.cluster is None else self.cluster.drop_journal(self.journal)
        self.previous = PreviousRun(config, self.publisher, self.journal, entries, self.by_root, self._lock)
        lockout = config.unlock_lockout
        self.lockout = UnlockLockout(
            store, attempts=lockout.attempts, window=lockout.window_minutes * 60.0, duration=lockout.minutes * 60.0
        )
        self.lockout.load()
        self.gateway = CommandGateway(self)
        self.snapshot = SnapshotKeeper(
            store,
            self.publisher,
            self.previous.snapshot_roots,
            excluded=(f"{self.base}/bridge/", f"{config.homeassistant.prefix}/"),
        )
        # in a cluster the broker's retained state is the truth: another instance may have published since
        if self.cluster is None:
            self.previous.restore(self.snapshot)
        self.pollers = [
            AccountPoller(rt, stopping=self.stopping, on_event=self._poller_event, clock=clock) for rt in self.accounts
        ]
        for runtime, poller in zip(self.accounts, self.pollers, strict=True):
            runtime.poller = poller
        self.announcer = DiscoveryAnnouncer(self)
        #: called last at stop (the demo's simulator)
        self.closers: list[Callable[[], None]] = []

    # --- life cycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self.metrics.start(connected=self.session.connected.is_set)  # first: a taken port fails at once
        self.notifier.start()
        self.snapshot.start()
        # remembered now, so subscribed at every connect before anything is published (``MqttSession``): a command
        # sent as soon as bridge/info or Home Assistant shows a vehicle finds the bridge subscribed. Commands for
        # vehicles we do not bridge get an answer too (no silent drop)
        subs = [*self.announcer.subscriptions(), f"{self.base}/+/+/set", *self.login.subscriptions()]
        self.session.subscribe(subs, retain_as_published=True)
        self.session.start()
        if self.cluster is not None:
            self.cluster.start_presence(self._session_factory, self.config.mqtt)
        for poller in self.pollers:
            poller.start()

    def stop(self) -> None:
        """Stop taking commands, publish ``offline`` by hand, disconnect.

        Executions still running stay in the journal: the next start follows them to their end.
        """
        self.stopping.set()
        for poller in self.pollers:
            poller.wake()
        for ctx in list(self.by_root.values()):
            ctx.runner.shutdown()
        for rt in self.accounts:
            if rt.started:
                rt.backend.stop()
            rt.budget_out.flush()  # the last count, before the table is frozen
        self.publisher.frozen = True  # from here on what is on the broker is what the table says
        self.snapshot.stop()
        if self.cluster is not None:
            self.cluster.stop()
        self.session.stop(offline_payload="offline")
        for rt in self.accounts:
            rt.backend.close()
        self.notifier.stop()
        self.metrics.stop()
        for close in self.closers:
            close()

    # --- vehicles -----------------------------------------------------------------------------------

    def add_vehicle(self, ctx: VehicleContext) -> None:
        with self._lock:
            if ctx.root in self.by_root:
                log.error("two vehicles share the root %s; %s is not bridged", ctx.root, ctx.vin)
                self.event("root_conflict", vin=ctx.vin, root=ctx.root)
                return
            self.by_root[ctx.root] = ctx
            if self.cluster is None:  # else served once the cluster gives it to this instance
                ctx.runtime.vehicles.append(ctx)
        if not self._under_base_wildcard(ctx.root):  # else <base>/+/+/set has it: subscribed twice, served twice
            mirror = [f"{ctx.root}/+/execution"] if self.cluster else []  # the records a takeover follows
            self.session.subscribe([f"{ctx.root}/+/set", *mirror], retain_as_published=True)
        log.info("bridging %s (%s %s) at %s", ctx.vin, ctx.info.brand, ctx.info.model, ctx.root)
        self.gateway.vehicle_added(ctx)
        if ctx.status is not None:  # restored from the snapshot: Home Assistant gets its entities now
            self.announcer.publish(ctx)

    def _under_base_wildcard(self, root: str) -> bool:
        prefix = f"{self.base}/"
        return root.startswith(prefix) and "/" not in root[len(prefix) :]

    def vehicles_changed(self) -> None:
        self._report_set_aside()  # e.g. a token file found unreadable while the account logged in
        self.publish_info()
        self.previous.settle(self.accounts)
        self.announcer.maybe_cleanup()

    def _budget_topic(self, runtime: AccountRuntime) -> str:
        return f"{self.base}/bridge/accounts/{runtime.account.name}/budget"

    def publish_budget(self, runtime: AccountRuntime) -> None:
        """At each call counted: the metric, one alert when the day's reads run out, and the retained topic,
        at most every ``BUDGET_INTERVAL_S`` (a command's status checks would republish it every second)."""
        snapshot = runtime.ledger.snapshot()
        remaining = snapshot.get("remaining")
        self.metrics.budget(runtime.account.name, remaining if isinstance(remaining, int) else None)
        exhausted = runtime.ledger.exhausted()
        if exhausted and not runtime.exhausted:
            self.event(
                "budget_exhausted",
                account=runtime.account.name,
                used=snapshot["used"],
                limit=snapshot["limit"],
                resets_at=snapshot["resets_at"],
            )
        urgent, runtime.exhausted = exhausted != runtime.exhausted, exhausted
        runtime.budget_out(now=urgent)

    def _publish_budget_topic(self, runtime: AccountRuntime) -> None:
        self.publisher.retained(self._budget_topic(runtime), encode(self._budget_payload(runtime)))

    def _budget_payload(self, runtime: AccountRuntime) -> dict[str, Any]:
        """The ledger's snapshot; in a cluster the account's calls of every instance (``cluster.budgets``)."""
        own = runtime.ledger.snapshot()
        return self.cluster.budget_view(runtime, own) if self.cluster is not None else own

    def publish_info(self) -> None:
        self.publisher.retained(f"{self.base}/bridge/info", self._info())

    def _info(self) -> str:
        info = {
            "version": __version__,
            "started_at": self.started_at,
            "accounts": [{"name": rt.account.name, "provider": rt.account.provider} for rt in self.accounts],
            "vehicles": [
                {
                    "vin": c.vin,
                    "name": c.config.name,
                    "root": c.root,
                    "account": c.runtime.account.name,
                    "model": c.info.model,
                    "brand": c.info.brand,
                    **({"owner": self.cluster.owner_of(c.vin)} if self.cluster else {}),
                }
                for c in sorted(self.by_root.values(), key=lambda c: c.root)
            ],
        }
        return encode(info)

    # --- MQTT events (the dispatcher thread) ------------------------------------------------------------

    def _connected(self) -> None:
        log.info("connected to the broker %s:%s", self.config.mqtt.host, self.config.mqtt.port)
        self._tell_listeners(True)  # first: whoever sees "online" finds a heartbeat that says connected
        # bridge/state is not in the publisher's table: republish_all below would send "online" twice
        self.session.publish(f"{self.base}/bridge/state", "online", retain=True, qos=1)
        if self.cluster is not None:
            self.cluster.connected()
        self.announcer.connected()
        # known as retained without being sent: republish_all sends everything exactly once
        self.publisher.remember(f"{self.base}/bridge/info", self._info())
        for runtime in self.accounts:
            if runtime.account.poll.daily_budget is not None:
                self.publisher.remember(self._budget_topic(runtime), encode(self._budget_payload(runtime)))
        for topic, payload in self.announcer.bridge_configs():
            self.publisher.remember(topic, payload)
        count = self.publisher.republish_all()
        log.info("published %d retained topics", count)
        self._report_set_aside()

    def _report_set_aside(self) -> None:
        """State files that could not be read (set aside, the bridge went on without them): said on the event
        topic too, since a log line alone is easy to miss. Only once connected: events are not retained."""
        if not self.session.connected.is_set():
            return
        for path, aside, reason in take_set_aside():
            self.event(
                "state_file_set_aside", file=str(path), set_aside_as=str(aside) if aside else None, reason=reason
            )

    def _disconnected(self, _reason: str) -> None:
        self._tell_listeners(False)

    def _tell_listeners(self, connected: bool) -> None:
        for listener in list(self.connection_listeners):
            try:
                listener(connected)
            except Exception:  # a listener (the heartbeat) must not stop the bridge from publishing
                log.exception("a connection listener failed")

    def alive(self) -> bool:
        """Every loop the bridge needs still runs (a dead account thread makes the daemon unhealthy)."""
        if self.stopping.is_set():
            return True
        return self.session.alive() and all(poller.alive() for poller in self.pollers)

    def _message(self, msg: Incoming) -> None:
        topic = msg.topic
        if self.cluster is not None and self.cluster.handle(msg):
            return
        if self.announcer.handle(msg):
            return
        if self.login.is_code(topic):
            self.login.code(msg)
            return
        if topic.endswith("/set"):
            self.gateway.handle(msg)

    def event(self, kind: str, /, **data: Any) -> None:
        payload = {"event": kind, "time": iso(datetime.now(UTC)), **data}
        self.publisher.transient(f"{self.base}/bridge/event", encode(payload))
        alert = EVENT_ALERTS.get(kind)
        if alert is not None:
            detail = data.get("error") or data.get("status") or ""
            what = " ".join(str(data[k]) for k in ("vin", "command") if data.get(k))
            message = f"{kind.replace('_', ' ')} {what} {detail}".strip()
            self.notifier.alert(alert, str(data.get("account", "")), message, data)

    def _poller_event(self, kind: str, data: dict[str, Any]) -> None:
        self.event(kind, **data)
