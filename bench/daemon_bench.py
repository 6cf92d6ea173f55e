"""The daemon as a process: command latency and resident memory.

Latency: from a command's arrival at the broker (the publisher's PUBACK) to the simulator receiving
``executeService``. The bridge's own share is that minus what a bare relay needs for the same path
(a paho subscriber that POSTs the same form to the simulator at once), percentile by percentile.
Memory: VmRSS of the daemon once every vehicle's state has been published, with 1 and 100 cars.
Run: python bench/daemon_bench.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import requests
import yaml
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Broker, percentile, rss_mb  # noqa: E402
from mqttbridge.simulator import SimulatorServer, demo_vehicles  # noqa: E402

COMMANDS = 100


class TimedSimulator(SimulatorServer):
    """Records when each executeService request arrives (CLOCK_MONOTONIC is shared by processes)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.arrivals: list[float] = []
        self.arrived = threading.Condition()
        handler = self._httpd.RequestHandlerClass
        original = handler.do_POST
        sim = self

        def do_post(this) -> None:
            if this.path.endswith("/executeService"):
                with sim.arrived:
                    sim.arrivals.append(time.monotonic())
                    sim.arrived.notify_all()
            original(this)

        handler.do_POST = do_post


def client(port: int, name: str) -> paho.Client:
    """A connected client (publishing before the CONNACK would silently go nowhere)."""
    connected = threading.Event()
    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=name, protocol=paho.MQTTv5)
    c.on_connect = lambda *_args: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    if not connected.wait(10):
        raise RuntimeError("benchmark client could not connect")
    return c


def wait_for_states(port: int, roots: list[str], timeout: float = 120) -> None:
    seen: set[str] = set()
    done = threading.Event()
    c = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"watch-{os.getpid()}", protocol=paho.MQTTv5
    )

    wanted = set(roots)

    def on_message(_c, _u, msg) -> None:
        root = msg.topic.rsplit("/", 1)[0]
        if root in wanted:  # car/bridge/state matches car/+/state too
            seen.add(root)
        if len(seen) >= len(wanted):
            done.set()

    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.subscribe("car/+/state", qos=1)
    c.loop_start()
    if not done.wait(timeout):
        raise RuntimeError(f"only {len(seen)} of {len(roots)} states published")
    c.loop_stop()
    c.disconnect()


