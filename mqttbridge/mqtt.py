"""The MQTT session: one paho client, its will, reconnects and subscriptions.

Paho's callbacks run on its network thread, so they only copy what arrived into a queue and return;
a dispatcher thread hands events to the bridge. No exception may leave a callback (it would kill the
network thread), so each one is wrapped (``paho_client.guarded``). Reconnecting is paho's own loop with back-off;
every (re)connect renews the subscriptions and tells the bridge to publish everything again.

Publishing waits for room in paho's queue of unacknowledged messages (``backpressure.PublishRoom``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from mqttbridge.backpressure import PublishRoom
from mqttbridge.paho_client import PahoClient, connect_error_text, guarded, use_credentials_and_tls

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60
#: CONNACK reason codes that mean the credentials were refused (MQTT 3.1.1's 4 and 5 arrive as these)
_CREDENTIALS_REFUSED = {0x86, 0x87}  # Bad user name or password, Not authorized
#: CONNACK reason code of a broker without MQTT 5 (NATS's MQTT listener: MQTT 3.1.1 only)
_PROTOCOL_REFUSED = 0x84  # Unsupported protocol version
#: a subscription the broker refused (SUBACK 0x80) is asked for again after this long, while connected: NATS refuses
#: a QoS 1 subscription when it cannot create its JetStream consumer in time (e.g. just after a node of its cluster
#: died); without the retry the bridge would silently never receive its commands
SUBSCRIBE_RETRY_S = 5.0


@dataclass(frozen=True)
class Incoming:
    """A received message, copied out of paho's object on its thread."""

    topic: str
    payload: bytes
    retain: bool
    response_topic: str | None = None
    correlation_data: bytes | None = None


class Session(Protocol):
    """What the bridge needs of a broker session; tests give it an in-memory one."""

    connected: threading.Event

    def start(self) -> None: ...

    def stop(self, *, offline_payload: str | None = "offline", timeout: float = 3.0) -> None: ...

    def subscribe(self, topics: Iterable[str], qos: int = 1, *, retain_as_published: bool = False) -> None: ...

    def unsubscribe(self, topic: str) -> None: ...

    def publish(
        self,
        topic: str,
        payload: str | bytes | None,
        *,
        retain: bool = True,
        qos: int = 1,
        correlation_data: bytes | None = None,
    ) -> None: ...

    def alive(self) -> bool: ...


#: builds the session: ``factory(mqtt_config, will_topic=, on_connect=, on_message=, on_disconnect=)``
SessionFactory = Callable[..., Session]


