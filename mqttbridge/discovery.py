"""Home Assistant MQTT discovery payloads, built from data (``fields.FIELDS`` and ``command_table.COMMANDS``).

Pure functions: they return ``(topic, JSON payload)`` pairs and the caller publishes them retained
with QoS 1, so the rules of ``shared/docs/ha-mqtt-discovery.md`` can be tested without a broker.
Entities read exactly what the bridge publishes (CONTRACT section 3): bare values on ``<root>/<field>``,
``<root>/lock``, ``<root>/location`` and ``<root>/<command>/status``; commands go to ``<root>/<command>/set``.
Full key names are used, not abbreviations, so a ``mosquitto_sub`` reader can follow them.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mqttbridge import providers
from mqttbridge.command_table import COMMANDS, Command
from mqttbridge.config import HomeAssistantConfig
from mqttbridge.fields import FIELDS, FieldSpec
from mqttbridge.model import ExecutionStatus, VehicleInfo
from mqttbridge.providers import VehicleOffers

logger = logging.getLogger(__name__)

ORIGIN_NAME = "mqttbridge"
SUPPORT_URL = "https://github.com/mqttbridge/mqttbridge"
QOS = 1
#: the lock states the bridge publishes on ``<root>/lock`` (HA's defaults, written out for readers)
LOCK_STATES = {
    "state_locked": "LOCKED",
    "state_unlocked": "UNLOCKED",
    "state_locking": "LOCKING",
    "state_unlocking": "UNLOCKING",
}
#: what ``<root>/<command>/status`` can say (UNKNOWN is internal: the bridge does not publish it)
COMMAND_STATES = tuple(s.value for s in ExecutionStatus if s is not ExecutionStatus.UNKNOWN)
UNLOCK_CODE_FORMAT = r"^\S+$"
UNLOCK_CODE_TEMPLATE = '{"action": "{{ value }}", "code": "{{ code }}"}'
#: HA drops a discovery topic whose node or object id has other characters (rulebook section 1)
_TOPIC_ID = re.compile(r"[^a-zA-Z0-9_-]")
_SLUG = re.compile(r"[^a-z0-9]+")


#: entities that do not come from a field or a command row
CHARGING_KEY = "charging"
LOCATION_KEY = "location"
BRIDGE_STATE_KEY = "connection_state"
_STATUS_SUFFIX = "_command"


@dataclass(frozen=True)
class DiscoveredVehicle:
    """What discovery needs to know about one vehicle, gathered by the caller."""

    vin: str
    #: the configured vehicle name (the topic segment), e.g. "i3" or the VIN in lower case
    name: str
    #: the vehicle's root topic, e.g. "car/i3"
    root: str
    info: VehicleInfo
    #: the last published status fields (name -> value)
    fields: Mapping[str, Any]
    has_location: bool
    #: an unlock code is configured for this vehicle
    unlock_code: bool
    #: what the provider's cars offer beyond the common fields (their own fields, charge limits, climate)
    offers: VehicleOffers = field(default_factory=VehicleOffers)

    def field_spec(self, name: str) -> FieldSpec | None:
        return FIELDS.get(name) or self.offers.field(name)


@dataclass(frozen=True)
class _Entity:
    platform: str
    key: str
    config: dict[str, Any]


# --------------------------------------------------------------------------------------------------
# Names and ids
# --------------------------------------------------------------------------------------------------


def topic_id(text: str) -> str:
    """``text`` usable as a node/object id in a discovery topic: ``[a-zA-Z0-9_-]`` only."""
    return _TOPIC_ID.sub("_", text) or "_"


def slug(text: str) -> str:
    """A lower-case ``[a-z0-9_]`` slug for entity ids; accents are dropped, not turned into ``_``."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _SLUG.sub("_", plain.lower()).strip("_")


def device_id(vin: str) -> str:
    """The vehicle's device identifier, also the node id of its discovery topics."""
    return f"mqttbridge_{topic_id(vin)}"


