"""Take retained topics back off a broker: ``mqttbridge purge`` and the demo's clean-up at stop.

Retained messages outlive the client that published them: without this, every car topic and every
Home Assistant discovery config stays on the broker (and in Home Assistant) long after the bridge
is gone. Deleting one means publishing an empty retained payload on its topic.

What is retained is read, never guessed: a fresh client subscribes, and the broker sends it every
retained message that matches. A non-retained marker published right after the subscription comes
back after the last of them (one connection delivers in order), so the list is complete and no
timer decides when it ends. With the bridge's ``MqttConfig`` (``purge -c``) it logs in as the bridge does.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from mqttbridge.errors import MqttBridgeError
from mqttbridge.paho_client import use_credentials_and_tls

if TYPE_CHECKING:
    from mqttbridge.config import MqttConfig

log = logging.getLogger(__name__)

#: seconds to wait for each step: the CONNACK, the SUBACK, the marker, all PUBACKs
TIMEOUT = 15.0
#: CONNACK reason codes that mean the credentials were refused (MQTT 3.1.1's 4 and 5 arrive as these)
CREDENTIALS_REFUSED = {0x86, 0x87}  # Bad user name or password, Not authorized
#: CONNACK reason code of a broker without MQTT 5
PROTOCOL_REFUSED = 0x84  # Unsupported protocol version


class BridgeRunning(MqttBridgeError):
    """``<base>/bridge/state`` is retained ``online``: a bridge would publish everything again."""


@dataclass(frozen=True)
class PurgeResult:
    """What was deleted: the topics under the base topic, and the discovery configs."""

    base_topic: str
    prefix: str
    topics: int
    configs: int

    def summary(self) -> str:
        return (
            f"deleted {self.topics} retained topics under {self.base_topic}/ and "
            f"{self.configs} discovery configs under {self.prefix}/"
        )


# --------------------------------------------------------------------------------------------------
# Which discovery configs point at a base topic
# --------------------------------------------------------------------------------------------------


def under(topic: str, base: str) -> bool:
    """``topic`` is ``base`` itself or below it (``car/i3`` is under ``car``, ``carport/x`` is not)."""
    return topic == base or topic.startswith(f"{base}/")


def _is_topic_key(key: object) -> bool:
    """A key that holds a topic, full or abbreviated (``state_topic``, ``stat_t``, ``t``, ``~``).

    Only topic keys count: a name or a model that happens to equal the base topic is no claim.
    """
    return isinstance(key, str) and (key in ("~", "topic", "t") or key.endswith(("_topic", "_t")))


def _expand(value: str, tilde: str | None) -> str:
    """Home Assistant's ``~``: the base topic replaces a leading or trailing ``~``."""
    if tilde is None:
        return value
    if value.startswith("~"):
        return tilde + value[1:]
    if value.endswith("~"):
        return value[:-1] + tilde
    return value


def _topics(node: Any, tilde: str | None = None) -> Iterator[str]:
    """Every topic a discovery payload names, at any depth (device payloads nest their components)."""
    if isinstance(node, dict):
        base = node.get("~")
        here = base if isinstance(base, str) else tilde
        for key, value in node.items():
            if isinstance(value, str) and _is_topic_key(key):
                yield value if key == "~" else _expand(value, here)
            elif isinstance(value, dict | list):
                yield from _topics(value, here)
    elif isinstance(node, list):
        for item in node:
            yield from _topics(item, tilde)


def points_at(payload: bytes | str, base_topic: str) -> bool:
    """True when a discovery config reads or writes a topic under ``base_topic`` (so it is ours to
    remove with that base); configs of other integrations never name our topics."""
    try:
        data = json.loads(payload)
    except (TypeError, ValueError):  # UnicodeDecodeError is a ValueError
        return False
    if not isinstance(data, dict):
        return False
    return any(under(topic, base_topic) for topic in _topics(data))


def is_discovery_config(topic: str, prefix: str) -> bool:
    """``<prefix>/<component>/[<node_id>/]<object_id>/config``, the topics Home Assistant reads."""
    parts = topic.split("/")
    depth = len(prefix.split("/"))
    return under(topic, prefix) and parts[-1] == "config" and len(parts) - depth in (3, 4)


# --------------------------------------------------------------------------------------------------
# A short-lived MQTT client
# --------------------------------------------------------------------------------------------------


