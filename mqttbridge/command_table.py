"""Every command, declared once (CONTRACT section 5): the payloads it takes, the checks of its parameters,
the Home Assistant entity it becomes and the field that shows its result.

Parsing (``commands.parse_command``), discovery (``discovery``) and the README's command table
(``markdown_table``, checked by a test) are all derived from this table: adding a command is one entry
here plus the backend's call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _limit(value: Any) -> str | None:
    return None if _is_int(value) and 50 <= value <= 100 and value % 10 == 0 else "must be 50 to 100 in steps of 10"


@dataclass(frozen=True)
class Param:
    """One JSON key a command takes besides ``action`` and ``request_id``: its check returns an error or None."""

    name: str
    check: Callable[[Any], str | None]
    doc: str


PARAMS: dict[str, Param] = {
    p.name: p
    for p in (
        Param(
            "code",
            lambda v: None if isinstance(v, str | int) and not isinstance(v, bool) and str(v) else "must be a string",
            "the unlock code",
        ),
        Param(
            "temperature",
            lambda v: None if _is_number(v) and 14 <= v <= 30 else "must be a number from 14 to 30 (°C)",
            "°C, 14 to 30",
        ),
        Param("defrost", lambda v: None if isinstance(v, bool) else "must be true or false", "true or false"),
        Param(
            "duration",
            lambda v: None if _is_int(v) and 1 <= v <= 30 else "must be whole minutes from 1 to 30",
            "minutes, 1 to 30",
        ),
        Param(
            "heating", lambda v: None if _is_int(v) and 0 <= v <= 4 else "must be a whole number from 0 to 4", "0 to 4"
        ),
        Param(
            "count", lambda v: None if _is_int(v) and 1 <= v <= 10 else "must be a whole number from 1 to 10", "1 to 10"
        ),
        Param("ac", _limit, "% (50 to 100, steps of 10)"),
        Param("dc", _limit, "% (50 to 100, steps of 10)"),
    )
}


@dataclass(frozen=True)
class Command:
    """One command topic ``<root>/<name>/set``."""

    name: str
    #: the plain-word payloads (``LOCK``, ``PRESS``...)
    words: tuple[str, ...]
    #: the JSON keys it takes besides ``action`` and ``request_id`` (see ``PARAMS``)
    params: tuple[str, ...] = ()
    #: the action implied by a JSON payload without ``action`` (e.g. ``{"count": 2}``)
    default_action: str | None = None
    #: the whole JSON object is the one parameter of this name (charging_profile's weekly planner)
    object_param: str | None = None
    #: at least one of ``params`` must be given (charge_limit)
    needs_params: bool = False
    # --- Home Assistant --------------------------------------------------------------------------
    #: the control: ``lock``; ``button`` (payload PRESS); ``toggle`` (a switch when the car takes ON and
    #: OFF, else a ``start_label`` button sending ON); ``number`` (a slider per param); ``none``
    entity: str = "none"
    key: str = ""
    label: str = ""
    #: the command in words, for its last-execution sensor ("lock", "flash lights")
    noun: str = ""
    icon: str = ""
    start_label: str | None = None
    #: the field that shows its result: a toggle's state (``state_on`` means ON); none: optimistic
    state_field: str | None = None
    state_on: str | None = None
    #: made even when ``VehicleInfo.commands`` does not list it (the bridge itself serves it)
    always: bool = False
    #: the payloads in words, for the README's table
    doc: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def json_keys(self) -> frozenset[str]:
        return frozenset(self.params)


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command(
            "lock",
            ("LOCK", "UNLOCK"),
            ("code",),
            entity="lock",
            key="lock",
            label="Lock",
            noun="lock",
            icon="mdi:car-door-lock",
            state_field="door_lock_state",
            doc='`LOCK`, `UNLOCK`, or `{"action": "UNLOCK", "code": "1234"}`',
        ),
        Command(
            "climate",
            ("ON", "OFF"),
            ("temperature", "defrost", "duration", "heating"),
            entity="toggle",
            key="climate_control",
            label="Climate",
            noun="climate",
            icon="mdi:air-conditioner",
            start_label="Start climate",
            doc='`ON`, `OFF`, or `{"action": "ON", "temperature": 21, "defrost": false, "duration": 10, "heating": 1}`',
        ),
        Command(
            "charging",
            ("ON", "OFF"),
            entity="toggle",
            key="charging_control",
            label="Charging",
            noun="charging",
            icon="mdi:ev-station",
            start_label="Start charging",
            state_field="charging_status",
            state_on="CHARGING",
            doc="`ON`, `OFF`",
        ),
        Command(
            "flash_lights",
            ("PRESS",),
            ("count",),
            default_action="PRESS",
            entity="button",
            key="flash_lights",
            label="Flash lights",
            noun="flash lights",
            icon="mdi:car-light-high",
            doc='`PRESS` or `{"count": 2}`',
        ),
        Command(
            "horn",
            ("PRESS",),
            entity="button",
            key="horn",
            label="Sound horn",
            noun="horn",
            icon="mdi:bullhorn",
            doc="`PRESS`",
        ),
        Command(
            "find_vehicle",
            ("PRESS",),
            entity="button",
            key="find_vehicle",
            label="Find vehicle",
            noun="find vehicle",
            icon="mdi:crosshairs-gps",
            doc="`PRESS`",
        ),
        Command(
            "charging_profile",
            (),
            default_action="SET",
            object_param="profile",
            key="charging_profile",
            label="Charging profile",
            noun="charging profile",
            icon="mdi:calendar-clock",
            doc='the vendor\'s weekly planner, bare or as `{"weeklyPlanner": …}` (what `<root>/charging_profile` '
            "shows)",
        ),
        Command(
            "refresh",
            ("PRESS",),
            entity="button",
            key="refresh",
            label="Refresh",
            noun="refresh",
            icon="mdi:refresh",
            always=True,
            doc="`PRESS`: reads the status now",
        ),
        Command(
            "force_refresh",
            ("PRESS",),
            entity="button",
            key="force_refresh",
            label="Wake and refresh",
            noun="wake and refresh",
            icon="mdi:car-connected",
            doc="`PRESS`: wakes the car and reads it fresh (battery rules apply)",
        ),
        Command(
            "charge_limit",
            ("SET",),
            ("ac", "dc"),
            default_action="SET",
            needs_params=True,
            entity="number",
            key="charge_limit",
            label="Charge limit",
            noun="charge limit",
            icon="mdi:battery-charging-80",
            doc='`{"ac": 80, "dc": 90}` (either or both)',
        ),
    )
}


def markdown_table() -> str:
    """The README's table of command topics, made from ``COMMANDS`` (tests/test_command_table.py)."""
    entities = {
        "lock": "lock",
        "button": "button",
        "toggle": "switch (or a start button)",
        "number": "sliders",
        "none": "—",
    }
    lines = ["| topic | payloads | Home Assistant |", "|---|---|---|"]
    for command in COMMANDS.values():
        entity = entities[command.entity]
        if command.name == "climate":
            entity = "climate entity, or switch"
        lines.append(f"| `<root>/{command.name}/set` | {command.doc} | {entity} |")
    return "\n".join(lines)
