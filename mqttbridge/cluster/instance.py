"""This instance's part in a cluster at run time: its announcements, its view of the others, the vehicles it holds."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mqttbridge import __version__
from mqttbridge.cluster.budgets import BudgetParts, own_parts, parts_of
from mqttbridge.cluster.handover import Handover
from mqttbridge.cluster.presence import BridgeState
from mqttbridge.cluster.rules import LiveSet, owner
from mqttbridge.config import ClusterConfig, MqttConfig
from mqttbridge.mqtt import Incoming, Session, SessionFactory
from mqttbridge.normalize import iso
from mqttbridge.publish import VehiclePublisher, encode

if TYPE_CHECKING:
    from mqttbridge.account import AccountRuntime
    from mqttbridge.bridge import Bridge
    from mqttbridge.persist import ExecutionJournal, JournalEntry
    from mqttbridge.vehicle import VehicleContext

log = logging.getLogger(__name__)


class Cluster:
    """This instance's part: its announcements, its view of the others, the vehicles it holds.

    Decisions (``evaluate``) run on the MQTT dispatcher thread, like every command, so a vehicle is never let go
    between the ownership check and the hand-over of a command to its runner. ``holds`` and ``acts_on`` are read
    from any thread.
    """

    def __init__(
        self,
        bridge: Bridge,
        config: ClusterConfig,
        *,
        clock: Callable[[], float] | None = None,
    ):
        self.bridge = bridge
        self.id = config.id
        self.takeover_s = float(config.takeover_s)
        self.interval = self.takeover_s / 4
        self.clock = clock or bridge.clock
        self.base = bridge.base
        self.prefix = f"{self.base}/bridge/instances/"
        self.will_topic = f"{self.prefix}{self.id}"
        self.info_topic = f"{self.will_topic}/info"
        self.run = uuid.uuid4().hex
        self.view = LiveSet(self.id, self.takeover_s)
        #: vin -> the vehicle this instance serves now
        self.held: dict[str, VehicleContext] = {}
        self._first_echo: float | None = None
        self._last_echo: float | None = None
        self._live: frozenset[str] = frozenset()
        self._owners: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._info_lock = threading.Lock()
        #: when another process last announced itself with our id (a configuration error): we act on nothing then
        self._twin_at: float | None = None
        #: ``<base>/bridge/state`` while instances come and go: the presence connection and its answers
        self.state = BridgeState(self.base, self.id, self.interval)
        #: the retained execution records, and the commands that came in the gap of a take-over (``park``)
        self.handover = Handover(bridge, self.view, self.clock, keep_s=2 * self.takeover_s)
        #: what the other instances spent of each account's budget (the account's budget topic adds it up)
        self.budgets = BudgetParts()

    # --- what the bridge asks -----------------------------------------------------------------------------------

    def holds(self, vin: str) -> bool:
        """This instance publishes for ``vin`` (it serves it, or lets it go once its commands ended)."""
        return vin in self.held

    def acts_on(self, vin: str) -> bool:
        """A command for ``vin`` may be taken, or sent to the vendor, now."""
        return vin in self.held and not self.fenced()

    def fenced(self) -> bool:
        """Cut off from the broker too long to be sure the others still count this instance alive."""
        last = self._last_echo
        connected = self.bridge.session.connected.is_set()
        now = self.clock()
        if self._twin_at is not None and now - self._twin_at < self.takeover_s:
            return True
        return not connected or last is None or now - last >= self.takeover_s / 2

    def _cut_off(self) -> bool:
        last = self._last_echo
        return last is not None and self.clock() - last >= self.takeover_s / 2

    def refusal(self, vin: str) -> str | None:
        """Why a command for ``vin`` is refused here, when nobody would act on it (else None: another instance
        answers). This instance is its owner but has not taken hold yet (just started, fenced, or the previous
        owner let go a moment ago) and no other instance that may act lists it: the command would be lost."""
        if vin in self.held or self.owner_of(vin) != self.id or self.view.blockers(vin, self.clock()):
            return None
        return (
            f"not executed: the vehicle is being handed over to the instance {self.id}; "
            "send the command again in a few seconds"
        )

    def park(self, ctx: VehicleContext, msg: Incoming, command: str) -> bool:
        """Keep a command for a vehicle that is ours once its previous owner is certainly dead (nobody may act on it
        now); it is answered at the take-over (``handover.py``). False: not such a gap (the caller does as before)."""
        now = self.clock()
        if ctx.vin in self.held or self.owner_of(ctx.vin) != self.id or not self.view.blockers(ctx.vin, now):
            return False
        self.handover.park(ctx, msg, command, now)
        return True

    def owner_of(self, key: str) -> str | None:
        """The owner of a VIN (or of any key, e.g. a root nobody bridges) over this instance's live set."""
        found = self._owners.get(key)
        if found is None:
            found = owner(key, self._live or {self.id})
        return found

    def answers(self, root: str) -> bool:
        """Whether this instance answers a command for a root nobody bridges (one instance does, not all)."""
        return self.owner_of(root) == self.id

    def subscriptions(self) -> list[str]:
        return [f"{self.prefix}+", f"{self.prefix}+/info", f"{self.base}/bridge/state", f"{self.base}/+/+/execution"]

    def drop_journal(self, journal: ExecutionJournal) -> list[JournalEntry]:
        """In a cluster the retained records are the truth (another instance may have followed these meanwhile):
        the previous run's journal is emptied, nothing of it is resumed from here."""
        entries = journal.load()
        for entry in entries:
            journal.remove(entry.execution)
        if entries:
            log.info(
                "cluster: %d executions of the previous run are followed from their retained records", len(entries)
            )
        return []

    # --- life cycle ---------------------------------------------------------------------------------------------

    def connected(self) -> None:
        """Subscribe, then announce: info first (its heartbeat makes this instance alive), then ``online``."""
        session = self.bridge.session
        session.subscribe(self.subscriptions())
        self.publish_info()
        session.publish(self.will_topic, "online", retain=True, qos=1)
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="cluster-heartbeat", daemon=True)
            self._thread.start()

    @property
    def presence(self) -> Session | None:
        return self.state.session

    def start_presence(self, factory: SessionFactory, mqtt: MqttConfig) -> None:
        """A second, silent connection whose will is ``<base>/bridge/state`` ``offline`` (``presence.py``): the
        bridge's state stays ``offline`` only when no instance is left (CONTRACT §10)."""
        self.state.connect(factory, mqtt)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            if self.bridge.session.connected.is_set():
                self.publish_info()

    def publish_info(self) -> None:
        with self._info_lock:  # the heartbeat thread and the dispatcher: the latest list goes out last
            info = {
                "id": self.id,
                "run": self.run,
                # cut off too long, what it held may be another's now: it claims nothing until it takes hold again
                "vins": [] if self._cut_off() else sorted(self.held),
                "heartbeat": iso(datetime.now(UTC)),
                "takeover_s": self.takeover_s,
                "version": __version__,
                "budgets": own_parts({rt.account.name: rt.ledger.snapshot() for rt in self.bridge.accounts}),
            }
            self.bridge.session.publish(self.info_topic, encode(info), retain=True, qos=1)

    def stop(self) -> None:
        """Let every vehicle go at once (the others need not wait for a death) and, when no other instance is
        alive, say ``offline`` on ``<base>/bridge/state``; the session then publishes this instance's ``offline``."""
        self._stop.set()
        self.state.close()  # a clean goodbye: its will is not sent
        if not self.bridge.session.connected.is_set():
            return
        self.held = {}
        self.publish_info()
        if self.view.live(self.clock()) == {self.id}:
            self.bridge.session.publish(f"{self.base}/bridge/state", "offline", retain=True, qos=1)

    # --- messages (the dispatcher thread) -----------------------------------------------------------------------

    def handle(self, msg: Incoming) -> bool:
        """Instance topics, the bridge's state and execution records; False: not the cluster's."""
        topic = msg.topic
        if topic.endswith("/execution") and not topic.startswith(f"{self.base}/bridge/"):
            self.handover.record(topic, msg.payload)
            return True
        if topic == f"{self.base}/bridge/state":
            if msg.payload == b"offline" and not self._stop.is_set() and self.bridge.session.connected.is_set():
                self.state.answer(self.bridge.session)
            return True
        if not topic.startswith(self.prefix):
            return False
        rest = topic[len(self.prefix) :]
        instance, _, leaf = rest.partition("/")
        now = self.clock()
        if leaf == "info":
            self._info(instance, msg.payload, now)
        elif not leaf:
            self._state(instance, msg.payload, now)
        else:
            return True
        self.evaluate(now)
        return True

    def _state(self, instance: str, payload: bytes, now: float) -> None:
        word = payload.decode("utf-8", "replace").strip()
        if instance == self.id:
            if word == "offline" and not self._stop.is_set():  # an old will (a reconnect, the last run): not us
                self.bridge.session.publish(self.will_topic, "online", retain=True, qos=1)
            return
        if not payload:
            self.view.forget(instance)
        else:
            self.view.state(instance, word, now)

    def _info(self, instance: str, payload: bytes, now: float) -> None:
        try:
            data = json.loads(payload) if payload else None
        except ValueError:
            data = None
        if instance == self.id:
            if isinstance(data, dict) and data.get("run") == self.run:
                self._echo(now)
            elif data is not None and self._first_echo is not None:  # not our last run's retained info: a twin
                self._twin(now)
            return
        if data is None:
            self.view.forget(instance)
            self._budgets_changed(self.budgets.forget(instance))
            return
        vins = data.get("vins") if isinstance(data, dict) else None
        run = data.get("run") if isinstance(data, dict) and isinstance(data.get("run"), str) else None
        self.view.info(instance, [str(v) for v in vins] if isinstance(vins, list) else [], now, run)
        self._budgets_changed(self.budgets.update(instance, parts_of(data)))

    def _budgets_changed(self, accounts: set[str]) -> None:
        for runtime in self.bridge.accounts:
            if runtime.account.name in accounts:
                runtime.budget_out()  # coalesced: another instance's heartbeat comes every takeover_s / 4

    def budget_view(self, runtime: AccountRuntime, own: dict[str, Any]) -> dict[str, Any]:
        """The account's budget topic: its calls from every instance, this one's part under ``instance``."""
        return self.budgets.view(self.id, runtime.account.name, own, runtime.ledger.account_limit)

    def _echo(self, now: float) -> None:
        """Our own heartbeat came back: we are on the broker. After a gap the others may have counted us dead:
        every vehicle is let go and taken again by the rules (``takeover_s / 4`` after this echo)."""
        with self._info_lock:  # let go before the heartbeat thread may claim them again
            silent = now - self._last_echo if self._last_echo is not None else 0.0
            gap = silent >= self.takeover_s / 2
            if gap:
                log.warning("cluster: cut off from the broker for %.0f s; taking the vehicles again", silent)
                for ctx in list(self.held.values()):
                    self._let_go(ctx)
                self._first_echo = now
            elif self._first_echo is None:
                self._first_echo = now
            self._last_echo = now
        if gap:
            self.publish_info()
        elif not self._stop.is_set():
            self.state.heartbeat_back(self.bridge.session, now, self.view.live(now))

    def _twin(self, now: float) -> None:
        """Two processes share this cluster id: both would act on the same vehicles. Each stops acting (safety
        first) and says why, until the other has been silent for ``takeover_s``."""
        if self._twin_at is None or now - self._twin_at >= self.takeover_s:
            log.error("cluster: another process announces itself as %s; acting on nothing until it stops", self.id)
            self.bridge.event("cluster_id_conflict", instance=self.id, error="two instances share this cluster.id")
        self._twin_at = now

    # --- ownership ----------------------------------------------------------------------------------------------

    def evaluate(self, now: float) -> None:
        """Let go what another instance outranks us for (once idle); take what is ours and free (the rules above)."""
        if self._stop.is_set():  # stopping: everything was let go, nothing is taken again
            return
        live = self.view.live(now)
        vehicles = list(self.bridge.by_root.values())
        if live != self._live or len(self._owners) != len(vehicles):
            self.state.left(self._live - live, now)
            self._live = live
            self._owners = {ctx.vin: owner(ctx.vin, live) for ctx in vehicles}
            log.info("cluster: live instances %s", ", ".join(sorted(live)))
            self.bridge.publish_info()
        ready = self._first_echo is not None and now - self._first_echo >= self.interval and not self.fenced()
        changed = False
        taken: list[VehicleContext] = []
        for ctx in vehicles:
            mine = self._owners.get(ctx.vin) == self.id
            if ctx.vin in self.held:
                if not mine and self._idle(ctx) and self._successor_ready(ctx.vin, now):
                    self._let_go(ctx)
                    changed = True
            elif mine and ready and not self.view.blockers(ctx.vin, now):
                self._take(ctx)
                taken.append(ctx)
                changed = True
        if changed:
            self.publish_info()  # before acting on what was taken
        self.handover.prune(now)
        for ctx in taken:
            self.handover.taken(ctx)
            if ctx.runtime.poller is not None:
                ctx.runtime.poller.wake()

    def _successor_ready(self, vin: str, now: float) -> bool:
        """The instance that outranks us has been alive one heartbeat interval: it is past its own announcement
        hold (rule 3) and takes the vehicle as soon as we let go. Letting go earlier would only leave the vehicle
        unserved meanwhile (commands refused); waiting is safe, as the successor waits for us (rule 2)."""
        successor = self._owners.get(vin)
        return successor is None or self.view.alive_for(successor, now) >= self.interval

    def _idle(self, ctx: VehicleContext) -> bool:
        poller = ctx.runtime.poller
        reading = poller is not None and any(vin == ctx.vin for vin, _ in poller.in_flight())
        return ctx.runner.idle() and not reading

    def _take(self, ctx: VehicleContext) -> None:
        log.info("cluster: serving %s at %s", ctx.vin, ctx.root)
        self.held[ctx.vin] = ctx
        ctx.next_status = 0.0  # read it now: the retained state is the previous owner's
        if ctx not in ctx.runtime.vehicles:
            ctx.runtime.vehicles.append(ctx)
        self._share_budget(ctx.runtime)

    def _let_go(self, ctx: VehicleContext) -> None:
        """Stop serving ``ctx``: its topics leave the publisher's table (the next owner's values are the truth, a
        reconnect must not republish ours), its reading state is reset for a later take-over."""
        log.info("cluster: %s (%s) is served by %s now", ctx.vin, ctx.root, self._owners.get(ctx.vin))
        self.held.pop(ctx.vin, None)
        if ctx in ctx.runtime.vehicles:
            ctx.runtime.vehicles.remove(ctx)
        publisher = self.bridge.publisher
        publisher.forget([*publisher.topics_under(f"{ctx.root}/"), *ctx.announced])
        ctx.announced = []
        ctx.status = None
        ctx.available = None
        ctx.failures = 0
        ctx.out = VehiclePublisher(publisher, ctx.root)
        self._share_budget(ctx.runtime)

    def _share_budget(self, runtime: AccountRuntime) -> None:
        """This instance's part of the account's daily budget: as many calls as it serves of the account's cars
        (every instance lists all of them), so that the instances together stay inside the vendor's limit."""
        whole = sum(1 for c in self.bridge.by_root.values() if c.runtime is runtime)
        runtime.ledger.share(len(runtime.vehicles), whole)
        runtime.budget_out()  # the retained budget topic shows this instance's part (coalesced)