def bridge_device_id(base_topic: str) -> str:
    """The bridge's device identifier; every vehicle names it as ``via_device``."""
    return f"mqttbridge_bridge_{topic_id(base_topic)}"


def status_key(command: str) -> str:
    """The key of a command's last-execution sensor (``lock_command``; never a field name)."""
    return f"{command}{_STATUS_SUFFIX}"


def _origin(version: str) -> dict[str, Any]:
    return {"name": ORIGIN_NAME, "sw_version": version, "support_url": SUPPORT_URL}


def _dumps(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------------------------------
# Entities of one vehicle, as data
# --------------------------------------------------------------------------------------------------


def _field_entity(spec: FieldSpec, root: str, value: Any) -> _Entity | None:
    """The entity of one published field, or None when the car lacks the thing or HA has no use for it."""
    if spec.platform is None or value is None:
        return None
    if spec.absent_value is not None and value == spec.absent_value:
        return None
    config: dict[str, Any] = {"name": spec.label, "state_topic": f"{root}/{spec.name}"}
    if spec.platform == "sensor":
        for option, setting in (
            ("device_class", spec.device_class),
            ("state_class", spec.state_class),
            ("unit_of_measurement", spec.unit),
        ):
            if setting:
                config[option] = setting
        if spec.options:
            config["options"] = list(spec.options)
    elif spec.platform == "binary_sensor":
        if spec.device_class:
            config["device_class"] = spec.device_class
        if spec.kind == "bool":
            config.update(payload_on="true", payload_off="false")
        else:
            config.update(payload_on="ON", payload_off="OFF", value_template=_on_template(spec.on_values))
    else:
        logger.warning("field %s asks for platform %r, which discovery does not build", spec.name, spec.platform)
        return None
    _decorate(config, icon=spec.icon, diagnostic=spec.diagnostic, enabled=spec.enabled)
    config.update(spec.extra)
    return _Entity(spec.platform, spec.name, config)


def _on_template(on_values: Iterable[str]) -> str:
    """A template giving ON for the listed bare values, OFF for any other."""
    return "{{ 'ON' if value in " + json.dumps(list(on_values)) + " else 'OFF' }}"


def _decorate(
    config: dict[str, Any], *, icon: str | None = None, diagnostic: bool = False, enabled: bool = True
) -> None:
    if icon:
        config["icon"] = icon
    if diagnostic:
        config["entity_category"] = "diagnostic"
    if not enabled:
        config["enabled_by_default"] = False


def _command_entities(spec: Command, vehicle: DiscoveredVehicle) -> list[_Entity]:
    """The control of one supported command (if it has one) and its last-execution sensor."""
    root = vehicle.root
    actions = vehicle.info.commands.get(spec.name, frozenset())
    command_topic = f"{root}/{spec.name}/set"
    offers = vehicle.offers
    entities: list[_Entity] = []
    if spec.entity == "lock":
        config: dict[str, Any] = {
            "name": spec.label,
            "command_topic": command_topic,
            "state_topic": f"{root}/lock",
            "payload_lock": "LOCK",
            "payload_unlock": "UNLOCK",
            **LOCK_STATES,
            "optimistic": False,
            "retain": False,
        }
        if vehicle.unlock_code:
            config.update(code_format=UNLOCK_CODE_FORMAT, command_template=UNLOCK_CODE_TEMPLATE)
        entities.append(_Entity("lock", spec.key, config))
    elif spec.entity == "button":
        entities.append(
            _Entity(
                "button",
                spec.key,
                {"name": spec.label, "command_topic": command_topic, "payload_press": "PRESS", "retain": False},
            )
        )
    elif (
        spec.name == "climate"
        and {"ON", "OFF"} <= actions
        and "climate_temperature" in vehicle.info.features
        and offers.climate_running
        and offers.climate_target
    ):
        entities.append(_Entity("climate", spec.key, _climate_config(spec, root, offers)))
    elif spec.entity == "number" and "SET" in actions and offers.charge_limits:
        for side, state_field in zip(("ac", "dc"), offers.charge_limits, strict=True):
            entities.append(
                _Entity(
                    "number",
                    f"{spec.key}_{side}",
                    {
                        "name": f"{spec.label} {side.upper()}",
                        "command_topic": command_topic,
                        "command_template": f'{{"{side}": {{{{ value | int }}}}}}',
                        "state_topic": f"{root}/{state_field}",
                        "min": 50,
                        "max": 100,
                        "step": 10,
                        "unit_of_measurement": "%",
                        "mode": "slider",
                        "retain": False,
                    },
                )
            )
    elif spec.entity == "toggle" and {"ON", "OFF"} <= actions:
        config = {
            "name": spec.label,
            "command_topic": command_topic,
            "payload_on": "ON",
            "payload_off": "OFF",
            "retain": False,
        }
        if spec.state_field:
            config.update(
                state_topic=f"{root}/{spec.state_field}",
                optimistic=False,
                value_template=_on_template([spec.state_on or "ON"]),
            )
        else:
            config["optimistic"] = True
        entities.append(_Entity("switch", spec.key, config))
    elif spec.entity == "toggle" and "ON" in actions:
        entities.append(
            _Entity(
                "button",
                spec.key,
                {
                    "name": spec.start_label or spec.label,
                    "command_topic": command_topic,
                    "payload_press": "ON",
                    "retain": False,
                },
            )
        )
    for entity in entities:
        _decorate(entity.config, icon=spec.icon)
    entities.append(_status_entity(spec.name, spec.noun, root))
    return entities


def _climate_config(spec: Command, root: str, offers: VehicleOffers) -> dict[str, Any]:
    """A climate entity for cars whose climate takes a target temperature (Hyundai/Kia): off or on; the
    provider names the fields that say whether it runs and at what temperature."""
    command_topic = f"{root}/{spec.name}/set"
    return {
        "name": spec.label,
        "modes": ["off", "heat_cool"],
        "mode_command_topic": command_topic,
        "mode_command_template": "{{ 'OFF' if value == 'off' else 'ON' }}",
        "mode_state_topic": f"{root}/{offers.climate_running}",
        "mode_state_template": "{{ 'heat_cool' if value == 'true' else 'off' }}",
        "temperature_command_topic": command_topic,
        "temperature_command_template": '{"action": "ON", "temperature": {{ value }}}',
        "temperature_state_topic": f"{root}/{offers.climate_target}",
        "min_temp": 14,
        "max_temp": 30,
        "temp_step": 0.5,
        "precision": 0.5,
        "temperature_unit": "C",
        "optimistic": False,
        "retain": False,
    }


def _status_entity(command: str, noun: str, root: str) -> _Entity:
    config: dict[str, Any] = {
        "name": f"Last {noun} command",
        "state_topic": f"{root}/{command}/status",
        "device_class": "enum",
        "options": list(COMMAND_STATES),
    }
    _decorate(config, icon="mdi:progress-check", diagnostic=True)
    return _Entity("sensor", status_key(command), config)


def _vehicle_entities(vehicle: DiscoveredVehicle) -> list[_Entity]:
    """Every entity of one vehicle: fields present, derived ones, commands supported."""
    root = vehicle.root
    specs = [*FIELDS.values(), *(spec for spec in vehicle.offers.fields if spec.name not in FIELDS)]
    entities = [
        entity for spec in specs if (entity := _field_entity(spec, root, vehicle.fields.get(spec.name))) is not None
    ]
    if vehicle.fields.get("charging_status") is not None:
        entities.append(
            _Entity(
                "binary_sensor",
                CHARGING_KEY,
                {
                    "name": "Charging",
                    "state_topic": f"{root}/charging_status",
                    "device_class": "battery_charging",
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    "value_template": _on_template(["CHARGING"]),
                },
            )
        )
    if vehicle.has_location:
        entities.append(
            _Entity(
                "device_tracker",
                LOCATION_KEY,
                {"name": None, "json_attributes_topic": f"{root}/location", "source_type": "gps", "icon": "mdi:car"},
            )
        )
    for spec in COMMANDS.values():
        if spec.always or spec.name in vehicle.info.commands:
            entities.extend(_command_entities(spec, vehicle))
    for command in vehicle.info.commands:
        if command not in COMMANDS:  # a backend's own command: at least its outcome is visible
            entities.append(_status_entity(command, command.replace("_", " "), root))
    seen: set[str] = set()
    unique = []
    for entity in entities:
        if entity.key in seen:
            logger.warning(
                "discovery of %s: entity key %s is made twice; the second is dropped", vehicle.vin, entity.key
            )
            continue
        seen.add(entity.key)
        unique.append(entity)
    return unique


def _device_name(vehicle: DiscoveredVehicle) -> str:
    """The user's name for the car when they gave one, else brand and model."""
    if vehicle.name and vehicle.name.lower() != vehicle.vin.lower():
        return vehicle.name
    brand, model = vehicle.info.brand.strip(), vehicle.info.model.strip()
    if not brand or model.lower().startswith(brand.lower()):
        return model or vehicle.vin
    return f"{brand} {model}".strip()


def _vehicle_device(vehicle: DiscoveredVehicle, base_topic: str) -> dict[str, Any]:
    device: dict[str, Any] = {
        "identifiers": [device_id(vehicle.vin)],
        "name": _device_name(vehicle),
        "manufacturer": vehicle.info.brand,
        "model": vehicle.info.model,
        "serial_number": vehicle.vin,
        "via_device": bridge_device_id(base_topic),
    }
    body_type = vehicle.info.details.get("bodytype")
    if isinstance(body_type, str) and body_type.strip():
        device["model_id"] = body_type.strip()
    return device


# --------------------------------------------------------------------------------------------------
# Assembling the payloads
# --------------------------------------------------------------------------------------------------


def _identity(entity: _Entity, node: str, name_slug: str) -> dict[str, Any]:
    """unique_id, and both ``object_id`` (HA < 2025.10) and ``default_entity_id`` (HA >= 2026.4)."""
    object_id = f"{name_slug}_{entity.key}"
    return {
        "unique_id": f"{node}_{entity.key}",
        "object_id": object_id,
        "default_entity_id": f"{entity.platform}.{object_id}",
    }


def _assemble(
    entities: list[_Entity],
    *,
    node: str,
    name_slug: str,
    device: dict[str, Any],
    version: str,
    availability: list[dict[str, str]] | None,
    ha: HomeAssistantConfig,
) -> list[tuple[str, str]]:
    """One device payload or one payload per entity, as ``ha.discovery`` says."""
    shared: dict[str, Any] = {}
    if availability is not None:
        shared = {"availability": availability, "availability_mode": "all"}
    origin = _origin(version)
    if ha.discovery == "device":
        components = {
            entity.key: {"platform": entity.platform, **_identity(entity, node, name_slug), **entity.config, "qos": QOS}
            for entity in entities
        }
        payload = {"device": device, "origin": origin, **shared, "components": components}
        return [(f"{ha.prefix}/device/{node}/config", _dumps(payload))]
    if ha.discovery == "component":
        return [
            (
                f"{ha.prefix}/{entity.platform}/{node}/{topic_id(entity.key)}/config",
                _dumps(
                    {
                        **_identity(entity, node, name_slug),
                        **entity.config,
                        "qos": QOS,
                        **shared,
                        "device": device,
                        "origin": origin,
                    }
                ),
            )
            for entity in entities
        ]
    return []


def vehicle_discovery(
    vehicle: DiscoveredVehicle, *, base_topic: str, ha: HomeAssistantConfig, version: str
) -> list[tuple[str, str]]:
    """The (topic, JSON) pairs announcing one vehicle; publish them retained with QoS 1.

    Call again whenever the set of fields or commands changes; ``discovery_changes`` tells what to
    publish so that entities that went away are removed too.
    """
    if ha.discovery == "off":
        return []
    name_slug = slug(vehicle.name) or slug(vehicle.vin) or "vehicle"
    availability = [{"topic": f"{base_topic}/bridge/state"}, {"topic": f"{vehicle.root}/availability"}]
    return _assemble(
        _vehicle_entities(vehicle),
        node=device_id(vehicle.vin),
        name_slug=name_slug,
        device=_vehicle_device(vehicle, base_topic),
        version=version,
        availability=availability,
        ha=ha,
    )


def bridge_discovery(
    *,
    base_topic: str,
    ha: HomeAssistantConfig,
    version: str,
    budget_accounts: Iterable[str] = (),
    login_accounts: Iterable[tuple[str, bool]] = (),
) -> list[tuple[str, str]]:
    """The bridge's own device: a connectivity sensor on ``<base>/bridge/state`` (its will says offline),
    for each account with a call budget diagnostic sensors of what is left and used today, and for each
    account of ``login_accounts`` (name, takes one-time codes) its login state, plus a text entity for the
    one-time code where the account can take one.

    It has no availability: when the bridge dies it must show "disconnected", not "unavailable".
    """
    if ha.discovery == "off":
        return []
    node = bridge_device_id(base_topic)
    device = {
        "identifiers": [node],
        "name": f"mqttbridge ({base_topic})",
        "manufacturer": "mqttbridge",
        "model": "Car to MQTT bridge",
        "sw_version": version,
    }
    entity = _Entity(
        "binary_sensor",
        BRIDGE_STATE_KEY,
        {
            "name": "Connection",
            "state_topic": f"{base_topic}/bridge/state",
            "device_class": "connectivity",
            "payload_on": "online",
            "payload_off": "offline",
            "entity_category": "diagnostic",
        },
    )
    entities = [entity]
    for account in budget_accounts:
        topic = f"{base_topic}/bridge/accounts/{account}/budget"
        for what, label in (("remaining", "calls left today"), ("used", "calls used today")):
            entities.append(
                _Entity(
                    "sensor",
                    f"budget_{_TOPIC_ID.sub('_', account)}_{what}",
                    {
                        "name": f"{account} {label}",
                        "state_topic": topic,
                        "value_template": f"{{{{ value_json.{what} }}}}",
                        "state_class": "measurement",
                        "entity_category": "diagnostic",
                        "icon": "mdi:counter",
                    },
                )
            )
    for account, takes_codes in login_accounts:
        key = _TOPIC_ID.sub("_", account)
        login = f"{base_topic}/bridge/accounts/{account}/login"
        entities.append(
            _Entity(
                "sensor",
                f"login_{key}",
                {
                    "name": f"{account} login",
                    "state_topic": login,
                    "value_template": "{{ value_json.state }}",
                    "json_attributes_topic": login,
                    "entity_category": "diagnostic",
                    "icon": "mdi:account-key",
                },
            )
        )
        if takes_codes:
            entities.append(
                _Entity(
                    "text",
                    f"otp_{key}",
                    {
                        "name": f"{account} one-time code",
                        "command_topic": f"{base_topic}/bridge/accounts/{account}/otp/set",
                        "min": 1,
                        "max": 32,
                        "mode": "text",
                        "pattern": "[0-9A-Za-z-]{1,32}",
                        "retain": False,
                        "entity_category": "config",
                        "icon": "mdi:form-textbox-password",
                    },
                )
            )
    return _assemble(
        entities,
        node=node,
        name_slug=slug(f"mqttbridge_{base_topic}") or "mqttbridge",
        device=device,
        version=version,
        availability=None,
        ha=ha,
    )


# --------------------------------------------------------------------------------------------------
# Removal and stale cleanup
# --------------------------------------------------------------------------------------------------


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
