"""Retained state publishing per CONTRACT sections 3 and 4: only what changed, all of it on reconnect."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

from mqttbridge.model import Location, VehicleStatus

log = logging.getLogger(__name__)

LOCK_STATES = {"LOCKED": "LOCKED", "SECURED": "LOCKED", "SELECTIVE_LOCKED": "LOCKED", "UNLOCKED": "UNLOCKED"}

#: payloads longer than this are kept zlib-compressed in the Publisher's table: a vehicle's Home Assistant
#: device config is ~19 KB of JSON (~2.5 KB compressed), 19 MB for 1,000 vehicles
PACK_OVER = 2048
#: payloads up to this long are interned: most are a handful of words and numbers ("true", "0", "OK"),
#: the same for many vehicles, and one shared copy costs less than 70,000 (a fleet's worth of topics)
SHARE_UP_TO = 16

#: a payload as the table keeps it: the text, or (longer than PACK_OVER) its UTF-8 compressed
Stored = str | bytes


def pack(payload: str) -> Stored:
    """The form the table keeps ``payload`` in (``unpack`` gives it back)."""
    if len(payload) > PACK_OVER:
        return zlib.compress(payload.encode("utf-8"))
    if len(payload) <= SHARE_UP_TO:
        return sys.intern(payload)
    return payload


def unpack(stored: Stored) -> str:
    return zlib.decompress(stored).decode("utf-8") if isinstance(stored, bytes) else stored


class Session(Protocol):
    def publish(
        self,
        topic: str,
        payload: str | bytes | None,
        *,
        retain: bool = True,
        qos: int = 1,
        correlation_data: bytes | None = None,
    ) -> None: ...


def encode(value: Any) -> str:
    """Numbers as JSON numbers, booleans ``true``/``false``, enums and times as bare words, lists as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def lock_state(fields: dict[str, Any]) -> str | None:
    """The Home Assistant lock state for a ``door_lock_state`` (None when the car does not say)."""
    return LOCK_STATES.get(str(fields.get("door_lock_state", "")))


def settle_lock(root: str, topics: dict[str, str]) -> None:
    """A snapshot taken while a lock command ran says ``LOCKING``: use the car's state from the same
    snapshot instead (a resumed command shows ``LOCKING`` again itself)."""
    topic = f"{root}/lock"
    if topics.get(topic) not in ("LOCKING", "UNLOCKING"):
        return
    try:
        state = json.loads(topics.get(f"{root}/state", ""))
    except ValueError:
        state = None
    real = lock_state(state) if isinstance(state, dict) else None
    if real is None:
        del topics[topic]
    else:
        topics[topic] = real