class MqttSession:
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
        self._on_connect_cb = on_connect
        self._on_message_cb = on_message
        self._on_disconnect_cb = on_disconnect
        #: topic filter -> (qos, retain as published)
        self._subscriptions: dict[str, tuple[int, bool]] = {}
        #: SUBSCRIBE message id -> its topic filter, until the broker answers (a refusal is retried)
        self._sub_mids: dict[int, str] = {}
        self._sub_lock = threading.Lock()
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._dispatcher: threading.Thread | None = None
        self.connected = threading.Event()
        self.connects = 0
        self.last_error: str | None = None
        #: paho's last error log line (e.g. a TLS alert on receive); it says why a disconnect happened
        self._paho_error: str | None = None
        #: the broker refused the last CONNECT (already logged): its disconnect needs no second line
        self._refused = False
        self.v5 = str(config.protocol) == "5"
        self.client = self._make_client()
        self.room = PublishRoom(self._unacked, self.connected)
        #: messages paho refused to queue (lost): only when the back-pressure gave up waiting many times over
        self.refused = 0

    def _unacked(self) -> int:
        """QoS 1 messages paho holds until the broker acknowledges them (sent, or waiting for an in-flight slot)."""
        return len(self._out_messages)

    def _make_client(self) -> paho.Client:
        cfg = self.config
        client = PahoClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=paho.MQTTv5 if self.v5 else paho.MQTTv311,
            clean_session=None if self.v5 else True,
        )
        use_credentials_and_tls(client, cfg)
        client.will_set(self.will_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
        client.on_connect = guarded("connect", self._paho_connect)
        client.on_disconnect = guarded("disconnect", self._paho_disconnect)
        client.on_message = guarded("message", self._paho_message)
        client.on_connect_fail = guarded("connect_fail", self._paho_connect_fail)
        client.on_subscribe = guarded("subscribe", self._paho_subscribed)
        client.on_log = self._paho_log  # for every packet: kept lean (it cannot raise)
        client.on_acknowledged = self._paho_acknowledged
        #: paho's own queue of unacknowledged messages; there is no public accessor, nor a public hook that tells
        #: when it shrank: without either (another paho), publishing goes on without back-pressure
        self._out_messages: Sized = getattr(client, "_out_messages", ())
        if not hasattr(client, "_out_messages") or not hasattr(paho.Client, "_do_on_publish"):
            self._out_messages = ()
            log.warning("this paho-mqtt hides its queue of unacknowledged messages; publishing without back-pressure")
        return client

    # --- paho's thread: copy and return --------------------------------------------------------

    def _paho_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"the broker refused the connection: {reason}"
            if reason.value in _CREDENTIALS_REFUSED:
                self.last_error += " (check mqtt.username and mqtt.password)"
            elif reason.value == _PROTOCOL_REFUSED and self.v5:
                self.last_error += " (the broker has no MQTT 5, e.g. NATS: set mqtt.protocol: 3.1.1)"
            self._refused = True
            log.error("%s; retrying with back-off", self.last_error)
            return
        self.connects += 1
        self.last_error = None
        self._paho_error = None
        with self._sub_lock:  # with subscribe(): a filter added meanwhile is subscribed by one of the two
            # before connected is set, which lets the others publish: a vehicle announced on this connection has
            # its command filters subscribed already, so a command sent at once is not lost
            for topic, (qos, rap) in self._subscriptions.items():
                self._subscribe(topic, qos, rap)
            self.connected.set()
        self._events.put(("connect", None))

    def _paho_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        self.room.wake()
        self._sub_mids.clear()  # unanswered: the next connect subscribes everything again
        text = str(reason)
        detail, self._paho_error = self._paho_error, None
        refused, self._refused = self._refused, False
        if text != "Normal disconnection" and not refused:
            self.last_error = f"disconnected from the broker: {text}"
            if detail:
                self.last_error += f" ({detail})"
                if "certificate required" in detail:
                    self.last_error += "; the broker wants a client certificate: set mqtt.tls.certfile and keyfile"
            log.warning("%s; reconnecting", self.last_error)
        self._events.put(("disconnect", text))

    def _paho_connect_fail(self, client: paho.Client, _userdata: Any) -> None:
        cause = connect_error_text(getattr(client, "last_connect_error", None))
        self.last_error = f"cannot connect to the broker at {self.config.host}:{self.config.port}: {cause}"
        log.warning("%s; retrying with back-off", self.last_error)

    def _paho_acknowledged(self, size: int) -> None:
        self.room.acknowledged(size)

    def _paho_log(self, _client: paho.Client, _userdata: Any, level: int, text: str) -> None:
        if level == paho.MQTT_LOG_ERR:
            self._paho_error = text

    def _paho_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        props = getattr(message, "properties", None)
        self._events.put(
            (
                "message",
                Incoming(
                    topic=message.topic,
                    payload=bytes(message.payload),
                    retain=bool(message.retain),
                    response_topic=getattr(props, "ResponseTopic", None) if props else None,
                    correlation_data=getattr(props, "CorrelationData", None) if props else None,
                ),
            )
        )

    # --- the dispatcher thread: the bridge's handlers run here ---------------------------------

    def _dispatch(self) -> None:
        while True:
            kind, item = self._events.get()
            if kind == "stop":
                return
            try:
                if kind == "connect":
                    self._on_connect_cb()
                elif kind == "message":
                    self._on_message_cb(item)
                elif kind == "disconnect" and self._on_disconnect_cb:
                    self._on_disconnect_cb(item)
            except Exception:  # one bad message must not stop the bridge
                log.exception("error handling an MQTT %s event", kind)

    # --- API -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; paho retries with back-off until the broker answers."""
        self._dispatcher = threading.Thread(target=self._dispatch, name="mqtt-dispatch", daemon=True)
        self._dispatcher.start()
        kwargs: dict[str, Any] = {"keepalive": self.config.keepalive}
        if self.v5:
            kwargs["clean_start"] = True
        self.client.connect_async(self.config.host, self.config.port, **kwargs)
        self.client.loop_start()

    def alive(self) -> bool:
        """False once the dispatcher thread died after the start: then no message is handled any more."""
        return self._dispatcher is None or self._dispatcher.is_alive()

    def subscribe(self, topics: Iterable[str], qos: int = 1, *, retain_as_published: bool = False) -> None:
        """Remembered and renewed at every reconnect. ``retain_as_published`` (MQTT 5) keeps the retain
        flag on live messages too, so a command published retained is recognised as such."""
        for topic in topics:
            with self._sub_lock:
                self._subscriptions[topic] = (qos, retain_as_published)
                now = self.connected.is_set()
            if now:
                self._subscribe(topic, qos, retain_as_published)

    def _subscribe(self, topic: str, qos: int, retain_as_published: bool) -> None:
        if self.v5:
            _rc, mid = self.client.subscribe(
                topic, options=SubscribeOptions(qos=qos, retainAsPublished=retain_as_published)
            )
        else:
            _rc, mid = self.client.subscribe(topic, qos)
        if mid is not None:  # its SUBACK is read on paho's thread: from this one, after the store (about always)
            self._sub_mids[mid] = topic

    def _paho_subscribed(self, _client: paho.Client, _userdata: Any, mid: int, reasons: Any, _props: Any) -> None:
        topic = self._sub_mids.pop(mid, None)
        if topic is None or not any(getattr(r, "is_failure", False) for r in reasons):
            return
        log.warning("the broker refused the subscription to %s; asking again in %.0f s", topic, SUBSCRIBE_RETRY_S)
        timer = threading.Timer(SUBSCRIBE_RETRY_S, self._resubscribe, (topic,))
        timer.daemon = True
        timer.start()

    def _resubscribe(self, topic: str) -> None:
        with self._sub_lock:
            wanted = self._subscriptions.get(topic)
            now = self.connected.is_set()
        if wanted is not None and now:  # else gone, or the next connect subscribes it anyway
            self._subscribe(topic, *wanted)

    def unsubscribe(self, topic: str) -> None:
        with self._sub_lock:
            self._subscriptions.pop(topic, None)
        if self.connected.is_set():
            self.client.unsubscribe(topic)

    def publish(
        self,
        topic: str,
        payload: str | bytes | None,
        *,
        retain: bool = True,
        qos: int = 1,
        correlation_data: bytes | None = None,
    ) -> None:
        properties = None
        if correlation_data is not None and self.v5:
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = correlation_data
        data = payload.encode("utf-8") if isinstance(payload, str) else payload or b""  # paho would do the same
        if qos > 0:
            self.room.acquire()
            self.room.queued(len(data))
        try:
            info = self.client.publish(topic, data, qos=qos, retain=retain, properties=properties)
        except Exception:
            if qos > 0:
                self.room.queued(-len(data))
            raise
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            if qos > 0:
                self.room.queued(-len(data))
            # paho's message ids are 16 bits: with 65,535 messages unacknowledged it refuses (drops) the next one
            self.refused += 1
            if self.refused % 1000 == 1:
                log.error(
                    "paho refused to queue a message on %s (%d unacknowledged messages); %d lost so far",
                    topic,
                    self._unacked(),
                    self.refused,
                )

    def stop(self, *, offline_payload: str | None = "offline", timeout: float = 3.0) -> None:
        """Publish ``offline`` by hand (a clean disconnect does not fire the will), then disconnect."""
        self.room.close()
        if offline_payload is not None and self.connected.is_set():
            info = self.client.publish(self.will_topic, offline_payload, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                log.warning("could not confirm the offline message before disconnecting")
        self.client.disconnect()
        self.client.loop_stop()
        self._events.put(("stop", None))
        if self._dispatcher is not None:
            self._dispatcher.join(timeout)
