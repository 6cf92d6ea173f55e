"""A three-node NATS cluster with JetStream and the MQTT listener, from the distribution's ``nats-server``.

Each node runs on free loopback ports (client, cluster routes, MQTT, monitoring) with its own JetStream store
in a temporary directory and routes to the other two. ``start()`` returns once the cluster has formed: every
live node has its routes, sees the same JetStream meta leader, says it is healthy on its monitoring endpoint,
and accepts an MQTT 3.1.1 client (the first MQTT client of an account creates the MQTT streams, with three
replicas). ``kill(i)`` SIGKILLs one node (no goodbye to its peers or clients), ``restart(i)`` starts it again on
the same ports and store. NATS speaks MQTT 3.1.1 only: every client here uses it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from .mqtt_helpers import Msg, Observer, free_port, wait_until

#: starting a node, forming the cluster or electing leaders takes seconds; these bound the waits
READY_S = 60.0
#: how long ``retained_now`` waits for one sync marker before it sends another
MARKER_S = 5.0


def nats_binary() -> str | None:
    return shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if os.access(p, os.X_OK)), None
    )


@dataclass
class NatsNode:
    name: str
    workdir: Path
    client_port: int = field(default_factory=free_port)
    route_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.workdir / f"{self.name}.conf"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def port(self) -> int:
        """The MQTT port (what a bridge or an observer connects to)."""
        return self.mqtt_port

    def write_conf(self, peers: list[NatsNode], cluster_name: str) -> None:
        routes = ", ".join(f'"nats-route://127.0.0.1:{p.route_port}"' for p in peers if p is not self)
        store = self.workdir / f"{self.name}-js"
        self.conf.write_text(
            textwrap.dedent(
                f"""\
                server_name: {self.name}
                host: 127.0.0.1
                port: {self.client_port}
                http: "127.0.0.1:{self.http_port}"
                jetstream {{
                  store_dir: "{store}"
                  max_memory_store: 256MB
                  max_file_store: 1GB
                }}
                cluster {{
                  name: {cluster_name}
                  host: 127.0.0.1
                  port: {self.route_port}
                  routes: [{routes}]
                }}
                mqtt {{
                  host: 127.0.0.1
                  port: {self.mqtt_port}
                  # the MQTT streams (sessions, QoS 1 messages, retained messages) on every node: one may die
                  stream_replicas: 3
                }}
                """
            )
        )

    def start(self, binary: str) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [binary, "-c", str(self.conf), "-l", str(self.log)], stdout=log, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def monitor(self, path: str) -> tuple[int, Any]:
        """GET one monitoring endpoint: (HTTP status, its JSON), or (0, None) while nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=2) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read())
            except ValueError:
                return exc.code, None
        except (OSError, ValueError):
            return 0, None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def mqtt_connects(port: int, timeout: float = 5.0) -> bool:
    """One MQTT 3.1.1 client connects and is accepted (CONNACK 0); False if refused or nothing answers."""
    done = threading.Event()
    result: list[bool] = []
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"probe-{os.getpid()}-{os.urandom(3).hex()}",
        protocol=paho.MQTTv311,
        clean_session=True,
    )

    def on_connect(_c, _u, _f, reason, _p) -> None:
        result.append(not reason.is_failure)
        done.set()

    client.on_connect = on_connect
    try:
        client.connect("127.0.0.1", port, keepalive=10)
    except OSError:
        return False
    client.loop_start()
    try:
        return done.wait(timeout) and result[0]
    finally:
        client.disconnect()
        client.loop_stop()