class Publisher:
    """Remembers every retained payload it sent: a repeat is skipped, a reconnect sends all again.

    The table is kept lean, since it holds ~70 topics of every vehicle: topics are grouped under their parent
    (``car/x1/`` holds ``odometer``, ``state``...), so no full topic string is kept per entry and each last
    level is one shared string; short payloads are shared and long ones compressed (``pack``).
    """

    def __init__(self, session: Session):
        self.session = session
        #: parent topic with its trailing "/" (or "") -> last level -> payload as ``pack`` keeps it
        self._table: dict[str, dict[str, Stored]] = {}
        self._lock = threading.Lock()
        self.sent = 0
        #: bumped at every change of the retained set: the snapshot is saved only when it moved
        self.version = 0
        #: topic prefixes whose changes leave ``version`` as it is: the snapshot leaves them out (the bridge's own
        #: topics, discovery), and the budget topic alone, moving at every poll round, would rewrite it
        self.unversioned: tuple[str, ...] = ()
        #: the session's connection state, when it has one (MqttSession does)
        self._online: threading.Event | None = getattr(session, "connected", None)
        #: set at stop: a read still finishing must not change the table after the last publish (the demo
        #: deletes what the table says it published, the snapshot saves it)
        self.frozen = False

    # --- the table (callers hold the lock) -------------------------------------------------------

    def _get(self, topic: str) -> Stored | None:
        cut = topic.rfind("/") + 1
        group = self._table.get(topic[:cut])
        return None if group is None else group.get(topic[cut:])

    def _set(self, topic: str, stored: Stored) -> None:
        cut = topic.rfind("/") + 1
        parent = topic[:cut]
        group = self._table.get(parent)
        if group is None:
            group = self._table[parent] = {}
        group[sys.intern(topic[cut:])] = stored

    def _pop(self, topic: str) -> None:
        cut = topic.rfind("/") + 1
        parent = topic[:cut]
        group = self._table.get(parent)
        if group is not None and group.pop(topic[cut:], None) is not None and not group:
            del self._table[parent]

    def parents(self) -> list[str]:
        """The parent topics (with their trailing "/") under which retained topics are kept."""
        with self._lock:
            return list(self._table)

    def group(self, parent: str) -> Iterator[tuple[str, str]]:
        """One parent's topics as they are now; the payloads are unpacked one at a time, as they are taken
        (the discovery configs of every vehicle share one parent: unpacked at once, they would be 19 MB)."""
        with self._lock:
            stored = list(self._table.get(parent, {}).items())
        return ((parent + leaf, unpack(value)) for leaf, value in stored)

    # --- API -------------------------------------------------------------------------------------

    def retained(self, topic: str, payload: str, *, force: bool = False) -> bool:
        stored = pack(payload)
        cut = topic.rfind("/") + 1  # _get and _set in one: this runs for every message of every vehicle
        parent, leaf = topic[:cut], topic[cut:]
        with self._lock:
            if self.frozen:
                return False
            group = self._table.get(parent)
            if group is None:
                group = self._table[parent] = {}
            elif not force and group.get(leaf) == stored:
                return False
            group[leaf if leaf in group else sys.intern(leaf)] = stored
            if not topic.startswith(self.unversioned):
                self.version += 1
        if self._online is not None and not self._online.is_set():
            # kept for the next connect, which publishes everything after bridge/state "online"; sent now,
            # paho would queue it and flush it first, before that "online" (and then twice)
            return True
        self.session.publish(topic, payload, retain=True, qos=1)
        self.sent += 1
        return True

    def remember(self, topic: str, payload: str) -> None:
        """Known as retained without being sent now: for the connect handler, whose republish_all sends it."""
        stored = pack(payload)
        with self._lock:
            if self._get(topic) != stored:
                self._set(topic, stored)
                if not topic.startswith(self.unversioned):
                    self.version += 1

    def clear(self, topic: str) -> None:
        """Delete a retained message (an empty retained payload), e.g. a field the car stopped reporting."""
        with self._lock:
            self._pop(topic)
            if not topic.startswith(self.unversioned):
                self.version += 1
        self.session.publish(topic, b"", retain=True, qos=1)

    def forget(self, topics: Iterable[str]) -> None:
        """Drop topics from the table without touching the broker: another instance publishes them now (a
        reconnect must not send our older values again)."""
        with self._lock:
            for topic in topics:
                self._pop(topic)
            self.version += 1

    def restore(self, items: Mapping[str, str]) -> None:
        """Payloads a previous run published (the snapshot): known as retained without being sent now,
        so the next (re)connect publishes them, and a read that finds the same values sends nothing."""
        packed = [(topic, pack(payload)) for topic, payload in items.items()]
        with self._lock:
            for topic, stored in packed:
                if self._get(topic) is None:
                    self._set(topic, stored)

    def payload(self, topic: str) -> str | None:
        """The payload last published retained on ``topic`` (None: nothing, or deleted)."""
        with self._lock:
            stored = self._get(topic)
        return None if stored is None else unpack(stored)

    def each_retained(self) -> Iterator[tuple[str, str]]:
        """Every retained (topic, payload), one parent's topics at a time: no copy of the whole table.

        Each group is as it was at one moment; a change made meanwhile bumps ``version`` (the snapshot is
        then saved again).
        """
        for parent in self.parents():
            yield from self.group(parent)

    def retained_items(self) -> list[tuple[str, str]]:
        return list(self.each_retained())

    def transient(self, topic: str, payload: str, *, correlation_data: bytes | None = None) -> None:
        self.session.publish(topic, payload, retain=False, qos=1, correlation_data=correlation_data)

    def republish_all(self) -> int:
        """Send every retained payload (at connect); how many were sent.

        Stops when the connection drops meanwhile: the next connect sends everything again, and what paho
        queued while offline would only be sent twice.
        """
        sent = 0
        for topic, payload in self.each_retained():
            if self._online is not None and not self._online.is_set():
                log.info("the connection dropped while republishing: %d topics sent; the next connect sends all", sent)
                break
            self.session.publish(topic, payload, retain=True, qos=1)
            sent += 1
        return sent

    def topics_under(self, prefix: str) -> list[str]:
        return [
            topic
            for parent in self.parents()
            if parent.startswith(prefix) or prefix.startswith(parent)
            for leaf in self._leaves(parent)
            if (topic := parent + leaf).startswith(prefix)
        ]

    def _leaves(self, parent: str) -> list[str]:
        with self._lock:
            return list(self._table.get(parent, {}))


