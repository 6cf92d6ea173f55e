"""What must outlive the process: the executions still running at the vendor, and the last published
state of every vehicle.

``executions.json`` (the journal) holds each execution from before the vendor is called until it
ends, so a bridge killed meanwhile follows it after its restart instead of losing it, and never
sends it twice. ``snapshot.json`` holds the retained payloads of the vehicles' topics, so a broker
without persistence gets the last known state at once, not only after the first (maybe failing) read.
Both are written atomically by ``StateStore``; a corrupt file is set aside and the bridge goes on.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mqttbridge.execution import Execution
from mqttbridge.model import ExecutionStatus
from mqttbridge.normalize import iso
from mqttbridge.publish import Publisher, encode
from mqttbridge.statestore import StateStore

log = logging.getLogger(__name__)

EXECUTIONS_FILE = "executions.json"
SNAPSHOT_FILE = "snapshot.json"
FORMAT = 1
#: the snapshot is saved at most this often (and at stop): publishing stays as cheap as it was
SNAPSHOT_INTERVAL_S = 5.0
#: the snapshot waits at least this many times as long as its last save took (a fleet's snapshot is large: at
#: 10,000 vehicles, saved every 5 s, it would take most of a core), so saving takes at most ~5 % of the time
SNAPSHOT_SHARE = 20.0


# --- the journal of running executions -----------------------------------------------------------


@dataclass(frozen=True)
class JournalEntry:
    """One running execution as persisted: enough to follow it and to publish it as before."""

    vin: str
    execution: Execution


def _execution_json(vin: str, execution: Execution) -> dict[str, Any]:
    corr = execution.correlation_data
    return {
        "vin": vin,
        "command": execution.command,
        "action": execution.action,
        "params": execution.params,
        "request_id": execution.request_id,
        "service": execution.service,
        "event_id": execution.event_id,
        "received_at": execution.received_at,
        "updated_at": execution.updated_at,
        "status": execution.status.value,
        "response_topic": execution.response_topic,
        "correlation_data": base64.b64encode(corr).decode("ascii") if corr is not None else None,
    }


def _optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} is not a string")
    return value


def _required_str(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is missing")
    return value


def _entry_from_json(key: str, data: Any) -> JournalEntry:
    """Rebuild one entry; ``ValueError`` says what is wrong with it."""
    if not isinstance(data, dict):
        raise ValueError("not an object")
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError("params is not an object")
    status = ExecutionStatus(_required_str(data, "status"))
    if status is ExecutionStatus.UNKNOWN:
        raise ValueError(f"unknown status {data.get('status')!r}")
    corr_text = _optional_str(data, "correlation_data")
    try:
        corr = base64.b64decode(corr_text, validate=True) if corr_text is not None else None
    except (binascii.Error, ValueError):
        raise ValueError("correlation_data is not base64") from None
    received_at = _required_str(data, "received_at")
    execution = Execution(
        request_id=_required_str(data, "request_id"),
        command=_required_str(data, "command"),
        action=_required_str(data, "action"),
        service=_optional_str(data, "service"),
        status=status,
        event_id=_optional_str(data, "event_id"),
        received_at=received_at,
        updated_at=_optional_str(data, "updated_at") or received_at,
        response_topic=_optional_str(data, "response_topic"),
        correlation_data=corr,
        params=params,
        key=key,
        arrived=_wall_time(received_at),
    )
    return JournalEntry(_required_str(data, "vin"), execution)


def resumable(execution: Execution) -> bool:
    """Whether a restarted bridge follows ``execution`` at the vendor (else it publishes its end at once)."""
    return not execution.status.final and bool(execution.event_id)


def running_topics(root: str, execution: Execution) -> dict[str, str]:
    """The retained topics a journal entry stands for: its record, its status and, for a lock command the
    restart follows, ``LOCKING``/``UNLOCKING``. They replace the snapshot's older values before anything
    is published, so a restart never shows, even briefly, a state the running command already changed."""
    base = f"{root}/{execution.command}"
    topics = {f"{base}/execution": encode(execution.record()), f"{base}/status": execution.status.value}
    if execution.command == "lock" and resumable(execution):
        topics[f"{root}/lock"] = "LOCKING" if execution.action == "LOCK" else "UNLOCKING"
    return topics


def _wall_time(stamp: str) -> float:
    try:
        then = datetime.fromisoformat(stamp)
    except ValueError:
        return time.time()
    return (then if then.tzinfo else then.replace(tzinfo=UTC)).timestamp()


class ExecutionJournal:
    """The running executions of every vehicle, rewritten whole at each change (they are few)."""

    def __init__(self, store: StateStore):
        self.store = store
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def load(self) -> list[JournalEntry]:
        """What the previous run left running; entries that cannot be read are reported and dropped."""
        data = self.store.read_json(EXECUTIONS_FILE)  # a corrupt file is set aside and reported there
        if data is None:
            return []
        raw = data.get("executions") if isinstance(data, dict) else None
        if not isinstance(raw, dict):
            log.warning("%s is not a journal of executions; starting without it", self.store.path(EXECUTIONS_FILE))
            return []
        entries: list[JournalEntry] = []
        with self._lock:
            for key, item in raw.items():
                try:
                    entry = _entry_from_json(str(key), item)
                except ValueError as exc:
                    log.warning("%s: dropped the entry %s: %s", EXECUTIONS_FILE, key, exc)
                    continue
                self._entries[entry.execution.key] = item
                entries.append(entry)
        return entries

    def save(self, vin: str, execution: Execution) -> None:
        with self._lock:
            self._entries[execution.key] = _execution_json(vin, execution)
            self._write()

    def remove(self, execution: Execution) -> None:
        with self._lock:
            if self._entries.pop(execution.key, None) is not None:
                self._write()

    def keys(self) -> set[str]:
        with self._lock:
            return set(self._entries)

    def _write(self) -> None:
        if self._entries:
            self.store.write_json(EXECUTIONS_FILE, {"format": FORMAT, "executions": self._entries})
        else:
            self.store.delete(EXECUTIONS_FILE)


# --- the snapshot of the vehicles' retained topics -------------------------------------------------


@dataclass(frozen=True)
class SnapshotVehicle:
    """One vehicle's retained topics as saved: ``root`` and ``account`` tell whether they still apply."""

    vin: str
    account: str
    root: str
    topics: dict[str, str]


