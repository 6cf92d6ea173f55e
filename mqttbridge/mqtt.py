"""The MQTT session: one paho client, its will, reconnects and subscriptions.

Paho's callbacks run on its network thread, so they only copy what arrived into a queue and return;
a dispatcher thread hands events to the bridge. No exception may leave a callback (it would kill the
network thread), so each one is wrapped. Reconnecting is paho's own loop with back-off; every
(re)connect renews the subscriptions and tells the bridge to publish everything again.

Publishing waits for room (``PublishRoom``): paho queues every QoS 1 message until the broker acknowledges
it, without bound, and the bridge can publish a fleet's first round far faster than any broker acknowledges
it. That queue (a message object and a ``threading.Condition`` per message) was most of the daemon's memory
at 1,000 vehicles; paho's own limit (``max_queued_messages``) drops messages, which the bridge must not.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60
#: CONNACK reason codes that mean the credentials were refused (MQTT 3.1.1's 4 and 5 arrive as these)
_CREDENTIALS_REFUSED = {0x86, 0x87}  # Bad user name or password, Not authorized

#: unacknowledged QoS 1 messages paho may hold before a publisher waits for room (about 1 KB each)
MAX_UNACKED = 1000
#: a publisher that waited goes on once the broker has acknowledged paho's queue down to this many
RESUME_UNACKED = 500
#: the longest one publish waits for room while connected; then it is queued anyway (never dropped)
ROOM_WAIT_S = 10.0

#: marks paho's network thread while it runs one of our callbacks: a publish there must never wait, since
#: only that thread reads the acknowledgements that make room
_network = threading.local()


@dataclass(frozen=True)
class Incoming:
    """A received message, copied out of paho's object on its thread."""

    topic: str
    payload: bytes
    retain: bool
    response_topic: str | None = None
    correlation_data: bytes | None = None


def _guarded(name: str, func: Callable[..., None]) -> Callable[..., None]:
    """Wrap a paho callback so that nothing escapes into paho's network thread."""

    def callback(*args: Any) -> None:
        outer = getattr(_network, "inside", False)  # paho may log (a callback) from inside another callback
        _network.inside = True
        try:
            func(*args)
        except Exception:  # an escaping exception would end the network thread
            log.exception("error in the MQTT %s callback (ignored)", name)
        finally:
            _network.inside = outer

    return callback


def on_network_thread() -> bool:
    """True inside one of paho's callbacks (its network thread)."""
    return bool(getattr(_network, "inside", False))


