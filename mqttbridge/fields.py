"""The vehicle fields the bridge knows and their Home Assistant entities, as data.

Backends map their own keys onto these names (CONTRACT section 4); discovery reads the same table,
so a field's unit, device class and state class are written down once. A field missing here is
still published on MQTT, it just gets no Home Assistant entity. Units and classes follow
``shared/docs/ha-mqtt-discovery.md`` section 9.1 (checked by the conformance tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CHARGING_STATUS = (
    "CHARGING",
    "NOT_CHARGING",
    "WAITING_FOR_CHARGING",
    "FINISHED_FULLY_CHARGED",
    "FINISHED_NOT_FULL",
    "ERROR",
    "INVALID",
)
DOOR_LOCK_STATE = ("LOCKED", "UNLOCKED", "SECURED", "SELECTIVE_LOCKED", "UNKNOWN")
#: lid values that mean "not closed"; INVALID means the car has no such lid (no entity then)
LID_OPEN = ("OPEN", "OPEN_TILT", "INTERMEDIATE")
LID_ABSENT = "INVALID"


@dataclass(frozen=True)
class FieldSpec:
    """One published field and the Home Assistant entity it becomes (``platform`` None: none)."""

    name: str
    label: str
    platform: str | None = "sensor"
    kind: str = "number"  # number | enum | bool | timestamp | text
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    options: tuple[str, ...] = ()
    diagnostic: bool = False
    enabled: bool = True
    icon: str | None = None
    #: for binary sensors of a text field: the values that mean ON
    on_values: tuple[str, ...] = ()
    #: a value meaning "this car has no such thing": no entity is made while the field says so
    absent_value: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _lid(name: str, label: str, device_class: str) -> FieldSpec:
    return FieldSpec(
        name, label, "binary_sensor", "text", device_class=device_class, on_values=LID_OPEN, absent_value=LID_ABSENT
    )


def problem(name: str, label: str) -> FieldSpec:
    """A warning flag as a Home Assistant problem sensor (providers use it for their own warnings)."""
    return FieldSpec(name, label, "binary_sensor", "bool", device_class="problem")


FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        # the contract's common names
        FieldSpec(
            "odometer",
            "Odometer",
            unit="km",
            device_class="distance",
            state_class="total_increasing",
            icon="mdi:counter",
        ),
        FieldSpec("battery_level", "Battery", unit="%", device_class="battery", state_class="measurement"),
        FieldSpec(
            "range_electric",
            "Electric range",
            unit="km",
            device_class="distance",
            state_class="measurement",
            icon="mdi:map-marker-distance",
        ),
        FieldSpec(
            "range_fuel",
            "Fuel range",
            unit="km",
            device_class="distance",
            state_class="measurement",
            icon="mdi:map-marker-distance",
        ),
        FieldSpec(
            "fuel_level",
            "Fuel",
            unit="L",
            device_class="volume_storage",
            state_class="measurement",
            icon="mdi:gas-station",
        ),
        FieldSpec(
            "charging_status",
            "Charging status",
            kind="enum",
            device_class="enum",
            options=CHARGING_STATUS,
            icon="mdi:ev-station",
        ),
        FieldSpec("plugged_in", "Plug", "binary_sensor", "bool", device_class="plug"),
        FieldSpec(
            "door_lock_state",
            "Door lock state",
            kind="enum",
            device_class="enum",
            options=DOOR_LOCK_STATE,
            icon="mdi:car-door-lock",
        ),
        FieldSpec(
            "updated_at", "Last update from the car", kind="timestamp", device_class="timestamp", diagnostic=True
        ),
        FieldSpec("fetched_at", "Last read by the bridge", kind="timestamp", device_class="timestamp", diagnostic=True),
        FieldSpec("battery_12v", "12 V battery", unit="%", device_class="battery", state_class="measurement"),
        # further legacy BMW fields worth an entity
        FieldSpec(
            "max_range_electric",
            "Maximum electric range",
            unit="km",
            device_class="distance",
            state_class="measurement",
            diagnostic=True,
        ),
        FieldSpec(
            "max_fuel", "Tank size", unit="L", device_class="volume_storage", state_class="measurement", diagnostic=True
        ),
        FieldSpec("fuel_percent", "Fuel level", unit="%", state_class="measurement", icon="mdi:gas-station"),
        FieldSpec(
            "charging_time_remaining",
            "Charging time remaining",
            unit="min",
            device_class="duration",
            state_class="measurement",
        ),
        FieldSpec("update_reason", "Update reason", kind="text", diagnostic=True, icon="mdi:information-outline"),
        FieldSpec("last_charging_end_reason", "Last charging end reason", kind="text", diagnostic=True),
        FieldSpec("last_charging_end_result", "Last charging end result", kind="text", diagnostic=True),
        FieldSpec("position_status", "Position status", kind="text", diagnostic=True, enabled=False),
        FieldSpec("parking_light", "Parking light", kind="text", icon="mdi:car-parking-lights"),
        FieldSpec("position_light", "Position light", kind="text", icon="mdi:car-light-dimmed"),
        _lid("door_driver_front", "Driver door", "door"),
        _lid("door_driver_rear", "Rear door driver side", "door"),
        _lid("door_passenger_front", "Passenger door", "door"),
        _lid("door_passenger_rear", "Rear door passenger side", "door"),
        _lid("window_driver_front", "Driver window", "window"),
        _lid("window_driver_rear", "Rear window driver side", "window"),
        _lid("window_passenger_front", "Passenger window", "window"),
        _lid("window_passenger_rear", "Rear window passenger side", "window"),
        _lid("rear_window", "Rear window", "window"),
        _lid("sunroof", "Sunroof", "window"),
        _lid("convertible_roof_state", "Convertible roof", "opening"),
        _lid("hood", "Hood", "opening"),
        _lid("trunk", "Trunk", "opening"),
    )
}

#: the contract's common names (CONTRACT section 4), in its order
COMMON_NAMES = (
    "odometer",
    "battery_level",
    "range_electric",
    "range_fuel",
    "fuel_level",
    "charging_status",
    "plugged_in",
    "door_lock_state",
    "updated_at",
    "fetched_at",
)
