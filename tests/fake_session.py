"""An in-memory broker session for the bridge: what it publishes is recorded, messages are handed in."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mqttbridge.mqtt import Incoming

WAIT = 20.0  # an upper bound for events, never a sleep


@dataclass(frozen=True)
class Published:
    topic: str
    payload: str | bytes | None
    retain: bool
    correlation_data: bytes | None = None

    @property
    def text(self) -> str:
        payload = self.payload or b""
        return payload.decode() if isinstance(payload, bytes) else payload


class FakeSession:
    """Implements ``mqttbridge.mqtt.Session``; ``start`` connects at once and runs the bridge's handler."""

    def __init__(
        self,
        config: Any,
        *,
        will_topic: str,
        on_connect: Callable[[], None],
        on_message: Callable[[Incoming], None],
        on_disconnect: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.will_topic = will_topic
        self.on_connect = on_connect
        self.on_message = on_message
        self.on_disconnect = on_disconnect
        self.connected = threading.Event()
        self.published: list[Published] = []
        self.subscriptions: dict[str, bool] = {}
        self._cond = threading.Condition()
        self._deliver = threading.Lock()  # the real session hands messages in one at a time, too

    # --- Session ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.connected.set()
        with self._deliver:
            self.on_connect()

    def stop(self, *, offline_payload: str | None = "offline", timeout: float = 3.0) -> None:
        if offline_payload is not None and self.connected.is_set():
            self.publish(self.will_topic, offline_payload, retain=True)
        self.connected.clear()

    def subscribe(self, topics: Iterable[str], qos: int = 1, *, retain_as_published: bool = False) -> None:
        for topic in topics:
            self.subscriptions[topic] = retain_as_published

    def unsubscribe(self, topic: str) -> None:
        self.subscriptions.pop(topic, None)

    def publish(
        self,
        topic: str,
        payload: str | bytes | None,
        *,
        retain: bool = True,
        qos: int = 1,
        correlation_data: bytes | None = None,
    ) -> None:
        with self._cond:
            self.published.append(Published(topic, payload, retain, correlation_data))
            self._cond.notify_all()

    def alive(self) -> bool:
        return True

    # --- for tests -------------------------------------------------------------------------------

    def deliver(
        self,
        topic: str,
        payload: str | bytes,
        *,
        retain: bool = False,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        with self._deliver:
            self.on_message(Incoming(topic, data, retain, response_topic, correlation_data))

    def mark(self) -> int:
        with self._cond:
            return len(self.published)

    def since(self, mark: int = 0, topic: str | None = None) -> list[Published]:
        with self._cond:
            return [p for p in self.published[mark:] if topic is None or p.topic == topic]

    def wait_for(
        self, predicate: Callable[[Published], bool], *, start: int = 0, timeout: float = WAIT, what: str = "a publish"
    ) -> Published:
        with self._cond:
            index = start
            found: list[Published] = []

            def scan() -> bool:
                nonlocal index
                while index < len(self.published):
                    item = self.published[index]
                    index += 1
                    if predicate(item):
                        found.append(item)
                        return True
                return False

            if not self._cond.wait_for(scan, timeout):
                seen = "\n".join(f"  {p.topic} {str(p.payload)[:100]}" for p in self.published[-25:])
                raise AssertionError(f"timed out waiting for {what}; last publishes:\n{seen}")
            return found[0]

    def topics(self, since: int = 0) -> dict[str, bytes]:
        """Every topic published (since a mark) with its last payload; a deleted retained topic is left out."""
        with self._cond:
            sent = self.published[since:]
        last: dict[str, bytes] = {}
        for item in sent:
            payload = item.payload
            last[item.topic] = payload.encode() if isinstance(payload, str) else (payload or b"")
        return {topic: payload for topic, payload in last.items() if payload}

    def retained(self) -> dict[str, str]:
        """What a new subscriber would get now: the last retained payload of each topic, deletions applied."""
        with self._cond:
            state: dict[str, str] = {}
            for item in self.published:
                if not item.retain:
                    continue
                if item.payload in (b"", "", None):
                    state.pop(item.topic, None)
                else:
                    state[item.topic] = item.text
            return state
