"""Home Assistant discovery: every payload the bridge can produce obeys the rulebook, checked as data.

The rules are transcribed from ``shared/docs/ha-mqtt-discovery.md`` (section numbers in comments), so a
payload HA would reject, or silently misread, fails here instead of in a user's Home Assistant.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mqttbridge import providers
from mqttbridge.backends.bmw_cardata.mapping import entries_from_stream, entries_from_telematic, status_from_entries
from mqttbridge.backends.bmw_cardata.mapping import vehicle_info as cardata_vehicle
from mqttbridge.backends.bmw_legacy.parse import parse_status, parse_vehicle, parse_vehicles
from mqttbridge.config import HomeAssistantConfig
from mqttbridge.discovery import (
    COMMANDS,
    DiscoveredVehicle,
    bridge_discovery,
    discovery_changes,
    owned_vin,
    slug,
    vehicle_discovery,
    vehicle_discovery_topics,
)
from mqttbridge.fields import FIELDS
from mqttbridge.model import DriveTrain, VehicleInfo
from mqttbridge.simulator import demo_vehicles

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CAPTURES = SHARED / "fixtures" / "bmw_legacy"
CARDATA = SHARED / "fixtures" / "bmw_cardata"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
BASE = "car"
VERSION = "9.8.7"
DEVICE = HomeAssistantConfig(discovery="device")
COMPONENT = HomeAssistantConfig(discovery="component")
OFF = HomeAssistantConfig(discovery="off")

# --------------------------------------------------------------------------------------------------
# The rulebook as data
# --------------------------------------------------------------------------------------------------

TOPIC_ID = re.compile(r"[a-zA-Z0-9_-]+")  # section 1
ENTITY_OBJECT_ID = re.compile(r"[a-z0-9_]+")  # section 6
#: section 9.1, "units exactly as homeassistant/const.py"; a device class missing here fails the test
UNITS: dict[str | None, set[str] | None] = {
    None: None,  # no device class: any unit
    "battery": {"%"},
    "volume_storage": {"L", "gal", "mL", "m³", "ft³", "CCF", "MCF", "fl. oz."},
    "distance": {"km", "mi", "m"},
    "power": {"W", "kW", "mW", "MW", "GW", "TW"},
    "energy": {"Wh", "kWh", "MWh", "J"},
    "energy_storage": {"Wh", "kWh", "MWh", "J"},
    "energy_distance": {"kWh/100km", "Wh/km", "mi/kWh", "km/kWh"},
    "duration": {"d", "h", "min", "s", "ms", "μs"},
    "temperature": {"°C", "°F", "K"},
    "pressure": {"kPa", "bar", "psi", "hPa"},
    "voltage": {"V", "mV"},
    "timestamp": set(),
    "enum": set(),
}
ANY_STATE_CLASS = {"measurement", "total", "total_increasing"}
#: section 9.1, the state classes each device class allows
STATE_CLASSES: dict[str | None, set[str]] = {
    None: ANY_STATE_CLASS,
    "battery": {"measurement"},
    "volume_storage": {"measurement"},
    "distance": {"measurement", "total_increasing"},
    "power": {"measurement"},
    "energy": {"total", "total_increasing"},
    "energy_storage": {"measurement"},
    "energy_distance": {"measurement"},
    "duration": ANY_STATE_CLASS,
    "temperature": {"measurement"},
    "pressure": {"measurement"},
    "voltage": {"measurement"},
    "timestamp": set(),
    "enum": set(),
}
#: section 9.2
BINARY_DEVICE_CLASSES = {
    "door",
    "window",
    "lock",
    "plug",
    "battery_charging",
    "problem",
    "opening",
    "moving",
    "running",
    "connectivity",
    "battery",
}
#: CONTRACT section 5: what ``<root>/<command>/status`` says
EXECUTION_STATES = ("INITIATED", "PENDING", "DELIVERED", "EXECUTED", "NOT_EXECUTED", "TIMED_OUT", "REJECTED", "FAILED")
#: section 9.4 and 9.7
SOURCE_TYPES = {"gps", "router", "bluetooth", "bluetooth_le"}
HVAC_MODES = {"off", "heat", "cool", "heat_cool", "auto", "dry", "fan_only"}
#: section 8 plus identity (section 6) and the availability keys (section 5)
COMMON_KEYS = {
    "unique_id",
    "name",
    "object_id",
    "default_entity_id",
    "availability",
    "availability_mode",
    "device",
    "origin",
    "entity_category",
    "enabled_by_default",
    "icon",
    "entity_picture",
    "json_attributes_topic",
    "json_attributes_template",
    "qos",
    "encoding",
}
#: section 9: the keys of each platform (HA drops unknown keys silently, so a typo would vanish)
PLATFORM_KEYS: dict[str, set[str]] = {
    "sensor": {
        "state_topic",
        "value_template",
        "device_class",
        "state_class",
        "unit_of_measurement",
        "suggested_display_precision",
        "options",
        "expire_after",
        "force_update",
        "last_reset_value_template",
    },
    "binary_sensor": {
        "state_topic",
        "payload_on",
        "payload_off",
        "device_class",
        "value_template",
        "off_delay",
        "expire_after",
        "force_update",
    },
    "lock": {
        "command_topic",
        "state_topic",
        "payload_lock",
        "payload_unlock",
        "payload_open",
        "payload_reset",
        "state_locked",
        "state_unlocked",
        "state_locking",
        "state_unlocking",
        "state_jammed",
        "state_open",
        "state_opening",
        "code_format",
        "command_template",
        "value_template",
        "optimistic",
        "retain",
    },
    "device_tracker": {
        "state_topic",
        "json_attributes_topic",
        "json_attributes_template",
        "value_template",
        "payload_home",
        "payload_not_home",
        "payload_reset",
        "source_type",
    },
    "button": {"command_topic", "payload_press", "command_template", "device_class", "retain"},
    "switch": {
        "command_topic",
        "state_topic",
        "payload_on",
        "payload_off",
        "state_on",
        "state_off",
        "optimistic",
        "value_template",
        "command_template",
        "device_class",
        "retain",
    },
    "climate": {
        "modes",
        "mode_command_topic",
        "mode_state_topic",
        "mode_command_template",
        "mode_state_template",
        "temperature_command_topic",
        "temperature_state_topic",
        "current_temperature_topic",
        "action_topic",
        "power_command_topic",
        "payload_on",
        "payload_off",
        "min_temp",
        "max_temp",
        "temp_step",
        "precision",
        "temperature_unit",
        "optimistic",
        "retain",
        # climate.py's CONF_TEMP_COMMAND_TEMPLATE / CONF_TEMP_STATE_TEMPLATE
        "temperature_command_template",
        "temperature_state_template",
    },
    # section 9.8
    "number": {
        "command_topic",
        "state_topic",
        "min",
        "max",
        "step",
        "mode",
        "unit_of_measurement",
        "device_class",
        "payload_reset",
        "command_template",
        "value_template",
        "optimistic",
        "retain",
    },
    # text.py (https://www.home-assistant.io/integrations/text.mqtt/): min/max characters, mode text|password
    "text": {
        "command_topic",
        "state_topic",
        "min",
        "max",
        "mode",
        "pattern",
        "command_template",
        "value_template",
        "retain",
    },
}
REQUIRED_KEYS: dict[str, set[str]] = {
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "lock": {"command_topic"},
    "button": {"command_topic"},
    "switch": {"command_topic"},
    "device_tracker": set(),  # state_topic or json_attributes_topic, checked below
    "climate": set(),
    "number": {"command_topic"},
    "text": {"command_topic"},
}
#: section 2b: only these may be at a device payload's root
DEVICE_ROOT_KEYS = {
    "device",
    "origin",
    "components",
    "availability",
    "availability_mode",
    "state_topic",
    "command_topic",
    "qos",
    "encoding",
}


# --------------------------------------------------------------------------------------------------
# The vehicles: demo cars, every capture, and one car with every field and command of the tables
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    vehicle: DiscoveredVehicle


def _vehicle(
    info: VehicleInfo, body: dict[str, Any] | None, name: str | None = None, unlock_code: bool = False
) -> DiscoveredVehicle:
    fields: dict[str, Any] = {}
    has_location = False
    if body is not None:
        status = parse_status(body, info.vin, NOW)
        fields, has_location = status.to_state(), status.location is not None
    name = name if name is not None else info.vin.lower()
    return DiscoveredVehicle(
        vin=info.vin,
        name=name,
        root=f"{BASE}/{slug(name) or 'x'}",
        info=info,
        fields=fields,
        has_location=has_location,
        unlock_code=unlock_code,
    )


def demo_cases() -> list[Case]:
    cases = []
    for sim, name in zip(demo_vehicles(now=NOW), ("i3", "i3_rex", "530e", "x1"), strict=True):
        info = parse_vehicle(sim.entry)
        assert info is not None
        cases.append(Case(f"demo-{slug(name)}", _vehicle(info, {"vehicleStatus": sim.status}, name)))
    return cases


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def capture_cases() -> list[Case]:
    """Every status capture with its folder's vehicle (or one made like the simulator's), and every
    vehicle-list entry with its own status when a capture has one, else with no status yet."""
    if not CAPTURES.is_dir():
        return []
    from mqttbridge.simulator import load_vehicle_dir

    entries: dict[str, list[VehicleInfo]] = {}
    for path in sorted(CAPTURES.rglob("vehicles*.json")):
        entries[str(path.parent)] = entries.get(str(path.parent), []) + parse_vehicles(_read(path))
    statuses = sorted(CAPTURES.rglob("status*.json"))
    cases: list[Case] = []
    status_by_vin: dict[str, dict[str, Any]] = {}
    for path in statuses:
        body = _read(path)
        vin = body["vehicleStatus"].get("vin")
        status_by_vin.setdefault(vin, body)
        folder_entries = entries.get(str(path.parent), [])
        info = next((i for i in folder_entries if i.vin == vin), folder_entries[0] if folder_entries else None)
        if info is None:
            info = parse_vehicle(load_vehicle_dir(path.parent).entry)
        assert info is not None
        cases.append(Case(f"{path.parent.name}/{path.stem}", _vehicle(info, body)))
    for folder, infos in sorted(entries.items()):
        for index, info in enumerate(infos):
            cases.append(
                Case(f"{Path(folder).name}/vehicle{index}-{info.vin}", _vehicle(info, status_by_vin.get(info.vin)))
            )
    return cases


def cardata_cases() -> list[Case]:
    """Every real CarData telematicData answer and stream message, as the bmw_cardata provider publishes it,
    with a car made from the matching basicData (a VIN each: the answers carry none, or a garbled one)."""
    if not CARDATA.is_dir():
        return []
    basic = {
        "bev": _read(CARDATA / "rest/basic_data_bev_i4m50.json"),
        "ice": _read(CARDATA / "rest/basic_data_ice_x1.json"),
    }
    cases: list[Case] = []
    paths = [*sorted(CARDATA.glob("rest/telematic_data_*.json")), *sorted(CARDATA.glob("stream/*.json"))]
    for index, path in enumerate(paths):
        body = _read(path)
        entries = entries_from_stream(body)[1] if "data" in body else entries_from_telematic(body)
        vin = f"CARDATA{index:010d}"
        info = cardata_vehicle(vin, basic["ice" if "_ice_" in path.name else "bev"], None)
        status = status_from_entries(vin, entries, NOW)
        vehicle = DiscoveredVehicle(
            vin=vin,
            name=vin.lower(),
            root=f"{BASE}/{vin.lower()}",
            info=info,
            fields=status.to_state(),
            has_location=status.location is not None,
            unlock_code=False,
            offers=providers.offers("bmw_cardata"),
        )
        cases.append(Case(f"cardata/{path.stem}", vehicle))
    return cases


def _sample(spec: Any) -> Any:
    """A value of the kind the table says, as the bridge publishes it."""
    if spec.kind == "bool":
        return True
    if spec.kind == "timestamp":
        return "2026-01-02T03:04:05+00:00"
    if spec.kind == "enum":
        return spec.options[0]
    if spec.on_values:
        return spec.on_values[0]
    if spec.kind == "text":
        return "SOMETHING"
    return 42


def kitchen_sink_case() -> Case:
    """Every field of FIELDS and every command of COMMANDS (with ON and OFF), plus a backend's own command."""
    commands = {name: frozenset({"ON", "OFF", "LOCK", "UNLOCK", "PRESS", "SET"}) for name in COMMANDS}
    commands["valet_mode"] = frozenset({"ON"})
    info = VehicleInfo(
        vin="KS0000000000000KS",
        model="Everything",
        brand="Kia",
        drive_train=DriveTrain.PHEV,
        commands=commands,
        details={"bodytype": "X99"},
    )
    offers = providers.offers("hyundai_kia")  # a provider's own fields too
    fields = {spec.name: _sample(spec) for spec in [*FIELDS.values(), *offers.fields]}
    vehicle = DiscoveredVehicle(
        vin=info.vin,
        name="everything",
        root="car/everything",
        info=info,
        fields=fields,
        has_location=True,
        unlock_code=False,
        offers=offers,
    )
    return Case("kitchen-sink", vehicle)


