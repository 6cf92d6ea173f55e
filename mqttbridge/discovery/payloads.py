"""The announcements: the (topic, JSON) pairs of one vehicle and of the bridge's own device, in ``device`` or
``component`` mode, each entity with its ids, its device, its origin and its availability. The caller publishes
them retained with QoS 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from mqttbridge.config import HomeAssistantConfig
from mqttbridge.discovery.entities import DiscoveredVehicle, _Entity, _vehicle_entities
from mqttbridge.discovery.ids import _TOPIC_ID, BRIDGE_STATE_KEY, bridge_device_id, device_id, slug, topic_id

ORIGIN_NAME = "mqttbridge"
SUPPORT_URL = "https://github.com/mqttbridge/mqttbridge"
QOS = 1


def _origin(version: str) -> dict[str, Any]:
    return {"name": ORIGIN_NAME, "sw_version": version, "support_url": SUPPORT_URL}


def _dumps(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


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
                    # a device code is shown as what to do: "enter ABCD-1234 at https://..." (CONTRACT §9)
                    "value_template": _LOGIN_TEMPLATE,
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


_LOGIN_TEMPLATE = (
    "{% if value_json.state == 'action_required' and value_json.user_code is defined %}"
    "enter {{ value_json.user_code }} at {{ value_json.verification_uri }}"
    "{% else %}{{ value_json.state }}{% endif %}"
)