#: vin -> (account name, root topic) of the vehicles whose topics are saved
Roots = Mapping[str, tuple[str, str]]


class SnapshotKeeper:
    """Saves the Publisher's retained payloads of the vehicles' topics when they changed, at most every
    ``interval`` seconds, from its own thread; the publishing path only bumps a counter."""

    def __init__(
        self,
        store: StateStore,
        publisher: Publisher,
        roots: Callable[[], Roots],
        *,
        excluded: tuple[str, ...],
        interval: float = SNAPSHOT_INTERVAL_S,
    ):
        self.store = store
        self.publisher = publisher
        self.roots = roots
        #: topic prefixes that are never a vehicle's (the bridge's own topics, discovery)
        self.excluded = excluded
        self.interval = interval
        publisher.unversioned = excluded  # a change there changes nothing saved here
        self._saved_version = publisher.version
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.saves = 0
        #: seconds the last save took (its CPU, mostly: collecting and encoding)
        self.last_save_s = 0.0

    def load(self) -> list[SnapshotVehicle]:
        data = self.store.read_json(SNAPSHOT_FILE)  # a corrupt file is set aside and reported there
        if data is None:
            return []
        vehicles = data.get("vehicles") if isinstance(data, dict) else None
        if not isinstance(vehicles, dict):
            log.warning("%s is not a snapshot; starting without it", self.store.path(SNAPSHOT_FILE))
            return []
        found: list[SnapshotVehicle] = []
        for vin, item in vehicles.items():
            topics = item.get("topics") if isinstance(item, dict) else None
            root = item.get("root") if isinstance(item, dict) else None
            account = item.get("account") if isinstance(item, dict) else None
            if (
                not isinstance(topics, dict)
                or not isinstance(root, str)
                or not isinstance(account, str)
                or not all(
                    isinstance(t, str) and t.startswith(f"{root}/") and isinstance(p, str) for t, p in topics.items()
                )
            ):
                log.warning("%s: dropped the entry of %s: not a vehicle's topics", SNAPSHOT_FILE, vin)
                continue
            found.append(SnapshotVehicle(str(vin), account, root, dict(topics)))
        return found

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="snapshot", daemon=True)
        self._thread.start()

    def pause(self) -> float:
        """Seconds until the next save: ``interval``, or longer after a save that took long."""
        return max(self.interval, SNAPSHOT_SHARE * self.last_save_s)

    def _loop(self) -> None:
        while not self._stop.wait(self.pause()):
            self.save()

    def stop(self) -> None:
        """Save once more (the state as it was at stop) and end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.save()

    def save(self) -> bool:
        """Write the snapshot if anything retained changed since the last write."""
        with self._lock:
            version = self.publisher.version
            if version == self._saved_version:
                return False
            started = time.monotonic()
            data = {"format": FORMAT, "saved_at": iso(datetime.now(UTC)), "vehicles": self.collect()}
            written = self.store.write_json(SNAPSHOT_FILE, data)
            self.last_save_s = time.monotonic() - started
            if not written:
                return False
            self._saved_version = version
            self.saves += 1
            return True

    def collect(self) -> dict[str, dict[str, Any]]:
        """Each vehicle's retained topics; a topic under two roots (``car`` and ``car/x1``) goes to the longer.

        Read one parent topic at a time (``Publisher.group``): a copy of the whole table at once would be
        as large as the table itself, every few seconds while a fleet's first round is published.
        """
        roots = dict(self.roots())
        by_root = {root: vin for vin, (_account, root) in roots.items()}
        out: dict[str, dict[str, Any]] = {
            vin: {"account": account, "root": root, "topics": {}} for vin, (account, root) in roots.items()
        }
        for parent in self.publisher.parents():
            if parent.startswith(self.excluded):
                continue
            vin = _owner(parent, by_root)
            if vin is None:
                continue
            topics = out[vin]["topics"]
            for topic, payload in self.publisher.group(parent):
                if not topic.startswith(self.excluded):
                    topics[topic] = payload
        return out


def _owner(parent: str, by_root: Mapping[str, str]) -> str | None:
    """The vehicle whose root is the longest one above the topics of ``parent`` (which ends in "/")."""
    level = len(parent) - 1
    while level > 0:
        vin = by_root.get(parent[:level])
        if vin is not None:
            return vin
        level = parent.rfind("/", 0, level)
    return None