DEMO_CASES = demo_cases()
CAPTURE_CASES = capture_cases() + cardata_cases()
ALL_CASES = [*DEMO_CASES, *CAPTURE_CASES, kitchen_sink_case()]
MODES = {"device": DEVICE, "component": COMPONENT}


def _case_params() -> list[Any]:
    params: list[Any] = [pytest.param(case, id=case.id) for case in ALL_CASES]
    if not CAPTURE_CASES:
        params.append(pytest.param(None, id="captures", marks=pytest.mark.skip(reason="../shared is absent")))
    return params


# --------------------------------------------------------------------------------------------------
# Reading payloads back into entities, whichever the mode
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entity:
    platform: str
    key: str
    config: dict[str, Any]  # the component with the shared root options applied, as HA sees it
    topic: str


def entities_of(pairs: list[tuple[str, str]], ha: HomeAssistantConfig) -> list[Entity]:
    """Decode discovery pairs and check the envelope (topics, root keys) of either style."""
    out = []
    for topic, text in pairs:
        payload = json.loads(text)
        assert isinstance(payload, dict)
        parts = topic.split("/")
        assert topic.startswith(ha.prefix + "/") and parts[-1] == "config", topic
        for part in parts[len(ha.prefix.split("/")) + 1 : -1]:
            assert TOPIC_ID.fullmatch(part), f"illegal discovery topic id {part!r} in {topic}"
        if ha.discovery == "device":
            assert len(parts) == len(ha.prefix.split("/")) + 3 and parts[-3] == "device", topic
            assert set(payload) <= DEVICE_ROOT_KEYS, set(payload) - DEVICE_ROOT_KEYS
            assert {"device", "origin", "components"} <= set(payload)  # section 2b: required at the root
            shared = {k: v for k, v in payload.items() if k in ("availability", "availability_mode")}
            for key, component in payload["components"].items():
                assert set(component).isdisjoint({"device", "origin"}), "device/origin only at the root"
                assert component["platform"] in PLATFORM_KEYS, component["platform"]
                config = {
                    **shared,
                    **{k: v for k, v in component.items() if k != "platform"},
                    "device": payload["device"],
                    "origin": payload["origin"],
                }
                out.append(Entity(component["platform"], key, config, topic))
        else:
            assert len(parts) == len(ha.prefix.split("/")) + 4, topic
            platform, key = parts[-4], parts[-2]
            assert platform in PLATFORM_KEYS
            assert "platform" not in payload and "components" not in payload
            out.append(Entity(platform, key, payload, topic))
    return out


