"""The contract's common vehicle fields (CONTRACT section 4) and their known values, as data.

Backends map their own keys onto these names; Home Assistant discovery reads the same table, so a
field's unit and meaning are written down once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # number | enum | bool | timestamp
    unit: str | None = None
    options: tuple[str, ...] = ()


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

COMMON_FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("odometer", "number", "km"),
        FieldSpec("battery_level", "number", "%"),
        FieldSpec("range_electric", "number", "km"),
        FieldSpec("range_fuel", "number", "km"),
        FieldSpec("fuel_level", "number", "L"),
        FieldSpec("charging_status", "enum", options=CHARGING_STATUS),
        FieldSpec("plugged_in", "bool"),
        FieldSpec("door_lock_state", "enum", options=DOOR_LOCK_STATE),
        FieldSpec("updated_at", "timestamp"),
        FieldSpec("fetched_at", "timestamp"),
    )
}
