"""Back-pressure on paho's queue of unacknowledged messages: publishing waits for room (``PublishRoom``).

paho queues every QoS 1 message until the broker acknowledges it, without bound, and the bridge can publish a
fleet's first round far faster than any broker acknowledges it. That queue (a message object and a
``threading.Condition`` per message) was most of the daemon's memory at 1,000 vehicles; paho's own limit
(``max_queued_messages``) drops messages, which the bridge must not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from mqttbridge.paho_client import on_network_thread

log = logging.getLogger(__name__)

#: unacknowledged QoS 1 messages paho may hold before a publisher waits for room (about 1 KB each)
MAX_UNACKED = 1000
#: a publisher that waited goes on once the broker has acknowledged paho's queue down to this many
RESUME_UNACKED = 500
#: the same for the payloads' bytes (a Home Assistant device config is ~19 KB: a reconnect sends a fleet's in a row);
#: a publisher that waited goes on once they are down to half of it
MAX_UNACKED_BYTES = 2_000_000
#: the longest one publish waits for room while connected; then it is queued anyway (never dropped)
ROOM_WAIT_S = 10.0


class PublishRoom:
    """Back-pressure on paho's queue of unacknowledged messages.

    A publisher that finds ``high`` messages (or ``high_bytes`` of payload) unacknowledged waits until the
    broker has acknowledged them down to ``low`` (and half of ``high_bytes``; the gap spares a thread switch per
    message), but never on paho's network thread, never while disconnected (paho keeps the message for the next
    connection) and never longer than ``wait`` seconds: then the message is queued anyway. Nothing is ever
    dropped; the queue is only kept from outgrowing what the broker takes.

    The bytes are counted here (``queued``, ``acknowledged``); the messages are paho's own count (``unacked``).
    """

    def __init__(
        self,
        unacked: Callable[[], int],
        connected: threading.Event,
        *,
        high: int = MAX_UNACKED,
        low: int = RESUME_UNACKED,
        high_bytes: int = MAX_UNACKED_BYTES,
        wait: float = ROOM_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not 0 <= low < high:
            raise ValueError("need 0 <= low < high")
        self.unacked = unacked
        self.connected = connected
        self.high = high
        self.low = low
        self.high_bytes = high_bytes
        self.low_bytes = high_bytes // 2
        #: payload bytes handed to paho and not acknowledged yet
        self.bytes = 0
        self.wait = wait
        self.clock = clock
        self._cond = threading.Condition()
        #: guards ``bytes``, which two threads change
        self._count = threading.Lock()
        self._waiters = 0
        #: bumped when an acknowledgement brought the queue down to ``low``: whoever waited may go on
        self._freed = 0
        self._closed = False
        #: a wait ran out: said once, until the queue drains again
        self._stalled = False
        #: publishes that waited, and that gave up waiting (for the tests and the benchmark)
        self.waits = 0
        self.timeouts = 0

    def _must_wait(self, limit: int, limit_bytes: int) -> bool:
        return not self._closed and self.connected.is_set() and (self.unacked() >= limit or self.bytes >= limit_bytes)

    def acquire(self) -> bool:
        """Wait for room if there is none; False when the wait ran out (the caller publishes anyway)."""
        if on_network_thread() or not self._must_wait(self.high, self.high_bytes):
            return True
        with self._cond:
            if not self._must_wait(self.high, self.high_bytes):
                return True
            deadline = self.clock() + self.wait
            freed = self._freed
            self.waits += 1
            self._waiters += 1
            try:
                # woken by the acknowledgement that made room, it goes on even if another publisher took it
                while self._freed == freed and self._must_wait(self.low + 1, self.low_bytes + 1):
                    left = deadline - self.clock()
                    if left <= 0:
                        self.timeouts += 1
                        if not self._stalled:
                            self._stalled = True
                            log.warning(
                                "the broker has not acknowledged %d messages for %.0f s; publishing without "
                                "waiting for it",
                                self.unacked(),
                                self.wait,
                            )
                        return False
                    self._cond.wait(left)
            finally:
                self._waiters -= 1
        return True

    def queued(self, size: int) -> None:
        """``size`` bytes of payload go to paho now (counted before paho has them: their acknowledgement may
        come before ``publish`` returns); a negative size takes back what paho refused."""
        with self._count:
            self.bytes += size

    def acknowledged(self, size: int = 0) -> None:
        """paho dropped an acknowledged message of ``size`` payload bytes from its queue (its network thread).

        Runs for every message: the room's lock is taken only when someone waits (a waiter counts itself in
        under that lock before it looks at the queue, so it either sees this room or is woken)."""
        with self._count:
            self.bytes -= size
            if not self.unacked():
                self.bytes = 0  # what others published through the same client is not counted: never drift
        if self._waiters and self.unacked() <= self.low and self.bytes <= self.low_bytes:
            with self._cond:
                self._stalled = False
                self._freed += 1
                self._cond.notify_all()

    def wake(self) -> None:
        """The connection went down: waiting publishers go on (paho keeps their messages for the reconnect)."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """At stop: nobody waits any more."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