def under(topic: str, root: str) -> bool:
    return topic.startswith(root + "/")


def check_entity(entity: Entity, vehicle: DiscoveredVehicle) -> None:
    """The rulebook's rules for one vehicle entity."""
    config, platform, root = entity.config, entity.platform, vehicle.root
    where = f"{platform} {entity.key}"
    # section 9: known keys only, required ones present
    allowed = COMMON_KEYS | PLATFORM_KEYS[platform]
    assert set(config) <= allowed, f"{where}: unknown keys {set(config) - allowed}"
    assert REQUIRED_KEYS[platform] <= set(config), f"{where}: missing {REQUIRED_KEYS[platform] - set(config)}"
    # section 6: identity
    node = f"mqttbridge_{vehicle.vin}"
    assert config["unique_id"] == f"{node}_{entity.key}"
    object_id = config["object_id"]
    assert ENTITY_OBJECT_ID.fullmatch(object_id), object_id
    assert object_id == f"{slug(vehicle.name)}_{entity.key}"
    domain, _, rest = config["default_entity_id"].partition(".")
    assert domain == platform and rest == object_id, config["default_entity_id"]
    name = config["name"]
    device_name = config["device"]["name"]
    assert name is None or (isinstance(name, str) and name.strip()), f"{where}: name {name!r}"
    if name is not None:
        assert not name.lower().startswith(device_name.lower() + " "), f"{where}: name starts with the device name"
    # section 5: availability on both topics, all required
    assert config["availability"] == [{"topic": f"{BASE}/bridge/state"}, {"topic": f"{root}/availability"}]
    assert config["availability_mode"] == "all"
    assert config["qos"] == 1  # section 2b: not inherited from the root
    # section 7: device block
    device = config["device"]
    assert device["identifiers"] == [node]
    assert device["via_device"] == f"mqttbridge_bridge_{BASE}"
    assert device["serial_number"] == vehicle.vin
    assert device["manufacturer"] == vehicle.info.brand and device["model"] == vehicle.info.model
    assert isinstance(device_name, str) and device_name.strip()
    # section 3: origin
    assert config["origin"]["name"] == "mqttbridge" and config["origin"]["sw_version"] == VERSION
    # section 8
    if "entity_category" in config:
        assert config["entity_category"] in ("diagnostic", "config")
        assert not (platform in ("sensor", "binary_sensor") and config["entity_category"] == "config")
    if "enabled_by_default" in config:
        assert isinstance(config["enabled_by_default"], bool)
    # topics: state and command topics under the vehicle root (commands on <root>/<command>/set)
    for key, value in config.items():
        if key.endswith("_topic"):
            assert under(value, root) or under(value, f"{BASE}/bridge"), f"{where}: {key} {value}"
        if key == "command_topic":
            assert under(value, root) and value.endswith("/set"), f"{where}: {key} {value}"
    check_platform(entity, vehicle)


