"""Home Assistant discovery at run time: announcing each vehicle's entities and the bridge's, republishing
them when Home Assistant comes back online, and removing at start what earlier runs announced for
vehicles no longer bridged (``discovery`` builds the payloads; this module decides when they go out).

Stale clean-up: at the first connect the bridge subscribes to the discovery configs and publishes a
non-retained marker on ``<base>/bridge/sync/<token>``; the broker delivers in order, so when the marker
comes back every retained config has arrived. Once the accounts have listed their vehicles, configs of
ours for vehicles not bridged now are deleted.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from typing import TYPE_CHECKING

from mqttbridge import __version__, discovery
from mqttbridge.mqtt import Incoming

if TYPE_CHECKING:
    from mqttbridge.bridge import Bridge
    from mqttbridge.vehicle import VehicleContext

log = logging.getLogger(__name__)

#: Home Assistant's birth message triggers a discovery republish after a random delay (its docs)
HA_ONLINE_DELAY_S = (1.0, 5.0)


class DiscoveryAnnouncer:
    def __init__(self, bridge: Bridge):
        self.bridge = bridge
        self.base = bridge.base
        self.ha = bridge.config.homeassistant
        self.session = bridge.session
        self.publisher = bridge.publisher
        self._sync_topic = f"{self.base}/bridge/sync/{uuid.uuid4().hex}"
        self._seen: dict[str, bytes] = {}
        self._state = "pending"  # pending -> collecting -> collected -> done
        self._pending = False
        self._lock = threading.Lock()

    def subscriptions(self) -> list[str]:
        return [self.ha.status_topic] if self.ha.discovery != "off" else []

    def connected(self) -> None:
        """At the first connect: collect the retained configs, to clean up stale ones."""
        if self._state != "pending":
            return
        self._state = "collecting"
        prefix = self.ha.prefix
        self.session.subscribe([f"{prefix}/device/+/config", f"{prefix}/+/+/+/config", self._sync_topic])
        self.session.publish(self._sync_topic, "sync", retain=False)

    def handle(self, msg: Incoming) -> bool:
        """Home Assistant's birth message, the sync marker and the configs being collected; False: not ours."""
        topic = msg.topic
        if topic == self.ha.status_topic:
            if msg.payload.strip().lower() == b"online":
                self.schedule()
            return True
        if topic == self._sync_topic:
            self._state = "collected"
            self.session.unsubscribe(topic)
            self.maybe_cleanup()
            return True
        if topic.endswith("/config") and self._state == "collecting":
            if msg.retain and msg.payload:
                self._seen[topic] = msg.payload
            return True
        return False

    def maybe_cleanup(self) -> None:
        """At start, remove our retained discovery of vehicles no longer bridged (ghost entities)."""
        if self._state != "collected" or not all(rt.listed.is_set() for rt in self.bridge.accounts):
            return
        self._state = "done"
        prefix = self.ha.prefix
        self.session.unsubscribe(f"{prefix}/device/+/config")
        self.session.unsubscribe(f"{prefix}/+/+/+/config")
        current = {c.vin for c in self.bridge.by_root.values()}
        mode = self.ha.discovery
        for topic, payload in self._seen.items():
            vin = discovery.owned_vin(topic, payload, base_topic=self.base, ha=self.ha)
            if vin is None:
                continue
            device_style = topic.split("/")[len(prefix.split("/"))] == "device"
            if vin not in current or mode == "off" or device_style != (mode == "device"):
                log.info("removing stale discovery %s", topic)
                self.publisher.clear(topic)
        self._seen.clear()

    def publish(self, ctx: VehicleContext, *, force: bool = False) -> None:
        """Announce the vehicle's entities; ones it lost are removed the way HA needs (rulebook 2b)."""
        current = discovery.vehicle_discovery(ctx.discovered(), base_topic=self.base, ha=self.ha, version=__version__)
        # the last payloads are the publisher's (kept compressed there): a copy here would be ~19 KB a vehicle
        previous = [(topic, self.publisher.payload(topic) or "") for topic in ctx.announced]
        changes = current if force else discovery.discovery_changes(previous, current)
        ctx.announced = [topic for topic, _ in current]
        for topic, payload in changes:
            if payload:
                self.publisher.retained(topic, payload, force=True)
            else:
                self.publisher.clear(topic)

    def bridge_configs(self) -> list[tuple[str, str]]:
        accounts = self.bridge.accounts
        budgets = [rt.account.name for rt in accounts if rt.account.poll.daily_budget is not None]
        logins = [(rt.name, rt.takes_codes()) for rt in accounts]
        return discovery.bridge_discovery(
            base_topic=self.base, ha=self.ha, version=__version__, budget_accounts=budgets, login_accounts=logins
        )

    def schedule(self) -> None:
        """One pending republish at most: a burst of birth messages must not republish everything each time."""
        with self._lock:
            if self._pending:
                log.debug("Home Assistant is online again: a discovery republish is already pending")
                return
            self._pending = True
        delay = random.uniform(*HA_ONLINE_DELAY_S)
        log.info("Home Assistant is online: discovery again in %.1f s", delay)
        timer = threading.Timer(delay, self.republish)
        timer.daemon = True
        timer.start()

    def republish(self) -> None:
        with self._lock:
            self._pending = False
        if self.bridge.stopping.is_set():
            return
        for topic, payload in self.bridge_configs():
            self.publisher.retained(topic, payload, force=True)
        for ctx in list(self.bridge.by_root.values()):
            if ctx.status is not None:
                self.publish(ctx, force=True)