class PublishRoom:
    """Back-pressure on paho's queue of unacknowledged messages.

    A publisher that finds ``high`` messages unacknowledged waits until the broker has acknowledged them down
    to ``low`` (the gap spares a thread switch per message), but never on paho's network thread, never while
    disconnected (paho keeps the message for the next connection) and never longer than ``wait`` seconds:
    then the message is queued anyway. Nothing is ever dropped; the queue is only kept from outgrowing what
    the broker takes.
    """

    def __init__(
        self,
        unacked: Callable[[], int],
        connected: threading.Event,
        *,
        high: int = MAX_UNACKED,
        low: int = RESUME_UNACKED,
        wait: float = ROOM_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not 0 <= low < high:
            raise ValueError("need 0 <= low < high")
        self.unacked = unacked
        self.connected = connected
        self.high = high
        self.low = low
        self.wait = wait
        self.clock = clock
        self._cond = threading.Condition()
        self._waiters = 0
        #: bumped when an acknowledgement brought the queue down to ``low``: whoever waited may go on
        self._freed = 0
        self._closed = False
        #: a wait ran out: said once, until the queue drains again
        self._stalled = False
        #: publishes that waited, and that gave up waiting (for the tests and the benchmark)
        self.waits = 0
        self.timeouts = 0

    def _must_wait(self, limit: int) -> bool:
        return not self._closed and self.connected.is_set() and self.unacked() >= limit

    def acquire(self) -> bool:
        """Wait for room if there is none; False when the wait ran out (the caller publishes anyway)."""
        if on_network_thread() or not self._must_wait(self.high):
            return True
        with self._cond:
            if not self._must_wait(self.high):
                return True
            deadline = self.clock() + self.wait
            freed = self._freed
            self.waits += 1
            self._waiters += 1
            try:
                # woken by the acknowledgement that made room, it goes on even if another publisher took it
                while self._freed == freed and self._must_wait(self.low + 1):
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

    def acknowledged(self) -> None:
        """paho dropped an acknowledged message from its queue (on its network thread)."""
        if self._waiters and self.unacked() <= self.low:
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


class _Client(paho.Client):
    """paho's client, remembering why the last connection attempt failed (``on_connect_fail`` is not told),
    and telling ``on_acknowledged`` whenever it dropped an acknowledged message from its queue."""

    last_connect_error: OSError | None = None
    #: for the back-pressure, which must not depend on ``on_publish`` (whoever uses the client may set that)
    on_acknowledged: Callable[[], None] | None = None

    def _do_on_publish(self, *args: Any) -> MQTTErrorCode:
        """paho's own step after an acknowledgement (private: MqttSession checks that it exists)."""
        result: MQTTErrorCode = super()._do_on_publish(*args)
        hook = self.on_acknowledged
        if hook is not None:
            try:
                hook()
            except Exception:  # an escaping exception would end the network thread
                log.exception("error in the MQTT acknowledgement hook (ignored)")
        return result

    def reconnect(self) -> MQTTErrorCode:
        try:
            result = super().reconnect()
        except OSError as exc:
            self.last_connect_error = exc
            raise
        self.last_connect_error = None
        return result


def connect_error_text(exc: OSError | None) -> str:
    """Why a connection attempt failed, with what to check (never a secret: none is in these errors)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        if "mismatch" in detail:
            return (
                f"TLS: the broker's certificate does not match the host name ({detail}); "
                f"set mqtt.host to a name in the certificate (mqtt.tls.insecure: true skips this check)"
            )
        return (
            f"TLS: the broker's certificate was refused ({detail}); mqtt.tls.ca_certs must hold the CA that signed it"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc}); check mqtt.tls and the broker's TLS listener"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    if exc is not None:
        return exc.strerror or str(exc) or type(exc).__name__
    return "no details"


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

    def _unacked(self) -> int:
        """QoS 1 messages paho holds until the broker acknowledges them (sent, or waiting for an in-flight slot)."""
        return len(self._out_messages)

    def _make_client(self) -> paho.Client:
        cfg = self.config
        client = _Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=paho.MQTTv5 if self.v5 else paho.MQTTv311,
            clean_session=None if self.v5 else True,
        )
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls is not None:
            client.tls_set(
                ca_certs=cfg.tls.ca_certs,
                certfile=cfg.tls.certfile,
                keyfile=cfg.tls.keyfile,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
            if cfg.tls.insecure:
                log.warning(
                    "mqtt.tls.insecure is true: the broker's host name is NOT checked against its "
                    "certificate (which must still be signed by a trusted CA)"
                )
                client.tls_insecure_set(True)
        client.will_set(self.will_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
        client.on_connect = _guarded("connect", self._paho_connect)
        client.on_disconnect = _guarded("disconnect", self._paho_disconnect)
        client.on_message = _guarded("message", self._paho_message)
        client.on_connect_fail = _guarded("connect_fail", self._paho_connect_fail)
        client.on_log = _guarded("log", self._paho_log)
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
            self._refused = True
            log.error("%s; retrying with back-off", self.last_error)
            return
        self.connects += 1
        self.last_error = None
        self._paho_error = None
        with self._sub_lock:  # with subscribe(): a filter added meanwhile is subscribed by one of the two
            self.connected.set()
            pending = list(self._subscriptions.items())
        for topic, (qos, rap) in pending:
            self._subscribe(topic, qos, rap)
        self._events.put(("connect", None))

    def _paho_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        self.room.wake()
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

    def _paho_acknowledged(self) -> None:
        self.room.acknowledged()

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
            self.client.subscribe(topic, options=SubscribeOptions(qos=qos, retainAsPublished=retain_as_published))
        else:
            self.client.subscribe(topic, qos)

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
        if qos > 0:
            self.room.acquire()
        self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)

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