def check_platform(entity: Entity, vehicle: DiscoveredVehicle) -> None:
    config, platform, root = entity.config, entity.platform, vehicle.root
    where = f"{platform} {entity.key}"
    if platform == "sensor":
        device_class = config.get("device_class")
        unit = config.get("unit_of_measurement")
        state_class = config.get("state_class")
        assert device_class in UNITS, f"{where}: device class {device_class} not in the transcribed table"
        allowed_units = UNITS[device_class]
        if unit is not None and allowed_units is not None:
            assert unit in allowed_units, f"{where}: unit {unit!r} not allowed with {device_class}"
        if device_class in ("timestamp", "enum"):
            assert unit is None, f"{where}: {device_class} takes no unit"
        if state_class is not None:
            assert state_class in STATE_CLASSES[device_class], f"{where}: {state_class} with {device_class}"
        if "options" in config or device_class == "enum":
            assert device_class == "enum", f"{where}: options need device_class enum"
            assert isinstance(config.get("options"), list) and config["options"], f"{where}: options empty"
            assert state_class is None and unit is None, f"{where}: options with state_class or unit"
            assert all(isinstance(o, str) for o in config["options"])
        if "suggested_display_precision" in config:
            precision = config["suggested_display_precision"]
            assert isinstance(precision, int) and not isinstance(precision, bool) and precision >= 0, where
        if config["state_topic"].endswith("/status"):  # a command's last execution (CONTRACT section 5)
            assert config["options"] == list(EXECUTION_STATES), where
            assert config.get("entity_category") == "diagnostic", where
        check_state_payload(entity, vehicle)
    elif platform == "binary_sensor":
        assert config.get("device_class") in BINARY_DEVICE_CLASSES, f"{where}: {config.get('device_class')}"
        assert "payload_on" in config and "payload_off" in config
        check_state_payload(entity, vehicle)
    elif platform == "lock":
        assert config["command_topic"] == f"{root}/lock/set"
        assert config["state_topic"] == f"{root}/lock"
        assert (config["payload_lock"], config["payload_unlock"]) == ("LOCK", "UNLOCK")
        assert (
            config["state_locked"],
            config["state_unlocked"],
            config["state_locking"],
            config["state_unlocking"],
        ) == ("LOCKED", "UNLOCKED", "LOCKING", "UNLOCKING")
        assert config["optimistic"] is False and config["retain"] is False
        assert ("code_format" in config) is vehicle.unlock_code
        assert ("command_template" in config) is vehicle.unlock_code
        if vehicle.unlock_code:
            re.compile(config["code_format"])
            assert "{{ code }}" in config["command_template"] and "{{ value }}" in config["command_template"]
    elif platform == "device_tracker":
        assert "state_topic" in config or "json_attributes_topic" in config  # section 9.4 valid_config
        assert config["json_attributes_topic"] == f"{root}/location"
        assert config["source_type"] in SOURCE_TYPES and config["source_type"] == "gps"
        assert config["name"] is None
    elif platform == "button":
        assert config.get("payload_press") in ("PRESS", "ON")
        assert config.get("retain", False) is False
    elif platform == "switch":
        assert (config["payload_on"], config["payload_off"]) == ("ON", "OFF")
        assert config.get("retain", False) is False
        assert ("state_topic" in config) is not config.get("optimistic", "state_topic" not in config)
    elif platform == "climate":
        if "temperature_unit" in config:
            assert config["temperature_unit"] in ("C", "F")
        assert set(config.get("modes", ["off"])) <= HVAC_MODES


def check_state_payload(entity: Entity, vehicle: DiscoveredVehicle) -> None:
    """The value the bridge publishes on a field's state topic is one HA accepts (section 9.1 payload rules)."""
    config = entity.config
    field = config["state_topic"].removeprefix(vehicle.root + "/")
    if "/" in field or field not in vehicle.fields:
        return
    value = vehicle.fields[field]
    where = f"{entity.platform} {entity.key} = {value!r}"
    if entity.platform == "binary_sensor":
        if config["payload_on"] == "true":
            assert isinstance(value, bool), where
        else:
            assert "value_template" in config, where
        return
    device_class = config.get("device_class")
    if device_class == "timestamp":
        assert isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None, where
    elif device_class == "enum":
        assert value in config["options"], where
    elif "unit_of_measurement" in config or "state_class" in config or device_class is not None:
        assert isinstance(value, int | float) and not isinstance(value, bool), where
    else:
        assert len(str(value)) <= 255, where


# --------------------------------------------------------------------------------------------------
# Conformance
# --------------------------------------------------------------------------------------------------


def _discover(vehicle: DiscoveredVehicle, ha: HomeAssistantConfig) -> list[Entity]:
    return entities_of(vehicle_discovery(vehicle, base_topic=BASE, ha=ha, version=VERSION), ha)