class NatsCluster:
    """Three ``nats-server`` processes routed to each other, JetStream on, an MQTT listener on each."""

    def __init__(self, workdir: Path, size: int = 3, name: str = "mqttbridge-test"):
        binary = nats_binary()
        if binary is None:
            raise RuntimeError("nats-server is not installed (Debian: apt-get install nats-server)")
        self.binary = binary
        self.workdir = workdir
        self.nodes = [NatsNode(f"n{i + 1}", workdir) for i in range(size)]
        for node in self.nodes:
            node.write_conf(self.nodes, name)

    def __getitem__(self, index: int) -> NatsNode:
        return self.nodes[index]

    def start(self) -> None:
        for node in self.nodes:
            node.start(self.binary)
        self.wait_ready()

    def live(self) -> list[NatsNode]:
        return [n for n in self.nodes if n.alive()]

    def _ready(self) -> bool:
        live = self.live()
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is not None and node in self._expected:
                raise AssertionError(f"nats-server {node.name} exited:\n{node.tail()}")
        leaders = set()
        for node in live:
            _status, routes = node.monitor("/routez")
            if not routes or routes.get("num_routes", 0) < len(live) - 1:
                return False
            _status, jsz = node.monitor("/jsz")
            leader = ((jsz or {}).get("meta_cluster") or {}).get("leader")
            if not leader:
                return False
            leaders.add(leader)
            # healthy: JetStream is enabled and current with the meta leader and the assets this node holds
            status, health = node.monitor("/healthz")
            if status != 200 or (health or {}).get("status") != "ok":
                return False
        return len(leaders) == 1 and leaders <= {n.name for n in live}

    def wait_ready(self) -> None:
        """Routes up, one JetStream meta leader all live nodes agree on, all healthy, MQTT accepted on each."""
        self._expected = self.live()
        try:
            wait_until(self._ready, READY_S, "the NATS cluster to form and elect a JetStream leader")
            for node in self.live():  # the MQTT streams' own leaders may still be electing: bounded retries
                wait_until(lambda n=node: mqtt_connects(n.mqtt_port), READY_S, f"MQTT on {node.name}")
                wait_until(lambda n=node: mqtt_works(n.mqtt_port), READY_S, f"QoS 1 subscriptions on {node.name}")
        except AssertionError as exc:
            logs = "\n".join(f"--- {n.name} ---\n{n.tail(1500)}" for n in self.nodes)
            raise AssertionError(f"{exc}\n{logs}") from None

    def kill(self, index: int) -> None:
        """SIGKILL one node: its clients lose their connection, its peers lose a route, nobody is told."""
        node = self.nodes[index]
        assert node.proc is not None
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)
        self.wait_ready()

    def restart(self, index: int) -> None:
        node = self.nodes[index]
        assert not node.alive()
        node.start(self.binary)
        self.wait_ready()

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive():
                assert node.proc is not None
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()

    def logs(self, chars: int = 1500) -> str:
        return "\n".join(f"--- nats {n.name} ---\n{n.tail(chars)}" for n in self.nodes)


class NatsObserver(Observer):
    """A user's MQTT 3.1.1 client on one node (NATS refuses MQTT 5) that returns once its subscriptions are
    acknowledged. NATS acknowledges a QoS 1 subscription once it has created the JetStream consumer behind it,
    which takes a while; a message published meanwhile by another client is not delivered (nor, if the
    retained copy on this node is not there yet either, its retained copy)."""

    def __init__(self, port: int, topics: tuple[str, ...] = ("#",), **kwargs: Any):
        self.subscribed = threading.Event()
        self.refused = False
        self._pending: set[int] = set()
        super().__init__(port, topics, protocol=paho.MQTTv311, **kwargs)
        if not self.subscribed.wait(READY_S) or self.refused:
            self.close()
            raise AssertionError(f"the subscriptions to {topics} on port {port} were refused or not acknowledged")

    def wait_for(
        self, predicate: Callable[[Msg], bool], timeout: float = READY_S, what: str = "a message", start: int = 0
    ) -> Msg:
        """Waits allow READY_S by default: NATS 2.9 once held a message for over 30 s on a loaded machine."""
        return super().wait_for(predicate, timeout=timeout, what=what, start=start)

    def _on_connect(self, client, _userdata, _flags, reason, _props) -> None:
        if reason.is_failure:
            return
        client.on_subscribe = self._on_subscribe
        _result, mid = client.subscribe([(topic, 1) for topic in self.topics])
        self._pending.add(mid)
        self.connected.set()

    def _on_subscribe(self, _client, _userdata, mid, reasons, _props) -> None:
        if any(r.is_failure for r in reasons):
            self.refused = True  # e.g. NATS could not create the JetStream consumer (no stream leader yet)
            self.subscribed.set()
            return
        self._pending.discard(mid)
        if not self._pending:
            self.subscribed.set()


def observer(port: int, topics: tuple[str, ...] = ("#",), **kwargs: Any) -> NatsObserver:
    """A ``NatsObserver``, asked for again while NATS refuses its subscriptions (bounded): while a node is down,
    a new QoS 1 subscription is refused when its JetStream consumer is not created within NATS's own 4 s."""
    made: list[NatsObserver] = []

    def accepted() -> bool:
        try:
            made.append(NatsObserver(port, topics, **kwargs))
        except AssertionError:
            return False
        return True

    wait_until(accepted, READY_S, f"the subscriptions to {topics} accepted on port {port}")
    return made[-1]


