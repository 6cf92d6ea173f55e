"""The entities of one vehicle, as data: which published fields, derived values and supported commands become
which Home Assistant entity, with what configuration. No discovery topics and no payloads here: ``payloads`` turns
these into announcements, ``cleanup`` asks the same tables which entities could ever exist.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mqttbridge.command_table import COMMANDS, Command
from mqttbridge.discovery.ids import CHARGING_KEY, LOCATION_KEY, status_key
from mqttbridge.fields import FIELDS, FieldSpec
from mqttbridge.model import ExecutionStatus, VehicleInfo
from mqttbridge.providers import VehicleOffers

#: the package's name, as before the split, so that log lines still say ``mqttbridge.discovery``
logger = logging.getLogger(__name__)

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
        return self.offers.field(name)


@dataclass(frozen=True)
class _Entity:
    platform: str
    key: str
    config: dict[str, Any]


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
    own = {spec.name: spec for spec in vehicle.offers.fields}  # a provider's declaration wins (see field_spec)
    specs = [own.pop(name, spec) for name, spec in FIELDS.items()] + list(own.values())
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