@pytest.mark.parametrize("unlock_code", [False, True], ids=["no-code", "code"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case", _case_params())
def test_conformance(case: Case, mode: str, unlock_code: bool) -> None:
    vehicle = replace(case.vehicle, unlock_code=unlock_code)
    ha = MODES[mode]
    pairs = vehicle_discovery(vehicle, base_topic=BASE, ha=ha, version=VERSION)
    entities = entities_of(pairs, ha)
    assert entities, "a vehicle has at least its refresh button"
    if mode == "device":
        assert [topic for topic, _ in pairs] == [f"homeassistant/device/mqttbridge_{vehicle.vin}/config"]
    else:
        assert len(pairs) == len(entities) == len({topic for topic, _ in pairs})
    unique_ids = [e.config["unique_id"] for e in entities]
    assert len(unique_ids) == len(set(unique_ids)), "duplicate unique_id within one vehicle"
    for entity in entities:
        check_entity(entity, vehicle)
    platforms = {(e.platform, e.key) for e in entities}
    assert ("button", "refresh") in platforms
    assert (("lock", "lock") in platforms) is ("lock" in vehicle.info.commands)
    assert (("device_tracker", "location") in platforms) is vehicle.has_location


@pytest.mark.parametrize("mode", list(MODES))
def test_both_modes_announce_the_same_entities(mode: str) -> None:
    other = COMPONENT if mode == "device" else DEVICE
    for case in ALL_CASES:
        mine = {(e.platform, e.key): e.config for e in _discover(case.vehicle, MODES[mode])}
        theirs = {(e.platform, e.key): e.config for e in _discover(case.vehicle, other)}
        assert mine == theirs, case.id


def _distinct_vehicles() -> Iterator[DiscoveredVehicle]:
    """One case per VIN (several captures are the same car at different times)."""
    seen: set[str] = set()
    for case in ALL_CASES:
        if case.vehicle.vin not in seen:
            seen.add(case.vehicle.vin)
            yield case.vehicle


@pytest.mark.parametrize("mode", list(MODES))
def test_unique_ids_are_unique_across_vehicles_and_the_bridge(mode: str) -> None:
    ha = MODES[mode]
    unique_ids: list[str] = []
    default_ids: list[str] = []
    for vehicle in _distinct_vehicles():
        for entity in _discover(vehicle, ha):
            unique_ids.append(entity.config["unique_id"])
            default_ids.append(entity.config["default_entity_id"])
    for entity in entities_of(bridge_discovery(base_topic=BASE, ha=ha, version=VERSION), ha):
        unique_ids.append(entity.config["unique_id"])
        default_ids.append(entity.config["default_entity_id"])
    assert len(set(unique_ids)) == len(unique_ids) > 100
    assert len(set(default_ids)) == len(default_ids)


def test_value_templates_render_as_intended() -> None:
    """HA renders value_template with the bare payload as ``value``: lids give ON when open, the charging
    sensor and switch ON while CHARGING; the lock's command template gives the contract's JSON."""
    jinja2 = pytest.importorskip("jinja2")
    environment = jinja2.Environment()
    lid = {"OPEN": "ON", "OPEN_TILT": "ON", "INTERMEDIATE": "ON", "CLOSED": "OFF", "INVALID": "OFF"}
    charging = {"CHARGING": "ON", "NOT_CHARGING": "OFF", "FINISHED_FULLY_CHARGED": "OFF", "INVALID": "OFF"}
    checked = 0
    for case in ALL_CASES:
        for entity in _discover(replace(case.vehicle, unlock_code=True), COMPONENT):
            config = entity.config
            if "value_template" in config:
                template = environment.from_string(config["value_template"])
                expected = charging if config["state_topic"].endswith("/charging_status") else lid
                for value, state in expected.items():
                    assert template.render(value=value).strip() == state, (case.id, entity.key, value)
                    assert state in (config["payload_on"], config["payload_off"])
                checked += 1
            if "command_template" in config and entity.platform == "number":  # the charge limits
                rendered = environment.from_string(config["command_template"]).render(value=80.0)
                assert json.loads(rendered) == {entity.key.rsplit("_", 1)[1]: 80}, (case.id, entity.key)
                checked += 1
            elif "command_template" in config:
                rendered = environment.from_string(config["command_template"]).render(value="UNLOCK", code="12 34")
                assert json.loads(rendered) == {"action": "UNLOCK", "code": "12 34"}
                checked += 1
    assert checked > 50


def _every_field_spec() -> list[tuple[str, Any]]:
    """The core's table and every installed provider's own fields (bmw_cardata's, hyundai_kia's ...)."""
    specs: list[tuple[str, Any]] = list(FIELDS.items())
    for provider, spec in sorted(providers.available().items()):
        specs.extend((f"{provider}:{field.name}", field) for field in spec.offers.fields)
    return specs


def test_the_field_table_itself_conforms() -> None:
    """Section 9.1 over FIELDS and the providers' own fields directly, so a row no capture exercises is
    still checked."""
    names = [name for name, _spec in _every_field_spec()]
    assert any(name.startswith("bmw_cardata:") for name in names)
    assert len(names) == len(set(names)), "a provider declares a field twice"
    for name, spec in _every_field_spec():
        if spec.platform == "binary_sensor":
            assert spec.device_class in BINARY_DEVICE_CLASSES, name
            assert spec.kind == "bool" or spec.on_values, name
        if spec.platform != "sensor":
            continue
        assert spec.device_class in UNITS, name
        allowed = UNITS[spec.device_class]
        if spec.unit and allowed is not None:
            assert spec.unit in allowed, name
        if spec.state_class:
            assert spec.state_class in STATE_CLASSES[spec.device_class], name
        assert bool(spec.options) == (spec.device_class == "enum"), name
        if spec.options:
            assert spec.unit is None and spec.state_class is None, name
        if spec.kind == "timestamp":
            assert spec.device_class == "timestamp" and spec.unit is None and spec.state_class is None, name


# --------------------------------------------------------------------------------------------------
# Targeted behaviour
# --------------------------------------------------------------------------------------------------


def _by_key(vehicle: DiscoveredVehicle, ha: HomeAssistantConfig = DEVICE) -> dict[str, Entity]:
    return {e.key: e for e in _discover(vehicle, ha)}


def _demo(drive: str) -> DiscoveredVehicle:
    return next(c.vehicle for c in DEMO_CASES if c.vehicle.info.drive_train == drive)


def test_off_mode_announces_nothing() -> None:
    vehicle = _demo("BEV")
    assert vehicle_discovery(vehicle, base_topic=BASE, ha=OFF, version=VERSION) == []
    assert bridge_discovery(base_topic=BASE, ha=OFF, version=VERSION) == []


def test_component_topics() -> None:
    ha = HomeAssistantConfig(discovery="component", prefix="ha/disc")
    vehicle = _demo("BEV")
    topics = {topic for topic, _ in vehicle_discovery(vehicle, base_topic=BASE, ha=ha, version=VERSION)}
    node = f"mqttbridge_{vehicle.vin}"
    for expected in (
        f"ha/disc/sensor/{node}/battery_level/config",
        f"ha/disc/lock/{node}/lock/config",
        f"ha/disc/binary_sensor/{node}/plugged_in/config",
        f"ha/disc/button/{node}/refresh/config",
        f"ha/disc/device_tracker/{node}/location/config",
        f"ha/disc/sensor/{node}/lock_command/config",
    ):
        assert expected in topics
    device_topics = [
        t
        for t, _ in vehicle_discovery(
            vehicle, base_topic=BASE, ha=HomeAssistantConfig(prefix="ha/disc"), version=VERSION
        )
    ]
    assert device_topics == [f"ha/disc/device/{node}/config"]


def test_device_payload_shape() -> None:
    vehicle = _demo("BEV")
    ((_topic, text),) = vehicle_discovery(vehicle, base_topic=BASE, ha=DEVICE, version=VERSION)
    payload = json.loads(text)
    assert list(payload) == ["device", "origin", "availability", "availability_mode", "components"]
    assert payload["origin"] == {
        "name": "mqttbridge",
        "sw_version": VERSION,
        "support_url": "https://github.com/mqttbridge/mqttbridge",
    }
    assert payload["device"]["name"] == "i3"
    battery = payload["components"]["battery_level"]
    assert battery == {
        "platform": "sensor",
        "unique_id": f"mqttbridge_{vehicle.vin}_battery_level",
        "object_id": "i3_battery_level",
        "default_entity_id": "sensor.i3_battery_level",
        "name": "Battery",
        "state_topic": "car/i3/battery_level",
        "device_class": "battery",
        "state_class": "measurement",
        "unit_of_measurement": "%",
        "qos": 1,
    }


def test_device_name_is_the_configured_name_else_brand_and_model() -> None:
    vehicle = replace(_demo("CONV"), name=_demo("CONV").vin.lower())
    entity = next(iter(_by_key(vehicle).values()))
    assert entity.config["device"]["name"] == "BMW X1 sDrive18i"
    assert entity.config["object_id"].startswith(vehicle.vin.lower() + "_")
    named = replace(vehicle, name="Family Car")
    entity = _by_key(named)["odometer"]
    assert entity.config["device"]["name"] == "Family Car"
    assert entity.config["default_entity_id"] == "sensor.family_car_odometer"


def test_invalid_lid_makes_no_entity() -> None:
    vehicle = _demo("BEV")
    fields = {**vehicle.fields, "rear_window": "INVALID", "sunroof": "CLOSED", "hood": "OPEN"}
    keys = _by_key(replace(vehicle, fields=fields))
    assert "rear_window" not in keys
    assert keys["sunroof"].platform == "binary_sensor" and keys["sunroof"].config["device_class"] == "window"
    assert keys["hood"].config["device_class"] == "opening"
    # the same holds for a real capture whose car has no rear window
    if CAPTURE_CASES:
        invalid = [c for c in CAPTURE_CASES if c.vehicle.fields.get("rear_window") == "INVALID"]
        assert invalid
        for case in invalid:
            assert "rear_window" not in _by_key(case.vehicle)


def test_unlock_code_adds_code_format_and_template() -> None:
    vehicle = _demo("BEV")
    plain = _by_key(replace(vehicle, unlock_code=False))["lock"].config
    coded = _by_key(replace(vehicle, unlock_code=True))["lock"].config
    assert "code_format" not in plain and "command_template" not in plain
    assert coded["code_format"] == "^\\S+$"
    assert coded["command_template"] == '{"action": "{{ value }}", "code": "{{ code }}"}'
    assert re.fullmatch(coded["code_format"], "1234") and not re.fullmatch(coded["code_format"], "")


def test_petrol_car_has_no_charging_controls_or_battery() -> None:
    petrol = _by_key(_demo("CONV"))
    electric = _by_key(_demo("BEV"))
    for key in (
        "charging_control",
        "charging_command",
        "charging",
        "battery_level",
        "charging_status",
        "plugged_in",
        "range_electric",
    ):
        assert key not in petrol, key
        assert key in electric, key
    assert "range_fuel" in petrol and "climate_control" in petrol


def test_start_buttons_when_the_car_only_starts() -> None:
    keys = _by_key(_demo("BEV"))
    climate, charging = keys["climate_control"], keys["charging_control"]
    assert (climate.platform, climate.config["name"], climate.config["payload_press"]) == (
        "button",
        "Start climate",
        "ON",
    )
    assert climate.config["command_topic"] == "car/i3/climate/set"
    assert (charging.platform, charging.config["name"]) == ("button", "Start charging")
    assert charging.config["command_topic"] == "car/i3/charging/set"


def test_switches_when_the_car_takes_on_and_off() -> None:
    vehicle = _demo("BEV")
    commands = {**vehicle.info.commands, "climate": frozenset({"ON", "OFF"}), "charging": frozenset({"ON", "OFF"})}
    keys = _by_key(replace(vehicle, info=replace(vehicle.info, commands=commands)))
    climate, charging = keys["climate_control"].config, keys["charging_control"].config
    assert keys["climate_control"].platform == keys["charging_control"].platform == "switch"
    assert climate["optimistic"] is True and "state_topic" not in climate
    assert charging["state_topic"] == "car/i3/charging_status" and charging["optimistic"] is False
    assert "CHARGING" in charging["value_template"]
    assert (charging["payload_on"], charging["payload_off"]) == ("ON", "OFF")


def test_buttons_and_command_sensors_follow_the_supported_commands() -> None:
    vehicle = _demo("BEV")
    keys = _by_key(replace(vehicle, info=replace(vehicle.info, commands={"horn": frozenset({"PRESS"})})))
    assert keys["horn"].config["command_topic"] == "car/i3/horn/set"
    assert keys["horn"].config["payload_press"] == "PRESS"
    assert keys["refresh"].config["command_topic"] == "car/i3/refresh/set"  # always
    for key in ("lock", "flash_lights", "find_vehicle", "climate_control", "lock_command"):
        assert key not in keys
    status = keys["horn_command"].config
    assert status["state_topic"] == "car/i3/horn/status" and status["entity_category"] == "diagnostic"
    assert status["options"] == [
        "INITIATED",
        "PENDING",
        "DELIVERED",
        "EXECUTED",
        "NOT_EXECUTED",
        "TIMED_OUT",
        "REJECTED",
        "FAILED",
    ]
    assert keys["refresh_command"].config["state_topic"] == "car/i3/refresh/status"


def test_charging_binary_sensor_and_plug() -> None:
    keys = _by_key(_demo("BEV"))
    charging = keys["charging"].config
    assert charging["state_topic"] == "car/i3/charging_status"
    assert charging["device_class"] == "battery_charging"
    plug = keys["plugged_in"].config
    assert (plug["payload_on"], plug["payload_off"], plug["device_class"]) == ("true", "false", "plug")


def test_diagnostic_and_disabled_fields() -> None:
    vehicle = _demo("BEV")
    keys = _by_key(replace(vehicle, fields={**vehicle.fields, "position_status": "OK"}))
    assert keys["updated_at"].config["entity_category"] == "diagnostic"
    assert keys["updated_at"].config["device_class"] == "timestamp"
    assert keys["position_status"].config["enabled_by_default"] is False
    assert "enabled_by_default" not in keys["odometer"].config
    assert "entity_category" not in keys["odometer"].config


def test_fields_not_reported_make_no_entity() -> None:
    vehicle = _demo("BEV")
    keys = _by_key(replace(vehicle, fields={"odometer": 1}, has_location=False))
    assert "odometer" in keys
    assert not {"battery_level", "charging", "location", "door_driver_front"} & set(keys)


def test_vin_with_odd_characters_gives_legal_topics() -> None:
    vehicle = _demo("BEV")
    odd = replace(vehicle, vin="WBA 12.3/x+#", info=replace(vehicle.info, vin="WBA 12.3/x+#"), name="Zoë's car")
    for ha in (DEVICE, COMPONENT):
        for topic, text in vehicle_discovery(odd, base_topic=BASE, ha=ha, version=VERSION):
            for part in topic.split("/")[1:-1]:
                assert TOPIC_ID.fullmatch(part), topic
            payload = json.loads(text)
            configs = payload["components"].values() if "components" in payload else [payload]
            for config in configs:
                assert ENTITY_OBJECT_ID.fullmatch(config["object_id"]), config["object_id"]
                assert config["object_id"].startswith("zoe_s_car_")
                assert config["unique_id"].startswith("mqttbridge_WBA_12_3_x__")


@pytest.mark.parametrize("mode", list(MODES))
def test_bridge_device(mode: str) -> None:
    ha = MODES[mode]
    pairs = bridge_discovery(base_topic="home/car", ha=ha, version=VERSION)
    (entity,) = entities_of(pairs, ha)
    config = entity.config
    assert entity.platform == "binary_sensor"
    assert config["device"]["identifiers"] == ["mqttbridge_bridge_home_car"]
    assert config["state_topic"] == "home/car/bridge/state"
    assert (config["payload_on"], config["payload_off"]) == ("online", "offline")
    assert config["device_class"] == "connectivity"
    assert "availability" not in config and "availability_topic" not in config
    assert config["origin"]["name"] == "mqttbridge"
    domain, _, object_id = config["default_entity_id"].partition(".")
    assert domain == "binary_sensor" and object_id == config["object_id"]
    assert set(config) <= COMMON_KEYS | PLATFORM_KEYS["binary_sensor"]
    if mode == "device":
        assert pairs[0][0] == "homeassistant/device/mqttbridge_bridge_home_car/config"
    # every vehicle's via_device names this device
    vehicle_entity = next(iter(_discover(_demo("BEV"), ha)))
    vehicle_pairs = vehicle_discovery(_demo("BEV"), base_topic="home/car", ha=ha, version=VERSION)
    assert vehicle_entity.config["device"]["via_device"] == "mqttbridge_bridge_car"
    assert json.loads(vehicle_pairs[0][1])["device"]["via_device"] == "mqttbridge_bridge_home_car"


# --------------------------------------------------------------------------------------------------
# Cleanup helpers
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
def test_owned_vin_accepts_our_configs(mode: str) -> None:
    ha = MODES[mode]
    vehicle = _demo("BEV")
    pairs = vehicle_discovery(vehicle, base_topic=BASE, ha=ha, version=VERSION)
    for topic, text in pairs:
        assert owned_vin(topic, text.encode(), base_topic=BASE, ha=ha) == vehicle.vin
    # anonymised VINs such as F48_VIN come back as they were
    anonymous = replace(vehicle, vin="F48_VIN", info=replace(vehicle.info, vin="F48_VIN"))
    topic, text = vehicle_discovery(anonymous, base_topic=BASE, ha=ha, version=VERSION)[0]
    assert owned_vin(topic, text.encode(), base_topic=BASE, ha=ha) == "F48_VIN"


def test_owned_vin_accepts_abbreviated_keys() -> None:
    payload = {
        "dev": {"ids": "mqttbridge_VIN1", "sn": "VIN1"},
        "o": {"name": "mqttbridge"},
        "avty": [{"t": "car/bridge/state"}],
        "cmps": {},
    }
    assert (
        owned_vin(
            "homeassistant/device/mqttbridge_VIN1/config", json.dumps(payload).encode(), base_topic=BASE, ha=DEVICE
        )
        == "VIN1"
    )


def test_owned_vin_rejects_others_and_garbage() -> None:
    vehicle = _demo("BEV")
    topic, text = vehicle_discovery(vehicle, base_topic=BASE, ha=DEVICE, version=VERSION)[0]
    ours = json.loads(text)

    def check(topic: str, payload: Any, *, base: str = BASE, ha: HomeAssistantConfig = DEVICE) -> None:
        raw = payload if isinstance(payload, bytes | str) else json.dumps(payload).encode()
        assert owned_vin(topic, raw, base_topic=base, ha=ha) is None, (topic, payload)

    check(topic, text.encode(), base="othercar")  # another bridge with another base topic
    check(topic, text.encode(), ha=HomeAssistantConfig(prefix="other"))
    check("homeassistant/device/mqttbridge_OTHER/config", text.encode())  # node id is not the identifier
    check(topic, {**ours, "availability": [{"topic": "car2/bridge/state"}]})
    check(topic, {**ours, "availability": "car/bridge/state"})
    check(topic, {**ours, "device": {**ours["device"], "identifiers": ["zigbee2mqtt_0x1234"]}})
    check(topic, {**ours, "device": {**ours["device"], "identifiers": 17}})
    check(topic, {**ours, "device": "mqttbridge"})
    bridge_topic, bridge_text = bridge_discovery(base_topic=BASE, ha=DEVICE, version=VERSION)[0]
    check(bridge_topic, bridge_text.encode())  # the bridge's own device is not a vehicle
    z2m = {
        "device": {"identifiers": ["zigbee2mqtt_0xabc"], "name": "Lamp"},
        "availability": [{"topic": "zigbee2mqtt/bridge/state"}],
        "origin": {"name": "Zigbee2MQTT"},
    }
    check("homeassistant/light/0xabc/light/config", z2m)
    check("homeassistant/device/0xabc/config", z2m)
    for garbage in (
        b"",
        b"   ",
        b"\xff\xfe\x00",
        b"{",
        b"null",
        b"[]",
        b"42",
        b'"text"',
        b"[" * 100000,
        b'{"device": null, "availability": null}',
        b'{"availability": [1, null, "x"]}',
    ):
        check(topic, garbage)
    for bad_topic in (
        "",
        "homeassistant",
        "homeassistant/device/config",
        "homeassistant/a/b/c/d/e/config",
        "homeassistant/device/mqttbridge_X/state",
        "other/device/mqttbridge_X/config",
    ):
        check(bad_topic, text.encode())
    assert owned_vin(None, b"", base_topic=BASE, ha=DEVICE) is None  # type: ignore[arg-type]
    assert owned_vin(topic, None, base_topic=BASE, ha=DEVICE) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in ALL_CASES])
