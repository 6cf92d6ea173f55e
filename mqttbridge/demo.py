"""``mqttbridge demo``: the simulator's demo cars bridged to a local broker, with no configuration."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from mqttbridge.bridge import Bridge
from mqttbridge.config import parse_config, valid_topic
from mqttbridge.errors import MqttBridgeError
from mqttbridge.logsetup import setup_logging
from mqttbridge.simulator import SimulatorServer, demo_vehicles

#: topic names for the four demo cars, in demo_vehicles() order
DEMO_NAMES = ("i3", "i3_rex", "530e", "x1")


def check_broker(host: str, port: int) -> None:
    """Fail fast with advice instead of retrying forever against nothing."""
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        raise MqttBridgeError(
            f"no MQTT broker answers at {host}:{port} ({exc.strerror or exc}). Install one with "
            "`sudo apt-get install mosquitto` (it listens on localhost:1883), or give --broker HOST:PORT"
        ) from None


def demo_bridge(host: str, port: int, base_topic: str, *, log_level: str = "INFO") -> tuple[Bridge, list[str]]:
    problem = valid_topic(base_topic)
    if problem:
        raise MqttBridgeError(f"--base-topic: {problem}")
    setup_logging(log_level)
    check_broker(host, port)
    cars = demo_vehicles()
    simulator = SimulatorServer(cars, execution_step=2.0)
    simulator.start()
    data = {
        "mqtt": {"host": host, "port": port, "base_topic": base_topic, "client_id": f"mqttbridge-demo-{port}"},
        "state_dir": tempfile.mkdtemp(prefix="mqttbridge-demo-"),
        "log_level": log_level,
        "accounts": [{
            "name": "demo",
            "provider": "bmw_legacy",
            "base_url": simulator.url,
            "username": "demo@example.com",
            "password": "demo",
            "api_key": "demo",
            "api_secret": "demo",
            "retries": 2,
            "poll": {"interval": 60},
            "commands": {"poll_interval": 1, "timeout": 60, "refresh_delay": 0},
            "vehicles": [{"vin": car.vin, "name": name, "allow_unlock": True}
                         for car, name in zip(cars, DEMO_NAMES, strict=True)],
        }],
    }
    config = parse_config(data, env={}, base_dir=Path(tempfile.gettempdir()))
    bridge = Bridge(config)
    bridge.closers.append(simulator.stop)
    lines = [
        f"simulator: {simulator.url} ({len(cars)} demo cars: {', '.join(DEMO_NAMES)})",
        f"bridging them to {host}:{port} under {base_topic}/; watch it with:",
        f"  mosquitto_sub -h {host} -p {port} -v -t '{base_topic}/#'",
        f"lock a car:  mosquitto_pub -h {host} -p {port} -t {base_topic}/x1/lock/set -m LOCK",
        "Ctrl-C stops it.",
    ]
    return bridge, lines

