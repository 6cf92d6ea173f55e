"""``<base>/bridge/state`` in a cluster: ``online`` while any instance lives, whichever dies and however the broker
orders what it stores.

Each instance keeps a second, silent connection whose will is ``offline`` on ``<base>/bridge/state``. When an
instance dies, the broker sends that will and every live instance answers ``online`` at once, on that same
connection (killed right after, its own will comes after its answer: one connection is read in order).

A clustered broker can still end with ``offline`` retained while instances live (a CI run on NATS 2.9.10 did, with
two instances alive; one of them never received the will, and whether the other's answer was stored before it, in
the JetStream stream that each node writes to, was not established). So one heartbeat interval after an instance
left, the first live instance (by id) says ``online`` once more: whatever the broker kept, the last word is then a
live instance's.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

from mqttbridge.config import MqttConfig
from mqttbridge.mqtt import Session, SessionFactory

log = logging.getLogger(__name__)


class BridgeState:
    """The presence connection, the answers to a will, and the word said again after an instance left."""

    def __init__(self, base: str, instance_id: str, interval: float):
        self.topic = f"{base}/bridge/state"
        self.id = instance_id
        self.interval = interval
        #: the second connection whose will says ``offline`` (``connect``)
        self.session: Session | None = None
        self._left: set[str] = set()
        self._left_at: float | None = None

    def connect(self, factory: SessionFactory, mqtt: MqttConfig) -> None:
        config = dataclasses.replace(mqtt, client_id=f"{mqtt.client_id}-presence")
        self.session = factory(config, will_topic=self.topic, on_connect=lambda: None, on_message=lambda _msg: None)
        self.session.start()

    def close(self) -> None:
        """A clean goodbye: the presence connection leaves without its will."""
        session, self.session = self.session, None
        if session is not None:
            session.stop(offline_payload=None)

    def answer(self, main: Session) -> None:
        """``offline`` was said while this instance is alive (another's will, or the last of the others stopped)."""
        log.info("cluster: %s says offline while this instance is alive: online again", self.topic)
        self._say_online(main)

    def left(self, instances: Iterable[str], now: float) -> None:
        """Instances left the live set: their wills may still be stored after the answers to them."""
        gone = set(instances)
        if gone:
            self._left |= gone
            self._left_at = now

    def heartbeat_back(self, main: Session, now: float, live: Iterable[str]) -> None:
        """Our own heartbeat came back from the broker (it is reachable): one interval after an instance left, the
        first live instance says ``online`` again, once; the others say nothing (one word is enough)."""
        if self._left_at is None or now - self._left_at < self.interval:
            return
        gone = ", ".join(sorted(self._left))
        self._left, self._left_at = set(), None
        if min(live, default=self.id) != self.id:
            return
        log.info("cluster: %s left: %s online again (its will may have been stored after the answer)", gone, self.topic)
        self._say_online(main)

    def _say_online(self, main: Session) -> None:
        # on the connection whose will says offline, when it is there (see the module's text)
        (self.session or main).publish(self.topic, "online", retain=True, qos=1)
