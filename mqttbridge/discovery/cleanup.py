"""Taking announcements back: the config topics a vehicle may have used, what to publish when entities went
away, and which retained configs on the broker this bridge published, so that stale ones (and only ours) are
emptied when a vehicle is gone or the discovery mode changed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from mqttbridge import providers
from mqttbridge.command_table import COMMANDS
from mqttbridge.config import HomeAssistantConfig
from mqttbridge.discovery.ids import CHARGING_KEY, LOCATION_KEY, device_id, status_key, topic_id
from mqttbridge.discovery.payloads import _dumps
from mqttbridge.fields import FIELDS
from mqttbridge.providers import VehicleOffers

#: the package's name, as before the split, so that log lines still say ``mqttbridge.discovery``
logger = logging.getLogger(__name__)


def _all_offers() -> list[VehicleOffers]:
    return [spec.offers for spec in providers.available().values()]


def _possible_entities() -> dict[str, set[str]]:
    """Every entity key discovery can make, with the platforms it can have (for cleanup)."""
    keys: dict[str, set[str]] = {}
    provided = [spec for offers in _all_offers() for spec in offers.fields]
    for spec in [*FIELDS.values(), *provided]:
        if spec.platform:
            keys.setdefault(spec.name, set()).add(spec.platform)
    keys.setdefault(CHARGING_KEY, set()).add("binary_sensor")
    keys.setdefault(LOCATION_KEY, set()).add("device_tracker")
    control = {
        "lock": {"lock"},
        "button": {"button"},
        "toggle": {"switch", "button", "climate"},
        "none": set(),
        "number": set(),
    }
    for command in COMMANDS.values():
        keys.setdefault(command.key, set()).update(control[command.entity])
        if command.entity == "number":
            for side in ("ac", "dc"):
                keys.setdefault(f"{command.key}_{side}", set()).add("number")
        keys.setdefault(status_key(command.name), set()).add("sensor")
    return {key: platforms for key, platforms in keys.items() if platforms}


_ALL_PLATFORMS = ("sensor", "binary_sensor", "lock", "button", "switch", "device_tracker", "climate", "number")


def vehicle_discovery_topics(vin: str, *, ha: HomeAssistantConfig, keys: Iterable[str] | None = None) -> list[str]:
    """Config topics this bridge may have used for ``vin``; publish an empty retained payload to each
    to remove the vehicle from Home Assistant.

    ``device`` mode: the device topic (``keys`` is ignored: single components are removed with
    ``discovery_changes``). ``component`` mode: one topic per (platform, key) that the tables can make,
    or only for ``keys`` (a key the tables do not know is tried on every platform). ``off``: both styles,
    so that what an earlier run announced can be taken back. Emptying a topic that holds nothing is harmless.
    """
    node = device_id(vin)
    topics: list[str] = []
    if ha.discovery in ("device", "off"):
        topics.append(f"{ha.prefix}/device/{node}/config")
    if ha.discovery in ("component", "off"):
        known = _possible_entities()
        wanted = list(known) if keys is None else list(dict.fromkeys(keys))
        for key in wanted:
            for platform in sorted(known.get(key, _ALL_PLATFORMS)):
                topics.append(f"{ha.prefix}/{platform}/{node}/{topic_id(key)}/config")
    return topics


def discovery_changes(previous: Iterable[tuple[str, str]], current: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """What to publish, in order, to go from the ``previous`` announcement to ``current``.

    Topics no longer announced are emptied. A device payload that lost components is first sent with
    each lost one as ``{"platform": ...}`` alone (HA removes a component only so, rulebook section 2b),
    then as it is now. Unchanged payloads are left out.
    """
    before = dict(previous)
    now = dict(current)
    out: list[tuple[str, str]] = [(topic, "") for topic in before if topic not in now]
    for topic, payload in now.items():
        old = before.get(topic)
        if old == payload:
            continue
        stub = _removal_stub(old, payload) if old else None
        if stub is not None:
            out.append((topic, stub))
        out.append((topic, payload))
    return out


def _removal_stub(old: str, new: str) -> str | None:
    """``new`` plus ``{"platform": p}`` for each component only ``old`` has; None when none was lost."""
    try:
        old_data, new_data = json.loads(old), json.loads(new)
    except ValueError:
        return None
    if not isinstance(old_data, dict) or not isinstance(new_data, dict):
        return None
    old_components, new_components = old_data.get("components"), new_data.get("components")
    if not isinstance(old_components, dict) or not isinstance(new_components, dict):
        return None
    lost = {
        key: {"platform": component.get("platform")}
        for key, component in old_components.items()
        if key not in new_components and isinstance(component, dict)
    }
    if not lost:
        return None
    return _dumps({**new_data, "components": {**new_components, **lost}})


def _get(data: Mapping[str, Any], full: str, short: str) -> Any:
    """A key under its full name or its HA abbreviation (an older announcement may use either)."""
    return data[full] if full in data else data.get(short)


def owned_vin(topic: str, payload: bytes | bytearray | str, *, base_topic: str, ha: HomeAssistantConfig) -> str | None:
    """The VIN of a retained vehicle config that THIS bridge published, else None; never raises.

    Ours means: a discovery topic under ``ha.prefix`` whose node id is the device identifier
    ``mqttbridge_<VIN>`` of the payload, and whose availability lists ``<base>/bridge/state``.
    Configs of other bridges, of other base topics and of other tools are never claimed. The caller
    empties an owned topic that it is not about to publish (a vehicle gone, a mode switched).
    """
    try:
        return _owned_vin(topic, payload, base_topic, ha)
    except Exception:  # a stranger's retained message must never stop the bridge
        logger.debug("retained config on %r not understood; left alone", topic, exc_info=True)
        return None


def _owned_vin(topic: str, payload: bytes | bytearray | str, base_topic: str, ha: HomeAssistantConfig) -> str | None:
    if not isinstance(topic, str) or not topic.startswith(f"{ha.prefix}/"):
        return None
    parts = topic[len(ha.prefix) + 1 :].split("/")
    if parts[-1] != "config" or len(parts) not in (3, 4):
        return None
    node = parts[1]
    if not node.startswith("mqttbridge_") or node.startswith("mqttbridge_bridge_"):
        return None
    text = payload.decode("utf-8") if isinstance(payload, bytes | bytearray) else payload
    if not isinstance(text, str) or not text.strip():
        return None
    data = json.loads(text)
    if not isinstance(data, dict):
        return None
    device = _get(data, "device", "dev")
    availability = _get(data, "availability", "avty")
    if not isinstance(device, dict) or not isinstance(availability, list):
        return None
    identifiers = _get(device, "identifiers", "ids")
    if isinstance(identifiers, str):
        identifiers = [identifiers]
    if not isinstance(identifiers, list) or node not in identifiers:
        return None
    bridge_state = f"{base_topic}/bridge/state"
    if not any(isinstance(item, dict) and _get(item, "topic", "t") == bridge_state for item in availability):
        return None
    serial = _get(device, "serial_number", "sn")
    if isinstance(serial, str) and serial and device_id(serial) == node:
        return serial
    return node.removeprefix("mqttbridge_")
