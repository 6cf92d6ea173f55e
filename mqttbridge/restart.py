"""What the previous run left, and what becomes of it: its running executions (the journal) are followed, never
sent again; its published vehicle topics (the snapshot) are republished at connect, then dropped for a vehicle
that is not bridged any more."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from mqttbridge.commands import Rejected
from mqttbridge.config import AccountConfig, Config, default_vehicle_name
from mqttbridge.execution import Execution
from mqttbridge.persist import ExecutionJournal, JournalEntry, SnapshotKeeper, SnapshotVehicle, running_topics
from mqttbridge.publish import Publisher, settle_lock

if TYPE_CHECKING:
    from mqttbridge.account import AccountRuntime
    from mqttbridge.vehicle import VehicleContext

log = logging.getLogger(__name__)


class PreviousRun:
    """The journal's running executions per VIN and the snapshot's vehicles, until each is followed or dropped.

    ``lock`` is the bridge's: the vehicles it lists (``by_root``) change under it.
    """

    def __init__(
        self,
        config: Config,
        publisher: Publisher,
        journal: ExecutionJournal,
        entries: list[JournalEntry],
        by_root: dict[str, VehicleContext],
        lock: threading.Lock,
    ):
        self.config = config
        self.base = config.mqtt.base_topic
        self.publisher = publisher
        self.journal = journal
        self.by_root = by_root
        self._lock = lock
        self._pending: dict[str, list[Execution]] = {}
        for entry in entries:
            self._pending.setdefault(entry.vin, []).append(entry.execution)
        #: the snapshot's vehicles not settled yet (``restore``)
        self.restored: dict[str, SnapshotVehicle] = {}
        self._settled = False

    def _expected_root(self, account_name: str, vin: str) -> str | None:
        """The root the configuration gives ``vin`` of that account now (None: no longer bridged)."""
        account: AccountConfig | None = next((a for a in self.config.accounts if a.name == account_name), None)
        if account is None:
            return None
        if not account.vehicles:
            return f"{self.base}/{default_vehicle_name(vin)}"
        vconfig = next((v for v in account.vehicles if v.vin.upper() == vin.upper()), None)
        return self.config.root_topic(vconfig) if vconfig is not None else None

    def restore(self, snapshot: SnapshotKeeper) -> None:
        """Seed the publisher with the last run's vehicle topics; the first connect publishes them."""
        restored: dict[str, SnapshotVehicle] = {}
        for saved in snapshot.load():
            if self._expected_root(saved.account, saved.vin) != saved.root:
                log.info("snapshot: %s is no longer bridged at %s; not republished", saved.vin, saved.root)
                continue
            topics = dict(saved.topics)
            settle_lock(saved.root, topics)
            for execution in self._pending.get(saved.vin, []):
                topics.update(running_topics(saved.root, execution))
            self.publisher.restore(topics)
            restored[saved.vin] = SnapshotVehicle(saved.vin, saved.account, saved.root, topics)
        if restored:
            log.info(
                "snapshot: %d retained topics of %d vehicles to republish at connect",
                sum(len(s.topics) for s in restored.values()),
                len(restored),
            )
        self.restored = restored

    def snapshot_roots(self) -> dict[str, tuple[str, str]]:
        """The vehicles whose topics the snapshot keeps: the bridged ones, and restored ones not yet listed."""
        with self._lock:
            roots = {vin: (saved.account, saved.root) for vin, saved in self.restored.items()}
            roots.update({c.vin: (c.runtime.account.name, c.root) for c in self.by_root.values()})
        return roots

    def settle(self, accounts: list[AccountRuntime]) -> None:
        """Once every account listed its vehicles, a restored vehicle that is not bridged loses its topics."""
        if not all(rt.listed.is_set() for rt in accounts):
            return
        with self._lock:
            if self._settled:
                return
            self._settled = True
            bridged = {c.vin for c in self.by_root.values()}
            gone = [saved for vin, saved in self.restored.items() if vin not in bridged]
            self.restored = {}
            kept = [e for vin, pending in self._pending.items() if vin not in bridged for e in pending]
        for saved in gone:
            log.info("snapshot: %s is not listed any more; removing its %d topics", saved.vin, len(saved.topics))
            for topic in saved.topics:
                self.publisher.clear(topic)
        if kept:
            log.warning(
                "%d running executions of the previous run are for vehicles not bridged now; kept for a later start",
                len(kept),
            )

    def resume(self, runtime: AccountRuntime) -> None:
        """Follow what the previous run left running for this account's vehicles; nothing is sent again."""
        for ctx in list(runtime.vehicles):
            with self._lock:
                pending = self._pending.pop(ctx.vin, [])
            for execution in sorted(pending, key=lambda e: e.received_at):
                try:
                    ctx.runner.resume(execution)
                except Rejected as exc:  # two identical entries: the first one is followed
                    log.warning(
                        "not resuming %s %s (request %s): %s",
                        execution.command,
                        execution.action,
                        execution.request_id,
                        exc,
                    )
                    self.journal.remove(execution)
