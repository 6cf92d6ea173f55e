"""BMW CarData: how long a stream message takes to reach the bridge's topics, and what the start costs.

``python bench/cardata_bench.py [--messages 50]`` runs the daemon as a process against the CarData simulator
(in this process, its stream on a private mosquitto) and a second private mosquitto for the bridge, approves
the device code shown on the account's login topic, waits until the stream is subscribed, then sends stream
messages one at a time (a new state of charge each) and measures, for each, the time from the simulator's
publish to the bridge's ``<root>/battery_level`` reaching a subscriber. It prints the latency's median, 95th
percentile and maximum, and the REST calls the simulator counted from the first start on.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as paho
import requests
import yaml
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Broker, percentile
from mqttbridge.simulator.cardata import CarDataSimulator

CLIENT_ID = "bench-client"
SOC = "vehicle.drivetrain.batteryManagement.header"


def wait(messages: queue.Queue[tuple[float, str, bytes]], topic: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"timed out waiting for {topic}")
        try:
            arrived, got, payload = messages.get(timeout=left)
        except queue.Empty:
            continue
        if got == topic and check(payload):
            return arrived, payload


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50)
    args = parser.parse_args()
    broker = Broker()
    work = Path(tempfile.mkdtemp(prefix="bench-cardata-"))
    messages: queue.Queue[tuple[float, str, bytes]] = queue.Queue()
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bench-{os.getpid()}")
    client.on_message = lambda _c, _u, m: messages.put((time.monotonic(), m.topic, bytes(m.payload)))
    client.connect("127.0.0.1", broker.port)
    client.subscribe("car/#")
    client.loop_start()
    with CarDataSimulator(fixtures=True) as sim:
        vin = sim.vins[0]
        config = {
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "client_id": "bench-bridge", "base_topic": "car"},
            "state_dir": str(work / "state"),
            "accounts": [sim.account("bmw", CLIENT_ID, vehicles=[{"vin": vin, "name": "car1"}])],
        }
        path = work / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        daemon = subprocess.Popen(
            [sys.executable, "-m", "mqttbridge", "run", "-c", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=(work / "daemon.log").open("wb"),
        )
        try:
            _at, login = wait(messages, "car/bridge/accounts/bmw/login", lambda p: b"user_code" in p)
            code = json.loads(login)["user_code"]
            requests.post(f"{sim.url}/_sim/device/approve", json={"user_code": code}, timeout=5).raise_for_status()
            wait(messages, "car/bridge/accounts/bmw/stream", lambda p: json.loads(p)["subscribed"] is True)
            wait(messages, "car/car1/battery_level", lambda p: True)  # the first REST read
            latencies = []
            for n in range(args.messages):
                value = 10 + n % 80
                sent = time.monotonic()
                sim.stream_message(vin, {SOC: {"value": value, "unit": "%"}})
                arrived, _ = wait(messages, "car/car1/battery_level", lambda p, v=value: p == str(v).encode())
                latencies.append(arrived - sent)
            calls = [e for e in sim.simulation.log if e["path"].startswith("/customers/")]
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
            client.loop_stop()
            broker.stop()
    ms = [s * 1000 for s in latencies]
    print(
        f"CarData stream message -> bridge topic, {len(ms)} messages: median {percentile(ms, 50):.1f} ms, "
        f"p95 {percentile(ms, 95):.1f} ms, max {max(ms):.1f} ms"
    )
    print(f"REST calls from the first start: {len(calls)} ({', '.join(e['method'] + ' ' + e['path'] for e in calls)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