class RetainedClient:
    """One connection that reads what is retained, then deletes topics and waits for each PUBACK.

    ``mqtt`` (the bridge's ``MqttConfig``) gives the user name, password, TLS and protocol; without it the client
    connects anonymously, without TLS, with MQTT 5. Its host and port are not used: ``host`` and ``port`` are.
    The client id is always a fresh one (the configuration's would push a running bridge off the broker).
    """

    def __init__(self, host: str, port: int, *, timeout: float = TIMEOUT, mqtt: MqttConfig | None = None):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.mqtt = mqtt
        v5 = mqtt is None or str(mqtt.protocol) == "5"
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"mqttbridge-purge-{uuid.uuid4().hex[:12]}",
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        )
        if mqtt is not None:
            use_credentials_and_tls(self._client, mqtt)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._connect_reason: ReasonCode | None = None
        self._subscribed: dict[int, list[ReasonCode]] = {}
        self._subscribe_done = threading.Condition(self._lock)
        self._marker: tuple[str, bytes] | None = None
        self._marker_seen = threading.Event()
        self._retained: dict[str, bytes] = {}
        self._refused: dict[int, str] = {}

    # --- paho's thread ---------------------------------------------------------------------------

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        self._connect_reason = reason
        self._connected.set()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        if not self._connected.is_set():
            self._connect_reason = reason
            self._connected.set()

    def _on_subscribe(self, _client: Any, _userdata: Any, mid: int, reasons: list[ReasonCode], _props: Any) -> None:
        with self._subscribe_done:
            self._subscribed[mid] = list(reasons)
            self._subscribe_done.notify_all()

    def _on_message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            if self._marker_seen.is_set():
                return
            if self._marker is not None and (message.topic, message.payload) == self._marker:
                self._marker_seen.set()
            elif message.retain and message.payload:
                self._retained[message.topic] = bytes(message.payload)

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, reason: ReasonCode, _props: Any) -> None:
        if reason.is_failure:
            with self._lock:
                self._refused[mid] = str(reason)

    # --- the caller's thread ---------------------------------------------------------------------

    def connect(self) -> None:
        """Connect, or say in one line why not (a user's mistake, never a traceback)."""
        where = f"{self.host}:{self.port}"
        address = "--broker HOST:PORT" if self.mqtt is None else "--broker HOST:PORT, or mqtt.host and mqtt.port"
        try:
            self._client.connect(self.host, self.port, keepalive=60)
        except ssl.SSLError as exc:  # the handshake is part of connect()
            detail = getattr(exc, "verify_message", None) or exc.reason or exc
            raise MqttBridgeError(
                f"TLS with the MQTT broker at {where} failed ({detail}); check mqtt.tls (ca_certs, certfile, "
                "keyfile) and that the port is the broker's TLS listener"
            ) from None
        except OSError as exc:
            raise MqttBridgeError(
                f"no MQTT broker answers at {where} ({exc.strerror or exc}); check {address}"
            ) from None
        self._client.loop_start()
        if not self._connected.wait(self.timeout):
            self.close()
            raise MqttBridgeError(f"the MQTT broker at {where} did not answer the connection in {self.timeout:g} s")
        reason = self._connect_reason
        if reason is None or reason.is_failure:
            self.close()
            raise MqttBridgeError(self._refusal(where, reason))
        log.debug("connected to %s", where)

    def _refusal(self, where: str, reason: ReasonCode | None) -> str:
        """Why the broker said no, and what to check (the user name may be named; the password never is)."""
        code = None if reason is None else reason.value
        if code in CREDENTIALS_REFUSED and self.mqtt is not None and self.mqtt.username:
            return (
                f"the MQTT broker at {where} refused the credentials ({reason}); "
                "check mqtt.username and mqtt.password in the configuration"
            )
        said = f"the MQTT broker at {where} refused the connection ({reason})"
        if code in CREDENTIALS_REFUSED:
            where_from = "give -c with the bridge's configuration" if self.mqtt is None else "set mqtt.username"
            return f"{said}: it wants a user name and password; {where_from}"
        if self.mqtt is None:
            return f"{said}; without -c, purge connects without a user name or TLS"
        if code == PROTOCOL_REFUSED and str(self.mqtt.protocol) == "5":
            return f"{said}: the broker has no MQTT 5; set mqtt.protocol: 3.1.1"
        return f"{said}; check the configuration's mqtt section"

    def read_retained(self, filters: Iterable[str], marker_topic: str) -> dict[str, bytes]:
        """Every retained message matching ``filters`` right now; ``marker_topic`` must match one of them."""
        filters = list(dict.fromkeys(filters))
        token = uuid.uuid4().hex.encode()
        with self._lock:
            self._marker = (marker_topic, token)
        # QoS 0: mosquitto drops retained QoS 1 messages beyond its queue limit (1000), the marker with them
        result, mid = self._client.subscribe([(f, 0) for f in filters])
        if result != paho.MQTT_ERR_SUCCESS:
            raise MqttBridgeError(f"could not subscribe to {', '.join(filters)}: {paho.error_string(result)}")
        assert mid is not None  # paho leaves it out only when nothing was sent (no connection)
        with self._subscribe_done:
            if not self._subscribe_done.wait_for(lambda: mid in self._subscribed, self.timeout):
                raise MqttBridgeError(f"the broker did not confirm the subscription in {self.timeout:g} s")
            reasons = self._subscribed[mid]
        refused = [f for f, reason in zip(filters, reasons, strict=False) if reason.is_failure]
        if refused:
            raise MqttBridgeError(
                f"the broker refused the subscription to {', '.join(refused)} (not allowed to read it?)"
            )
        self._client.publish(marker_topic, token, qos=1, retain=False)
        if not self._marker_seen.wait(self.timeout):
            raise MqttBridgeError(
                f"the broker did not send the retained messages in {self.timeout:g} s "
                f"(no echo on {marker_topic}; is publishing there allowed?)"
            )
        self._client.unsubscribe(filters)
        with self._lock:
            return dict(self._retained)

    def delete(self, topics: Iterable[str]) -> None:
        """Publish an empty retained payload on each topic, QoS 1, and wait for every PUBACK."""
        sent = [(topic, self._client.publish(topic, b"", qos=1, retain=True)) for topic in topics]
        deadline = time.monotonic() + self.timeout + 0.01 * len(sent)
        for topic, info in sent:
            if info.rc != paho.MQTT_ERR_SUCCESS:
                raise MqttBridgeError(f"could not delete {topic}: {paho.error_string(info.rc)}")
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                raise MqttBridgeError(f"could not delete {topic}: {exc}") from None
            if not info.is_published():
                raise MqttBridgeError(f"the broker did not confirm deleting {topic} in time")
            log.debug("deleted %s", topic)
        with self._lock:
            refused = {topic for topic, info in sent if info.mid in self._refused}
        if refused:
            raise MqttBridgeError(
                f"the broker refused to delete {len(refused)} topics "
                f"(e.g. {min(refused)}: not allowed to publish there?)"
            )

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> RetainedClient:
        self.connect()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _marker_topic(base_topic: str) -> str:
    """Where the end-of-retained marker goes: inside our own namespace, never retained."""
    return f"{base_topic}/bridge/sync/purge-{uuid.uuid4().hex[:12]}"