def test_discovery_topics_cover_every_announcement(case: Case) -> None:
    vehicle = case.vehicle
    component = set(vehicle_discovery_topics(vehicle.vin, ha=COMPONENT))
    announced = {t for t, _ in vehicle_discovery(vehicle, base_topic=BASE, ha=COMPONENT, version=VERSION)}
    node = f"mqttbridge_{vehicle.vin}"
    foreign = {f"homeassistant/sensor/{node}/{c}_command/config" for c in vehicle.info.commands if c not in COMMANDS}
    assert announced - component == foreign  # a backend's own command is only known to the caller
    keys = [f"{c}_command" for c in vehicle.info.commands if c not in COMMANDS]
    assert foreign <= set(vehicle_discovery_topics(vehicle.vin, ha=COMPONENT, keys=keys))
    assert vehicle_discovery_topics(vehicle.vin, ha=DEVICE) == [f"homeassistant/device/mqttbridge_{vehicle.vin}/config"]
    both = set(vehicle_discovery_topics(vehicle.vin, ha=OFF))
    assert component | {f"homeassistant/device/mqttbridge_{vehicle.vin}/config"} == both


def test_discovery_topics_for_given_keys() -> None:
    topics = vehicle_discovery_topics("VIN1", ha=COMPONENT, keys=["battery_level", "climate_control", "mystery"])
    assert "homeassistant/sensor/mqttbridge_VIN1/battery_level/config" in topics
    assert "homeassistant/binary_sensor/mqttbridge_VIN1/battery_level/config" not in topics
    assert {
        "homeassistant/switch/mqttbridge_VIN1/climate_control/config",
        "homeassistant/button/mqttbridge_VIN1/climate_control/config",
    } <= set(topics)
    assert sum("/mystery/" in t for t in topics) == 8  # unknown key: every platform