def retained_now(port: int, topic_filter: str, sync_topic: str = "test/sync-marker") -> dict[str, bytes]:
    """What a new subscriber on this node gets as retained right now: its subscription acknowledged (a refused
    one would get nothing), then ended by a marker message of our own."""
    probe = observer(port, (topic_filter, sync_topic))
    try:
        # NATS 2.9 on a loaded machine once lost (or held for over 30 s) the first marker a fresh subscriber sent
        # itself: another marker every MARKER_S, any of them ends the wait (bounded by READY_S in all)
        tokens: set[str] = set()
        for _ in range(int(READY_S / MARKER_S)):
            token = os.urandom(6).hex()
            tokens.add(token)
            probe.publish(sync_topic, token)
            try:
                probe.wait_for(lambda m: m.topic == sync_topic and m.text in tokens, timeout=MARKER_S, what="marker")
            except AssertionError:
                continue
            return {m.topic: m.payload for m in probe.messages if m.retain and m.payload}
        raise AssertionError(f"none of {len(tokens)} sync markers came back on port {port} within {READY_S:g} s")
    finally:
        probe.close()


def retained_on(port: int, topic_filter: str, predicate: Callable[[dict[str, bytes]], Any]) -> dict[str, bytes]:
    """What a new subscriber on ``port`` gets as retained once ``predicate`` holds for it (a retained message
    reaches the other nodes' copies asynchronously)."""
    seen: list[dict[str, bytes]] = []

    def holds() -> bool:
        seen.append(retained_now(port, topic_filter))
        return bool(predicate(seen[-1]))

    try:
        wait_until(holds, READY_S, what=f"the retained {topic_filter} on port {port}")
    except AssertionError as exc:
        last = {t: v[:80] for t, v in seen[-1].items()} if seen else None
        raise AssertionError(f"{exc}; last seen: {last}") from None
    return seen[-1]


def mqtt_works(port: int) -> bool:
    """A QoS 1 subscription is acknowledged and a QoS 1 message comes back through it: after a node died, the
    JetStream leaders behind the MQTT streams and consumers are elected again some seconds after the meta
    leader, and until then NATS refuses QoS 1 subscriptions."""
    topic = f"test/probe-{os.urandom(4).hex()}"
    try:
        probe = NatsObserver(port, (topic,))
    except AssertionError:
        return False
    try:
        probe.publish(topic, "probe")
        probe.wait_for(lambda m: m.topic == topic, timeout=10, what="the probe")
        return True
    except (AssertionError, RuntimeError, ValueError):
        return False
    finally:
        probe.close()


#: a client in its own process, connected with a will, that prints "connected" and waits to be killed
_WILL_CLIENT = """
import os, sys, threading
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
port, client_id, topic = int(sys.argv[1]), sys.argv[2], sys.argv[3]
up = threading.Event()
client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                     protocol=paho.MQTTv311, clean_session=True)
client.will_set(topic, "offline", qos=1, retain=True)
client.on_connect = lambda c, u, f, reason, p: (not reason.is_failure) and up.set()
# the broker closed the connection (e.g. another client took its id over): say so and end, no reconnect
client.on_disconnect = lambda *args: up.is_set() and (print("disconnected", flush=True), os._exit(0))
client.connect("127.0.0.1", port, keepalive=30)
client.loop_start()
if not up.wait(20):
    sys.exit("not connected")
client.publish(topic, "online", qos=1, retain=True).wait_for_publish(20)
print("connected", flush=True)
threading.Event().wait()
"""


class WillClient:
    """``_WILL_CLIENT`` as a process: kill() ends it without a DISCONNECT, as a crash would."""

    def __init__(self, port: int, client_id: str, topic: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WILL_CLIENT, str(port), client_id, topic],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until it is connected and "online" is acknowledged, or it died
        if line.strip() != "connected":
            self.proc.kill()
            raise AssertionError(f"the will client did not connect: {line}{self.proc.stdout.read()}")

    def wait_closed(self, timeout: float = 20.0) -> None:
        """The broker closed its connection: the client said so and ended."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the broker did not close the connection within {timeout} s") from None
        assert self.proc.stdout is not None
        assert self.proc.stdout.read().strip() == "disconnected"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def running_cluster(directory: Path) -> Iterator[NatsCluster]:
    """A started three-node cluster in ``directory`` until the generator is closed (the tests' fixtures)."""
    if nats_binary() is None:
        pytest.skip("nats-server is not installed (.ci/run installs Debian's nats-server)")
    directory.mkdir(parents=True, exist_ok=True)
    nats = NatsCluster(directory)
    nats.start()
    try:
        yield nats
    finally:
        nats.stop()
