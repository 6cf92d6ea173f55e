"""``mqttbridge demo``: the simulator's demo cars bridged to a local broker, with no configuration."""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
from pathlib import Path

from mqttbridge.bridge import Bridge
from mqttbridge.config import parse_config, valid_topic
from mqttbridge.errors import MqttBridgeError
from mqttbridge.logsetup import declare_public, setup_logging
from mqttbridge.purge import remove_published, under
from mqttbridge.simulator import SimulatorServer, demo_vehicles

log = logging.getLogger(__name__)

#: the simulator's public password (CONTRACT section 6); the demo uses it for the API key and secret too
DEMO_PASSWORD = "demo"

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
    """The demo's bridge (not started) and the lines that tell the user how to watch it.

    Its state folder is a fresh temp folder: ``finish_demo`` removes it when the demo stops.
    """
    problem = valid_topic(base_topic)
    if problem:
        raise MqttBridgeError(f"--base-topic: {problem}")
    setup_logging(log_level)
    # the simulator's documented credentials are public: masking them would garble ordinary words
    declare_public(DEMO_PASSWORD)
    check_broker(host, port)
    cars = demo_vehicles()
    simulator = SimulatorServer(cars, execution_step=2.0)
    simulator.start()
    state_dir = tempfile.mkdtemp(prefix="mqttbridge-demo-")
    try:
        data = {
            "mqtt": {"host": host, "port": port, "base_topic": base_topic, "client_id": f"mqttbridge-demo-{port}"},
            "state_dir": state_dir,
            "log_level": log_level,
            "accounts": [
                {
                    "name": "demo",
                    "provider": "bmw_legacy",
                    "base_url": simulator.url,
                    "username": "demo@example.com",
                    "password": DEMO_PASSWORD,
                    "api_key": DEMO_PASSWORD,
                    "api_secret": DEMO_PASSWORD,
                    "retries": 2,
                    "poll": {"interval": 60},
                    "commands": {"poll_interval": 1, "timeout": 60, "refresh_delay": 0},
                    "vehicles": [
                        {"vin": car.vin, "name": name, "allow_unlock": True}
                        for car, name in zip(cars, DEMO_NAMES, strict=True)
                    ],
                }
            ],
        }
        config = parse_config(data, env={}, base_dir=Path(tempfile.gettempdir()))
        bridge = Bridge(config)
    except BaseException:  # no bridge means nobody stops these: leave no simulator and no folder behind
        simulator.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    bridge.closers.append(simulator.stop)
    lines = [
        f"simulator: {simulator.url} ({len(cars)} demo cars: {', '.join(DEMO_NAMES)})",
        f"bridging them to {host}:{port} under {base_topic}/; watch it with:",
        f"  mosquitto_sub -h {host} -p {port} -v -t '{base_topic}/#'",
        f"lock a car:  mosquitto_pub -h {host} -p {port} -t {base_topic}/x1/lock/set -m LOCK",
        "Ctrl-C stops it and deletes the retained topics it published (demo --keep leaves them).",
    ]
    return bridge, lines


def published_by(bridge: Bridge) -> dict[str, str]:
    """The retained topics a stopped bridge left on the broker, with what it left there.

    The publisher's table plus ``<base>/bridge/state``, whose last word at stop is ``offline``
    (whether or not the table lists it, and whether the bridge said it or its will did).
    """
    published = dict(bridge.publisher.retained_items())
    published[f"{bridge.base}/bridge/state"] = "offline"
    return published


def finish_demo(bridge: Bridge, *, keep: bool = False) -> str:
    """After the stop: delete what this demo published (unless ``keep``), remove its state folder,
    and say so in one line. Call it after the service monitor's last heartbeat: that lands in the folder.

    Only the demo's own topics go, and only while they still hold the demo's payloads: a real bridge
    may run under the same base topic. Never raises (the demo is over either way).
    """
    mqtt, prefix = bridge.config.mqtt, bridge.config.homeassistant.prefix
    published = published_by(bridge)
    purge_hint = f"`mqttbridge purge --broker {mqtt.host}:{mqtt.port} --base-topic {bridge.base}`"
    if keep:
        configs = sum(1 for topic in published if not under(topic, bridge.base))
        said = (
            f"kept its {len(published) - configs} retained topics under {bridge.base}/ and {configs} "
            f"discovery configs (--keep; {purge_hint} removes them)"
        )
    else:
        try:
            result = remove_published(mqtt.host, mqtt.port, published, base_topic=bridge.base, prefix=prefix)
            said = (
                f"removed its {result.topics} retained topics under {bridge.base}/ and {result.configs} "
                f"discovery configs under {prefix}/"
            )
        except MqttBridgeError as exc:
            log.warning("could not remove the demo's retained topics: %s", exc)
            said = f"could not remove its retained topics ({exc}); {purge_hint} removes them"
        except Exception:  # a clean-up must not turn a clean stop into a traceback
            log.exception("could not remove the demo's retained topics")
            said = f"could not remove its retained topics; {purge_hint} removes them"
    state_dir = Path(bridge.config.state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)
    folder = f"removed its state folder {state_dir}" if not state_dir.exists() else f"could not remove {state_dir}"
    return f"demo stopped: {said}; {folder}"
