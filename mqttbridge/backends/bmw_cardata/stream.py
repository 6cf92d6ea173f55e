"""CarData's MQTT stream (bmw-cardata-facts §3): one connection per BMW account, username the GCID, password
the current id token, topic ``<gcid>/+``.

paho's network thread only queues what arrives; one worker thread per stream parses messages, relays them
(``stream.republish``), renews the tokens before the id token runs out and re-connects with each new id token
(a new client: reusing one across a token change can leave it refused). paho re-connects on its own with its
back-off. BMW allows one stream connection per account: when connections keep being dropped soon after they
were made, another tool is using the slot; that is said once, and the back-off grows to minutes.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from mqttbridge.errors import ActionRequiredError, MqttBridgeError

from .auth import CarDataAuth, Tokens

log = logging.getLogger(__name__)

KEEPALIVE_S = 30
#: paho's reconnect back-off (seconds, doubling from the first to the second)
RECONNECT_DELAYS = (2.0, 120.0)
#: when another client keeps taking the slot: minutes, not a tight loop
CONFLICT_DELAYS = (300.0, 900.0)
#: a disconnect this soon after a successful connect counts towards a slot conflict ...
SHORT_LIVED_S = 60.0
#: ... and this many of them within the window are one
CONFLICT_DROPS = 3
CONFLICT_WINDOW_S = 300.0
#: a connection that lasted this long ends the conflict
STABLE_S = 600.0
#: a refused connection renews the tokens at most this often (BMW's refusals are sometimes spurious)
REFUSED_RENEW_S = 300.0
#: after a failed token renewal, the next try
RETRY_RENEW_S = 60.0
QUEUE_SIZE = 10_000
#: the state keys the account's retained ``stream`` topic shows (``<base>/bridge/accounts/<name>/stream``)
SHOWN = ("connected", "subscribed", "conflict", "last_error")
#: the worker looks at the token expiry at least this often
WAKE_S = 300.0
#: CONNACK reasons meaning the credentials (3.1.1 codes 4 and 5 arrive as these MQTT 5 reason codes)
REFUSED_REASONS = frozenset({134, 135})


class CarDataStream:
    """The account's one stream connection."""

    def __init__(
        self,
        account: Any,
        auth: CarDataAuth,
        *,
        on_message: Callable[[str, Any], None],
        relay: Callable[[str, bytes], None] | None = None,
        event: Callable[..., None] | None = None,
        publish_state: Callable[[dict[str, Any]], None] | None = None,
        delays: tuple[float, float] = RECONNECT_DELAYS,
        conflict_delays: tuple[float, float] = CONFLICT_DELAYS,
    ):
        self.account = account
        self.auth = auth
        self.on_message = on_message
        self.relay = relay
        self.event = event
        self.publish_state = publish_state
        self.delays = delays
        self.conflict_delays = conflict_delays
        prefix = getattr(getattr(account, "stream", None), "republish", None)
        self.republish: str | None = str(prefix).rstrip("/") if prefix else None
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(QUEUE_SIZE)
        self._client: paho.Client | None = None
        self._tokens: Tokens | None = None
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connected_at: float | None = None
        self._drops: deque[float] = deque()
        self._refused_renewed_at = float("-inf")
        self._retry_at: float | None = None
        self._state: dict[str, Any] = {
            "connected": False,
            "subscribed": False,
            "conflict": False,
            "connects": 0,
            "disconnects": 0,
            "messages": 0,
            "dropped": 0,
            "last_message_at": None,
            "last_error": None,
        }

    @property
    def state(self) -> dict[str, Any]:
        """For the bridge and tests: connected, conflict (another tool holds the slot), counters, last error."""
        with self._lock:
            return dict(self._state)

    def _set(self, **changes: Any) -> None:
        with self._lock:
            shown = {key: self._state[key] for key in SHOWN}
            self._state.update(changes)
            moved = any(self._state[key] != shown[key] for key in SHOWN)
        if moved:  # published by the worker: the bridge's broker may make a publisher wait
            self._put(("state",))

    def shown_state(self) -> dict[str, Any]:
        """What the account's retained ``stream`` topic says: changes at connects and drops, not per message."""
        with self._lock:
            return {key: self._state[key] for key in SHOWN}

    def _bump(self, key: str) -> None:
        with self._lock:
            self._state[key] += 1

    # --- life ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.auth.on_tokens.append(self._new_tokens)
        self._worker = threading.Thread(target=self._work, name=f"cardata-stream-{self.account.name}", daemon=True)
        self._worker.start()
        self._put(("start",))

    def stop(self) -> None:
        if self._new_tokens in self.auth.on_tokens:
            self.auth.on_tokens.remove(self._new_tokens)
        if self._worker is not None:
            self._queue.put(("stop",))
            self._worker.join(30)
            self._worker = None
        self._disconnect()

    def _put(self, item: tuple[Any, ...]) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._bump("dropped")

    def _new_tokens(self, tokens: Tokens) -> None:
        self._put(("tokens", tokens))

    # --- the worker ----------------------------------------------------------------------------------------

    def _timeout(self) -> float | None:
        due = [t for t in (self._tokens.renew_at if self._tokens else None, self._retry_at) if t is not None]
        # at most WAKE_S: a jump of the clock (a suspended machine) is noticed soon
        return min(WAKE_S, max(0.5, min(due) - self.auth.clock())) if due else None

    def _work(self) -> None:
        while True:  # a worker's queue, not a retry loop
            try:
                item = self._queue.get(timeout=self._timeout())
            except queue.Empty:
                item = ("renew",)
            try:
                if item[0] == "stop":
                    return
                self._handle(item)
            except Exception:
                log.exception("%s: CarData stream worker error (ignored)", self.account.name)

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "message":
            self._message(item[1], item[2])
        elif kind == "start":
            tokens = self.auth.current()
            if tokens is None:
                log.info("%s: CarData stream waits for the login", self.account.name)
            elif tokens.renew_at <= self.auth.clock():
                self._renew(None)
            else:
                self._connect(tokens)
        elif kind == "tokens":
            tokens = item[1]
            if self._tokens is None or tokens.id_token != self._tokens.id_token:
                self._connect(tokens)
        elif kind == "renew":
            self._renew(None)
        elif kind == "state" and self.publish_state is not None:
            self.publish_state(self.shown_state())
        elif kind == "conflict" and self.event is not None:
            self.event("stream_slot_conflict", message=item[1])
        elif kind == "refused":
            used = item[1]
            now = time.monotonic()
            if self._tokens is used and now - self._refused_renewed_at >= REFUSED_RENEW_S:
                self._refused_renewed_at = now
                self._renew(used)

    def _renew(self, rejected: Tokens | None) -> None:
        """New tokens (which re-connect through ``_new_tokens``); a login that is needed stops the stream."""
        self._retry_at = None
        try:
            tokens = self.auth.renew(rejected=rejected)
        except ActionRequiredError as exc:
            log.warning("%s: CarData stream stopped until the login is done: %s", self.account.name, exc)
            self._tokens = None
            self._disconnect()
            return
        except MqttBridgeError as exc:
            log.warning("%s: CarData token renewal for the stream failed: %s; again soon", self.account.name, exc)
            self._set(last_error=str(exc))
            self._retry_at = self.auth.clock() + RETRY_RENEW_S
            return
        if self._tokens is None or tokens.id_token != self._tokens.id_token:
            self._connect(tokens)

    def _message(self, topic: str, payload: bytes) -> None:
        vin = topic.rsplit("/", 1)[-1]
        if self.republish and self.relay is not None:
            try:
                self.relay(f"{self.republish}/{vin}", payload)
            except Exception:
                log.exception("%s: relaying a CarData stream message failed (ignored)", self.account.name)
        try:
            message = json.loads(payload)
        except ValueError:
            log.warning("%s: a CarData stream message on %s is not JSON; ignored", self.account.name, topic)
            return
        self.on_message(vin, message)

    # --- the paho client ----------------------------------------------------------------------------------

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._set(connected=False, subscribed=False)

    def _connect(self, tokens: Tokens) -> None:
        self._disconnect()  # BMW takes one connection per account: the old one goes first
        self._tokens = tokens
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=tokens.gcid,
            protocol=paho.MQTTv311,
            clean_session=True,
            userdata=tokens,
        )
        client.username_pw_set(tokens.gcid, tokens.id_token)
        if self.account.stream_tls:
            context = ssl.create_default_context(cafile=self.account.stream_ca or None)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            client.tls_set_context(context)
        delays = self.conflict_delays if self.state["conflict"] else self.delays
        client.reconnect_delay_set(int(delays[0]), int(delays[1]))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        client.connect_async(self.account.stream_host, int(self.account.stream_port), keepalive=KEEPALIVE_S)
        client.loop_start()
        log.info("%s: CarData stream connecting to %s", self.account.name, self.account.stream_host)

    # paho callbacks: never block, never raise

    def _on_connect(self, client: paho.Client, tokens: Tokens, _flags: Any, reason: Any, _props: Any) -> None:
        try:
            if client is not self._client:
                return
            if reason.is_failure:
                self._set(connected=False, last_error=f"connection refused: {reason}")
                log.warning("%s: CarData stream refused: %s", self.account.name, reason)
                if int(reason.value) in REFUSED_REASONS:
                    self._put(("refused", tokens))
                return
            self._connected_at = time.monotonic()
            self._bump("connects")
            self._set(connected=True, last_error=None)
            client.subscribe(f"{tokens.gcid}/+", qos=0)
            log.info("%s: CarData stream connected", self.account.name)
        except Exception:
            log.exception("%s: error in the CarData stream's on_connect (ignored)", self.account.name)

    def _on_subscribe(self, client: paho.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any) -> None:
        try:
            if client is not self._client:
                return
            if not any(r.is_failure for r in reasons):
                self._set(subscribed=True)
            else:
                self._set(last_error="subscription refused")
                log.error("%s: CarData stream: BMW refused the subscription to the account's cars", self.account.name)
        except Exception:
            log.exception("%s: error in the CarData stream's on_subscribe (ignored)", self.account.name)

    def _on_message(self, client: paho.Client, _userdata: Any, message: Any) -> None:
        try:
            self._bump("messages")
            self._set(last_message_at=self.auth.clock())
            self._put(("message", message.topic, bytes(message.payload)))
        except Exception:
            log.exception("%s: error in the CarData stream's on_message (ignored)", self.account.name)

    def _on_disconnect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        try:
            if client is not self._client:
                return
            connected_at, self._connected_at = self._connected_at, None
            self._set(connected=False, subscribed=False)
            if connected_at is None:
                return
            self._bump("disconnects")
            now = time.monotonic()
            lasted = now - connected_at
            log.info("%s: CarData stream dropped after %.0f s (%s)", self.account.name, lasted, reason)
            if lasted >= STABLE_S:
                self._drops.clear()
                if self.state["conflict"]:
                    self._set(conflict=False)
                    client.reconnect_delay_set(int(self.delays[0]), int(self.delays[1]))
                    log.info("%s: the CarData stream slot is ours again", self.account.name)
                return
            if lasted > SHORT_LIVED_S:
                return
            self._drops.append(now)
            while self._drops and now - self._drops[0] > CONFLICT_WINDOW_S:
                self._drops.popleft()
            if len(self._drops) >= CONFLICT_DROPS and not self.state["conflict"]:
                self._conflict(client)
        except Exception:
            log.exception("%s: error in the CarData stream's on_disconnect (ignored)", self.account.name)

    def _conflict(self, client: paho.Client) -> None:
        self._set(conflict=True)
        client.reconnect_delay_set(int(self.conflict_delays[0]), int(self.conflict_delays[1]))
        message = (
            f"the CarData stream of account {self.account.name} was dropped {len(self._drops)} times within "
            f"{CONFLICT_WINDOW_S / 60:.0f} minutes right after connecting: another tool is using the account's one "
            "stream slot (BMW allows one connection per account). Let one of them hold it and relay the stream: "
            "set stream.republish on this bridge (or the other tool's relay) and point the other at it. "
            f"Re-connecting every {self.conflict_delays[0] / 60:.0f} minutes or more meanwhile."
        )
        log.warning("%s", message)
        self._put(("conflict", message))  # the bridge's event may wait for its broker: not on paho's thread