def test_discovery_changes_device_mode_removes_lost_components() -> None:
    vehicle = _demo("BEV")
    before = vehicle_discovery(vehicle, base_topic=BASE, ha=DEVICE, version=VERSION)
    assert discovery_changes(before, before) == []
    fields = {**vehicle.fields, "rear_window": "INVALID"}
    before = vehicle_discovery(
        replace(vehicle, fields={**fields, "rear_window": "OPEN"}), base_topic=BASE, ha=DEVICE, version=VERSION
    )
    after = vehicle_discovery(replace(vehicle, fields=fields), base_topic=BASE, ha=DEVICE, version=VERSION)
    changes = discovery_changes(before, after)
    assert [t for t, _ in changes] == [after[0][0], after[0][0]]
    stub = json.loads(changes[0][1])["components"]
    assert stub["rear_window"] == {"platform": "binary_sensor"}
    assert changes[1] == after[0]
    assert discovery_changes(after, []) == [(after[0][0], "")]


def test_discovery_changes_component_mode_empties_lost_topics() -> None:
    vehicle = _demo("BEV")
    before = vehicle_discovery(
        replace(vehicle, fields={**vehicle.fields, "hood": "OPEN"}), base_topic=BASE, ha=COMPONENT, version=VERSION
    )
    after = vehicle_discovery(
        replace(vehicle, fields={**vehicle.fields, "hood": "INVALID"}), base_topic=BASE, ha=COMPONENT, version=VERSION
    )
    changes = discovery_changes(before, after)
    assert changes == [(f"homeassistant/binary_sensor/mqttbridge_{vehicle.vin}/hood/config", "")]