def _split(topics: Iterable[str], base_topic: str) -> tuple[list[str], list[str]]:
    """Topics under the base first; the rest are discovery configs (a prefix may lie below the base)."""
    mine = sorted(topics)
    return [t for t in mine if under(t, base_topic)], [t for t in mine if not under(t, base_topic)]


# --------------------------------------------------------------------------------------------------
# The two uses
# --------------------------------------------------------------------------------------------------


def purge(
    host: str,
    port: int,
    base_topic: str,
    *,
    prefix: str = "homeassistant",
    force: bool = False,
    timeout: float = TIMEOUT,
    mqtt: MqttConfig | None = None,
) -> PurgeResult:
    """Delete every retained topic under ``base_topic`` and every discovery config under ``prefix``
    that points at it. Refuses while ``<base>/bridge/state`` says ``online`` unless ``force``:
    a running bridge would publish it all again, and its Home Assistant entities would vanish.
    ``mqtt``: connect with its user name, password, TLS and protocol (``RetainedClient``)."""
    with RetainedClient(host, port, timeout=timeout, mqtt=mqtt) as client:
        retained = client.read_retained([f"{base_topic}/#", f"{prefix}/#"], _marker_topic(base_topic))
        state = retained.get(f"{base_topic}/bridge/state", b"").strip().lower()
        if state == b"online":
            if not force:
                raise BridgeRunning(
                    f"a bridge is running under {base_topic}/ ({base_topic}/bridge/state is online): "
                    "stop it first, or pass --force to purge anyway (it publishes everything again)"
                )
            log.warning("%s/bridge/state is online: purging anyway (--force)", base_topic)
        doomed = [t for t in retained if under(t, base_topic)]
        doomed += [
            t
            for t, payload in retained.items()
            if not under(t, base_topic) and is_discovery_config(t, prefix) and points_at(payload, base_topic)
        ]
        topics, configs = _split(doomed, base_topic)
        client.delete(topics + configs)
    return PurgeResult(base_topic, prefix, len(topics), len(configs))


def remove_published(
    host: str,
    port: int,
    published: Mapping[str, str],
    *,
    base_topic: str,
    prefix: str = "homeassistant",
    timeout: float = TIMEOUT,
) -> PurgeResult:
    """Delete the retained topics in ``published`` that still hold what was published there.

    The demo's clean-up: a real bridge may share the base topic, so nothing else is touched, and a
    topic that someone has published to since (another bridge's ``online``) is left alone too.
    """
    with RetainedClient(host, port, timeout=timeout) as client:
        filters = [f"{base_topic}/#", f"{prefix}/#"]
        retained = client.read_retained(filters, _marker_topic(base_topic))
        doomed = [t for t, payload in published.items() if retained.get(t) == payload.encode()]
        kept = [t for t, payload in published.items() if t in retained and retained[t] != payload.encode()]
        if kept:
            log.info("left %d topics that changed since the demo published them, e.g. %s", len(kept), min(kept))
        topics, configs = _split(doomed, base_topic)
        client.delete(topics + configs)
    return PurgeResult(base_topic, prefix, len(topics), len(configs))