def start_daemon(broker: Broker, sim: SimulatorServer, workdir: Path, names: dict[str, str]) -> subprocess.Popen:
    config = {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "base_topic": "car", "client_id": "bench-daemon"},
        "state_dir": str(workdir / "state"),
        "log_level": "WARNING",
        "homeassistant": {"discovery": "device"},
        "accounts": [
            {
                "name": "sim",
                "provider": "bmw_legacy",
                "base_url": sim.url,
                "username": "demo@example.com",
                "password": "demo",
                "api_key": "k",
                "api_secret": "s",
                "poll": {"interval": 3600, "datasets_interval": 3600},
                "commands": {"poll_interval": 0.1, "refresh_delay": 0, "timeout": 30},
                "vehicles": [{"vin": vin, "name": name} for vin, name in names.items()],
            }
        ],
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return subprocess.Popen(
        [sys.executable, "-m", "mqttbridge", "run", "-c", str(path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "daemon.log", "wb"),
    )


def latency(broker: Broker, sim: TimedSimulator, topic: str, status_topic: str, gap: float = 0.0) -> list[float]:
    """Send COMMANDS flash_lights, one after the other (each waits for its EXECUTED, then ``gap`` s)."""
    executed = threading.Event()
    watcher = client(broker.port, f"lat-watch-{os.getpid()}")
    watcher.on_message = lambda _c, _u, m: executed.set() if m.payload == b"EXECUTED" else None
    if status_topic:
        watcher.subscribe(status_topic, qos=1)
    sender = client(broker.port, f"lat-send-{os.getpid()}")
    samples = []
    for _ in range(COMMANDS):
        executed.clear()
        before = len(sim.arrivals)
        info = sender.publish(topic, "PRESS", qos=1)
        info.wait_for_publish(10)
        t0 = time.monotonic()
        with sim.arrived:
            sim.arrived.wait_for(lambda b=before: len(sim.arrivals) > b, timeout=10)
        samples.append(sim.arrivals[before] - t0)
        if status_topic:
            executed.wait(10)
        if gap:
            time.sleep(gap)
    for c in (watcher, sender):
        c.loop_stop()
        c.disconnect()
    return samples


def baseline(broker: Broker, sim: TimedSimulator, vin: str, gap: float) -> list[float]:
    """A bare relay: receive the command, POST the same form with a ready token, nothing else."""
    session = requests.Session()
    token = session.post(
        f"{sim.url}/webapi/oauth/token",
        auth=("k", "s"),
        data={"grant_type": "password", "username": "demo@example.com", "password": "demo"},
    ).json()["access_token"]
    url = f"{sim.url}/webapi/v1/user/vehicles/{vin}/executeService"
    relay = client(broker.port, f"relay-{os.getpid()}")

    def on_message(_c, _u, _m) -> None:
        threading.Thread(
            target=lambda: requests.post(
                url,
                data={"serviceType": "LIGHT_FLASH"},
                headers={"Authorization": f"Bearer {token}", "Connection": "close"},
            )
        ).start()

    relay.on_message = on_message
    relay.subscribe("relay/flash_lights/set", qos=1)
    time.sleep(0.5)  # let the subscription settle before the first sample
    samples = latency(broker, sim, "relay/flash_lights/set", "", gap)
    relay.loop_stop()
    relay.disconnect()
    return samples


def report(name: str, samples: list[float]) -> tuple[float, float]:
    med, p99 = statistics.median(samples), percentile(samples, 99)
    print(f"  {name:<18} median {med * 1000:6.1f} ms   p99 {p99 * 1000:6.1f} ms")
    return med, p99


def measure_latency(nodelay: bool, gap: float) -> None:
    broker = Broker(nodelay=nodelay)
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    cars = demo_vehicles(2)
    sim = TimedSimulator(cars, execution_step=0)
    sim.start()
    daemon = start_daemon(broker, sim, work, {cars[0].vin: "v0"})
    try:
        wait_for_states(broker.port, ["car/v0"])
        setting = "set_tcp_nodelay true" if nodelay else "mosquitto's default (Nagle on)"
        pause = f"{gap * 1000:.0f} ms after the previous EXECUTED" if gap else "back to back"
        print(
            f"latency of {COMMANDS} commands ({pause}), broker PUBACK -> simulator receives executeService; "
            f"broker: {setting}",
            flush=True,
        )
        bridge = latency(broker, sim, "car/v0/flash_lights/set", "car/v0/flash_lights/status", gap)
        base = baseline(broker, sim, cars[1].vin, gap)
        bm, b99 = report("mqttbridge", bridge)
        rm, r99 = report("bare relay", base)
        print(f"  bridge's own share: median {(bm - rm) * 1000:.1f} ms, p99 {(b99 - r99) * 1000:.1f} ms")
    finally:
        daemon.terminate()
        daemon.wait(15)
        sim.stop()
        broker.stop()


def measure_memory(count: int) -> float:
    broker = Broker()
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    cars = demo_vehicles(count)
    sim = SimulatorServer(cars, execution_step=0)
    sim.start()
    names = {car.vin: f"v{i}" for i, car in enumerate(cars)}
    daemon = start_daemon(broker, sim, work, names)
    try:
        wait_for_states(broker.port, [f"car/{n}" for n in names.values()])
        time.sleep(2)  # let the data sets of the first round land too
        return rss_mb(daemon.pid)
    finally:
        daemon.terminate()
        daemon.wait(15)
        sim.stop()
        broker.stop()


def main() -> None:
    measure_latency(nodelay=True, gap=0.0)
    measure_latency(nodelay=False, gap=0.0)
    measure_latency(nodelay=False, gap=0.2)
    one, hundred = measure_memory(1), measure_memory(100)
    print(f"resident memory of the daemon: {one:.1f} MB with 1 vehicle, {hundred:.1f} MB with 100 (limit 60)")


if __name__ == "__main__":
    main()