def test_hyundai_style_climate_and_charge_limits() -> None:
    """A car whose climate takes a temperature gets a climate entity; charge limits are numbers."""
    jinja2 = pytest.importorskip("jinja2")
    base = _demo("BEV")
    info = replace(
        base.info,
        features=frozenset({"climate_temperature"}),
        commands={**base.info.commands, "climate": frozenset({"ON", "OFF"}), "charge_limit": frozenset({"SET"})},
    )
    vehicle = replace(
        base,
        info=info,
        offers=providers.offers("hyundai_kia"),  # the provider names its climate and charge-limit fields
        fields={
            **base.fields,
            "air_control_is_on": True,
            "air_temperature": 21,
            "ev_charge_limits_ac": 80,
            "ev_charge_limits_dc": 90,
        },
    )
    entities = {e.key: e for e in _discover(vehicle, COMPONENT)}
    climate = entities["climate_control"]
    assert climate.platform == "climate" and climate.config["temperature_unit"] == "C"
    assert climate.config["modes"] == ["off", "heat_cool"]
    env = jinja2.Environment()
    assert env.from_string(climate.config["mode_command_template"]).render(value="off") == "OFF"
    assert env.from_string(climate.config["mode_command_template"]).render(value="heat_cool") == "ON"
    assert env.from_string(climate.config["mode_state_template"]).render(value="true") == "heat_cool"
    sent = json.loads(env.from_string(climate.config["temperature_command_template"]).render(value=21.5))
    assert sent == {"action": "ON", "temperature": 21.5}
    for side in ("ac", "dc"):
        number = entities[f"charge_limit_{side}"]
        assert number.platform == "number" and (number.config["min"], number.config["max"]) == (50, 100)
        assert number.config["state_topic"].endswith(f"/ev_charge_limits_{side}")
    for ha in (DEVICE, COMPONENT):  # and every entity of this car passes the rulebook's checks
        for entity in entities_of(vehicle_discovery(vehicle, base_topic=BASE, ha=ha, version=VERSION), ha):
            check_entity(entity, vehicle)


@pytest.mark.parametrize("mode", list(MODES))
def test_bridge_device_login_entities(mode: str) -> None:
    """Each account's login state, and a text entity for one-time codes where the account takes them."""
    import re

    ha = MODES[mode]
    pairs = bridge_discovery(base_topic="car", ha=ha, version=VERSION, login_accounts=[("kia", True), ("bmw", False)])
    entities = {e.key: e for e in entities_of(pairs, ha)}
    for entity in entities.values():
        allowed = COMMON_KEYS | PLATFORM_KEYS[entity.platform]
        assert set(entity.config) <= allowed, set(entity.config) - allowed
        assert REQUIRED_KEYS[entity.platform] <= set(entity.config)
    texts = [e for e in entities.values() if e.platform == "text"]
    assert len(texts) == 1  # only the account that takes codes
    text = texts[0].config
    assert text["command_topic"] == "car/bridge/accounts/kia/otp/set"
    assert 0 <= text["min"] <= text["max"] <= 255 and text["mode"] in ("text", "password")
    assert re.fullmatch(text["pattern"], "492817") and not re.fullmatch(text["pattern"], "12 34")
    logins = [e.config for e in entities.values() if e.platform == "sensor" and "login" in e.config["state_topic"]]
    assert sorted(c["state_topic"] for c in logins) == [f"car/bridge/accounts/{a}/login" for a in ("bmw", "kia")]
    jinja2 = pytest.importorskip("jinja2")
    template = jinja2.Environment().from_string(logins[0]["value_template"])
    assert template.render(value_json={"state": "action_required"}) == "action_required"


def test_a_cardata_car_announces_only_refresh_and_its_12v_battery_in_volts(fixtures_dir: Path) -> None:
    """CONTRACT §9: read-only (a refresh button, no lock, climate or charging control), and the 12 V battery as
    CarData gives it: a voltage (the provider's declaration replaces the core's percent entity)."""
    x1 = next(c for c in cardata_cases() if "ice_x1_extended" in c.id)
    keys = _by_key(x1.vehicle)
    assert x1.vehicle.fields["battery_12v"] == 13.92  # "13.92" V in the capture
    battery = keys["battery_12v"].config
    assert battery["unit_of_measurement"] == "V" and battery["device_class"] == "voltage"
    commands = {key for key, entity in keys.items() if "command_topic" in entity.config}
    assert commands == {"refresh"}
    assert not any(key.endswith("_command") and key != "refresh_command" for key in keys)
