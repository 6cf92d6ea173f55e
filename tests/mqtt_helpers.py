"""A real mosquitto per test, a real MQTT observer, and the daemon as a process: the user's view."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqttbridge.simulator.ports import free_port  # the tests' one way to a port (why: that module)

ROOT = Path(__file__).resolve().parents[1]
WAIT = 20.0  # generous: these are upper bounds for events, never sleeps


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT, what: str = "condition") -> Any:
    """Poll a cheap predicate until it holds (used only where no event can be subscribed to)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Mosquitto:
    """A private broker on a free loopback port; stop() and start() keep the port for reconnect tests.

    ``users`` (name -> password) makes it accept only those credentials: no anonymous client.
    """

    def __init__(self, workdir: Path, extra_conf: str = "", users: dict[str, str] | None = None):
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        auth = "allow_anonymous true\n"
        if users:
            passwd = workdir / "mosquitto.passwd"
            passwd.touch(mode=0o600)
            tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
            for user, password in users.items():
                subprocess.run(
                    [tool, "-b", str(passwd), user, password],
                    check=True,
                    capture_output=True,
                )
            # run as root, mosquitto drops to its own user before it reads the 0600 file: stay who we are
            auth = f"allow_anonymous false\npassword_file {passwd}\nuser {getpass.getuser()}\n"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\n{auth}persistence false\n{extra_conf}")
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf), "-v"], stdout=log, stderr=log)
        wait_until(self._accepts, 10, f"mosquitto on port {self.port}")

    def _accepts(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@dataclass
class Msg:
    topic: str
    payload: bytes
    retain: bool
    correlation_data: bytes | None = None

    @property
    def text(self) -> str:
        return self.payload.decode()


class Observer:
    """A user's MQTT client: subscribes, records everything, waits for what it expects."""

    def __init__(
        self,
        port: int,
        topics: tuple[str, ...] = ("#",),
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        protocol: int = paho.MQTTv5,  # paho.MQTTv311 for a broker without MQTT 5 (NATS)
    ):
        self.port = port
        self.topics = topics
        self.messages: list[Msg] = []
        self._cond = threading.Condition()
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"observer-{os.getpid()}-{id(self)}",
            protocol=protocol,
        )
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.connected = threading.Event()
        self.client.reconnect_delay_set(0.1, 1)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise AssertionError("observer could not connect")

    def _on_connect(self, client, _userdata, _flags, reason, _props) -> None:
        if not reason.is_failure:
            for topic in self.topics:
                client.subscribe(topic, qos=1)
            self.connected.set()

    def _on_message(self, _client, _userdata, message) -> None:
        props = getattr(message, "properties", None)
        msg = Msg(
            message.topic,
            bytes(message.payload),
            bool(message.retain),
            getattr(props, "CorrelationData", None) if props else None,
        )
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[Msg], bool], timeout: float = WAIT, what: str = "a message", start: int = 0
    ) -> Msg:
        deadline = time.monotonic() + timeout
        with self._cond:
            index = start
            while True:
                while index < len(self.messages):
                    msg = self.messages[index]
                    index += 1
                    if predicate(msg):
                        return msg
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = "\n".join(f"  {m.topic} {m.payload[:120]!r}" for m in self.messages[-30:])
                    raise AssertionError(f"timed out waiting for {what}; last messages:\n{seen}")
                self._cond.wait(remaining)

    def wait_topic(self, topic: str, payload: str | None = None, **kwargs: Any) -> Msg:
        kwargs.setdefault("what", f"{topic} = {payload!r}")
        return self.wait_for(lambda m: m.topic == topic and (payload is None or m.text == payload), **kwargs)

    def mark(self) -> int:
        with self._cond:
            return len(self.messages)

    def since(self, mark: int, topic: str | None = None) -> list[Msg]:
        with self._cond:
            return [m for m in self.messages[mark:] if topic is None or m.topic == topic]

    def last(self, topic: str) -> Msg | None:
        with self._cond:
            return next((m for m in reversed(self.messages) if m.topic == topic), None)

    def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        retain: bool = False,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> None:
        props = None
        if response_topic is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = response_topic
            if correlation_data is not None:
                props.CorrelationData = correlation_data
        self.client.publish(topic, payload, qos=1, retain=retain, properties=props).wait_for_publish(10)

    def close(self) -> None:
        # disconnect first: it wakes paho's network thread, which loop_stop() would otherwise wait out (up to 1 s)
        self.client.disconnect()
        self.client.loop_stop()


def retained_now(
    port: int, topic_filter: str, sync_topic: str = "test/sync-marker", protocol: int = paho.MQTTv5
) -> dict[str, bytes]:
    """What a new subscriber gets as retained right now (ended by a marker message of our own)."""
    observer = Observer(port, (topic_filter, sync_topic), protocol=protocol)
    try:
        token = os.urandom(6).hex()
        observer.publish(sync_topic, token)
        observer.wait_for(lambda m: m.topic == sync_topic and m.text == token, what="sync marker")
        return {m.topic: m.payload for m in observer.messages if m.retain and m.payload}
    finally:
        observer.close()


class Daemon:
    """``python -m mqttbridge run`` as a process, the way a user runs it."""

    def __init__(self, workdir: Path, config: dict[str, Any]):
        self.workdir = workdir
        self.path = workdir / "config.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.path.chmod(0o600)
        self.log = workdir / "daemon.log"
        self.proc: subprocess.Popen | None = None

    def start(self, *extra: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mqttbridge", "run", "-c", str(self.path), *extra],
                stdout=log,
                stderr=log,
                env=env,
                cwd=ROOT,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon did not stop within {timeout} s:\n{self.tail()}") from None

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def demo_process(port: int, tmp_path: Path, base: str, *extra: str) -> tuple[subprocess.Popen[str], Path]:
    """``mqttbridge demo`` as a user runs it, in its own process against the broker on ``port``, and its private
    temp folder (``TMPDIR``: the demo must leave it empty); the container's STATE_DIRECTORY is not passed on."""
    temp = tmp_path / "tmp"
    temp.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    env.update(TMPDIR=str(temp), PYTHONUNBUFFERED="1")
    argv = ["demo", "--broker", f"127.0.0.1:{port}", "--base-topic", base, *extra]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqttbridge", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    return proc, temp


def tmpdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