class VehiclePublisher:
    """One vehicle's retained topics. A read that changed nothing publishes nothing at all."""

    def __init__(self, publisher: Publisher, root: str):
        self.publisher = publisher
        self.root = root
        self.fields: dict[str, Any] = {}
        self.lock_override: str | None = None

    def status(self, status: VehicleStatus) -> bool:
        """Publish what changed since the last read; ``fetched_at`` alone is no change."""
        fields = dict(status.fields)
        location = status.location.to_json() if status.location else None
        if location is not None:
            fields["location"] = location
        if fields == self.fields:
            return False
        previous, self.fields = self.fields, fields
        root = self.root
        for name, value in fields.items():
            if previous.get(name) != value or name not in previous:
                self.publisher.retained(f"{root}/{name}", encode(value))
        for name in previous.keys() - fields.keys():
            self.publisher.clear(f"{root}/{name}")
        state = status.to_state()
        if status.fetched_at is not None:
            self.publisher.retained(f"{root}/fetched_at", state["fetched_at"])
        self.publisher.retained(f"{root}/state", encode(state))
        self.lock()
        return True

    def restore(self, vin: str, topics: Mapping[str, str]) -> VehicleStatus | None:
        """The status a snapshot's ``<root>/state`` describes, remembered as published; None without one.

        Remembering it lets the first read after a restart publish only what changed, and delete a
        field the car no longer reports.
        """
        try:
            state = json.loads(topics[f"{self.root}/state"])
        except (KeyError, TypeError, ValueError):
            return None
        if not isinstance(state, dict):
            return None
        fields = dict(state)
        fetched = fields.pop("fetched_at", None)
        location = fields.pop("location", None)
        try:
            where = (
                None
                if location is None
                else Location(
                    float(location["latitude"]),
                    float(location["longitude"]),
                    None if location.get("heading") is None else float(location["heading"]),
                )
            )
            fetched_at = datetime.fromisoformat(fetched) if isinstance(fetched, str) else None
        except (AttributeError, KeyError, TypeError, ValueError):
            return None
        status = VehicleStatus(vin, fields, where, fetched_at)
        self.fields = dict(fields)
        if location is not None:
            self.fields["location"] = location
        return status

    def lock(self) -> None:
        word = self.lock_override or lock_state(self.fields)
        if word is not None:
            self.publisher.retained(f"{self.root}/lock", word)

    def availability(self, online: bool) -> None:
        self.publisher.retained(f"{self.root}/availability", "online" if online else "offline")

    def dataset(self, name: str, data: Any) -> None:
        """A data set as one JSON topic; trips also field by field below it."""
        self.publisher.retained(f"{self.root}/{name}", encode(data))
        if name in ("last_trip", "all_trips") and isinstance(data, dict):
            for key, value in data.items():
                if value is not None:
                    self.publisher.retained(f"{self.root}/{name}/{key}", encode(value))


class Throttled:
    """Runs ``action`` at most once every ``interval`` seconds: a call within the interval is not lost but
    coalesced into one run at its end, which then sees the latest state (the budget topic while a command
    is polled every second)."""

    def __init__(self, action: Callable[[], None], interval: float, *, name: str = "throttled"):
        self.action = action
        self.interval = interval
        self.name = name
        self._last: float | None = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def __call__(self, *, now: bool = False) -> None:
        """``now``: run at once whatever the interval (a change that must not wait, e.g. budget exhausted)."""
        with self._lock:
            moment = time.monotonic()
            wait = 0.0 if now or self._last is None else self._last + self.interval - moment
            if wait > 0:
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._fire)
                    self._timer.name = self.name
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._last = moment
        self.action()

    def _fire(self) -> None:
        with self._lock:
            self._timer = None
            self._last = time.monotonic()
        try:
            self.action()
        except Exception:  # a timer thread has nobody to tell
            log.exception("%s failed", self.name)

    def flush(self) -> None:
        """Run a pending call now (at stop: the last state is published, not lost with the timer)."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            self.action()
