"""Helpers for the CarData simulator tests: one device-code login, REST calls, a stream client."""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import secrets
import threading
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
import requests
from paho.mqtt.enums import CallbackAPIVersion

from mqttbridge.simulator.cardata import CarDataSimulator

from .conftest import FakeClock

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPE = "authenticate_user openid cardata:api:read cardata:streaming:read"
WAIT = 10.0


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def make_sim(start: str = "2026-11-29T12:00:00", **kwargs: Any) -> tuple[CarDataSimulator, FakeClock]:
    clock = FakeClock(epoch(start))
    kwargs.setdefault("stream", False)
    return CarDataSimulator(clock=clock, **kwargs).start(), clock


class Flow:
    """One device-code login as a client would run it, step by step."""

    def __init__(self, sim: CarDataSimulator, client_id: str = "client-a", scope: str | None = SCOPE):
        self.sim, self.client_id = sim, client_id
        self.verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(self.verifier.encode()).digest()).rstrip(b"=").decode()
        form = {
            "client_id": client_id,
            "response_type": "device_code",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if scope is not None:
            form["scope"] = scope
        self.code_response = requests.post(f"{sim.url}/gcdm/oauth/device/code", data=form, timeout=5)
        self.code = self.code_response.json()

    def poll(self, verifier: str | None = None) -> requests.Response:
        form = {
            "client_id": self.client_id,
            "device_code": self.code["device_code"],
            "grant_type": DEVICE_GRANT,
            "code_verifier": verifier or self.verifier,
        }
        return requests.post(f"{self.sim.url}/gcdm/oauth/token", data=form, timeout=5)


def login(sim: CarDataSimulator, client_id: str = "client-a") -> dict[str, Any]:
    flow = Flow(sim, client_id)
    assert sim.approve(flow.code["user_code"])
    answer = flow.poll()
    assert answer.status_code == 200, answer.text
    return answer.json()


def refresh(sim: CarDataSimulator, token: str, client_id: str = "client-a") -> requests.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    return requests.post(f"{sim.url}/gcdm/oauth/token", data=form, timeout=5)


def api(sim: CarDataSimulator, tokens: dict[str, Any], method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {tokens['access_token']}", "x-version": "v1", **kwargs.pop("headers", {})}
    return requests.request(method, f"{sim.url}{path}", headers=headers, timeout=5, **kwargs)


def jwt_payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class StreamClient:
    """A paho 2.x client as the bridge would use it, recording what the broker tells it."""

    def __init__(self, port: int, client_id: str, username: str, password: str, ca: str | None = None):
        self.connack: queue.Queue[Any] = queue.Queue()
        self.suback: queue.Queue[list[Any]] = queue.Queue()
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.disconnected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(60, 120)  # a kicked client must not come back during the test
        if ca:
            self.client.tls_set(ca_certs=ca)
        self.client.on_connect = lambda _c, _u, _f, reason, _p: self.connack.put(reason)
        self.client.on_subscribe = lambda _c, _u, _m, codes, _p: self.suback.put(codes)
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.on_disconnect = lambda *_a: self.disconnected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def connected(self) -> bool:
        """The CONNACK's verdict (waits for it)."""
        return not self.connack.get(timeout=WAIT).is_failure

    def subscribe(self, topic: str) -> list[Any]:
        self.client.subscribe(topic)
        return self.suback.get(timeout=WAIT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
