"""``mqttbridge demo``: the providers' simulators and demo cars bridged to a local broker, with no configuration.

Each provider owns its share (``ProviderSpec.demo``: its simulator, the account bridging it, what to say about
it); this module gathers the chosen providers' parts into one bridge and cleans up after it. It names none.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mqttbridge import providers
from mqttbridge.bridge import Bridge
from mqttbridge.config import parse_config, valid_topic
from mqttbridge.errors import MqttBridgeError
from mqttbridge.logsetup import setup_logging
from mqttbridge.providers import DemoPart, ProviderSpec
from mqttbridge.purge import remove_published, under

log = logging.getLogger(__name__)


def demo_providers() -> dict[str, ProviderSpec]:
    """The installed providers that have a demo part, by name."""
    return {name: spec for name, spec in sorted(providers.available().items()) if spec.demo}


class DemoChoiceError(MqttBridgeError):
    """A provider without a demo part was asked for (the command line makes it a usage error)."""


def chosen_parts(names: Sequence[str] | None = None) -> list[ProviderSpec]:
    """The specs whose parts the demo shows: ``names`` in order (each once), or by default every installed
    provider whose demo is on by default (``demo_by_default``)."""
    offered = demo_providers()
    wanted = list(dict.fromkeys(names or [name for name, spec in offered.items() if spec.demo_by_default]))
    missing = [name for name in wanted if name not in offered]
    if missing or not wanted:
        what = f"no demo for {', '.join(missing)}" if missing else "no installed provider shows a demo by default"
        raise DemoChoiceError(f"{what}; providers with a demo: {', '.join(offered) or 'none'}")
    return [offered[name] for name in wanted]


def check_broker(host: str, port: int) -> None:
    """Fail fast with advice instead of retrying forever against nothing."""
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        raise MqttBridgeError(
            f"no MQTT broker answers at {host}:{port} ({exc.strerror or exc}). Install one with "
            "`sudo apt-get install mosquitto` (it listens on localhost:1883), or give --broker HOST:PORT"
        ) from None


def demo_bridge(
    host: str, port: int, base_topic: str, *, log_level: str = "INFO", provider_names: Sequence[str] | None = None
) -> tuple[Bridge, list[str]]:
    """The demo's bridge (not started) and the lines that tell the user how to watch it.

    ``provider_names``: whose parts to show (``chosen_parts``); each must have a demo. Its state
    folder is a fresh temp folder: ``finish_demo`` removes it when the demo stops. When something fails here,
    the parts already started are stopped and the folder removed before the error is raised.
    """
    specs = chosen_parts(provider_names)  # first: a wrong --provider is a usage error (``cmd_demo``)
    problem = valid_topic(base_topic)
    if problem:
        raise MqttBridgeError(f"--base-topic: {problem}")
    setup_logging(log_level)
    check_broker(host, port)
    parts = _start_parts(specs, base_topic, host, port)
    state_dir = tempfile.mkdtemp(prefix="mqttbridge-demo-")
    try:
        names = [name for part in parts for name in part.names]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:  # two providers' parts chose the same topic name
            raise MqttBridgeError(f"the demo's parts both name a car {', '.join(twice)}")
        data: dict[str, Any] = {
            "mqtt": {"host": host, "port": port, "base_topic": base_topic, "client_id": f"mqttbridge-demo-{port}"},
            "state_dir": state_dir,
            "log_level": log_level,
            "accounts": [part.account for part in parts],
        }
        config = parse_config(data, env={}, base_dir=Path(tempfile.gettempdir()))
        bridge = Bridge(config)
    except BaseException:  # no bridge means nobody stops these: leave no simulator and no folder behind
        _stop_parts(parts)
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    bridge.closers.extend(part.stop for part in parts)
    lines = [
        *(line for part in parts for line in part.lines),
        f"bridging them to {host}:{port} under {base_topic}/; watch it with:",
        f"  mosquitto_sub -h {host} -p {port} -v -t '{base_topic}/#'",
        *(line for part in parts for line in part.hints),
        "Ctrl-C stops it and deletes the retained topics it published (demo --keep leaves them).",
    ]
    return bridge, lines


def _start_parts(specs: list[ProviderSpec], base_topic: str, host: str, port: int) -> list[DemoPart]:
    """Each provider's part, started in order; if one fails, those already started are stopped first."""
    parts: list[DemoPart] = []
    try:
        for spec in specs:
            start = spec.load(spec.demo, "demo")
            parts.append(start(base_topic, host, port))
    except BaseException:
        _stop_parts(parts)
        raise
    return parts


def _stop_parts(parts: list[DemoPart]) -> None:
    """Stop every part, the last started first; one that fails to stop does not keep the others running."""
    for part in reversed(parts):
        try:
            part.stop()
        except Exception:
            log.exception("stopping the demo's %s part failed", part.account.get("provider"))


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
