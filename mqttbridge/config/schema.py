"""The schema as a data table: ``Key`` (one entry), the sections' tables, ``SCHEMA`` (the whole file)
and ``PROVIDERS`` (an account section per installed provider), plus the defaults computed from other values.

A new key or a new backend is one table entry here, not new checking code: ``walker.py`` validates against it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mqttbridge.config.model import (
    AccountConfig,
    ClusterConfig,
    CommandsConfig,
    HomeAssistantConfig,
    MetricsConfig,
    MqttConfig,
    NotifyConfig,
    PollConfig,
    TlsConfig,
    UnlockLockoutConfig,
    VehicleConfig,
    default_vehicle_name,
)
from mqttbridge.logsetup import LEVELS
from mqttbridge.providers import AccountSchemas

# --------------------------------------------------------------------------------------------------
# The schema table.
# --------------------------------------------------------------------------------------------------


class _Marker:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


REQUIRED: Any = _Marker("REQUIRED")  # as a Key default: the key must be given
_INVALID: Any = _Marker("INVALID")  # a value that failed validation (its problem is already recorded)

DefaultFrom = Callable[[Mapping[str, Any], Mapping[str, str]], Any]


@dataclass(frozen=True)
class Key:
    """One schema entry. ``kind`` is one of the converters' names, ``section``, ``list`` or ``variant``.

    ``null`` in the file means "not set": ``None`` when ``nullable``, else the default. An empty
    string of a ``nullable`` key is ``None`` as well, so ``${VAR:-}`` can switch a key off.
    """

    kind: str
    default: Any = None  # a value, or REQUIRED
    default_from: DefaultFrom | None = None  # computed from the section's other values and env
    nullable: bool = False
    secret: bool = False  # never echoed; may be given as <key>_file; listed by Config.secrets()
    nonempty: bool = False
    choices: tuple[str, ...] = ()
    ignore_case: bool = False  # for choices: match case-insensitively, store the canonical form
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None  # full match
    pattern_hint: str = ""  # the pattern in words, for the error message
    unique: str | None = None  # label of a file-wide uniqueness scope, e.g. "VIN"
    requires: str | None = None  # a sibling key that must be set when this one is
    warn_if: tuple[Any, str] | None = None  # (value, warning) when the key has that value
    fields: Mapping[str, Key] | None = None  # section: its keys
    build: Callable[..., Any] | None = None  # section: called with the values as keywords
    toggle: bool = False  # section: ``true`` means {} (on, defaults), ``false`` means null (off)
    item: Key | None = None  # list: the schema of each entry
    min_items: int = 0
    tag: str | None = None  # variant: the key choosing the schema ...
    variants: Mapping[str, Key] | None = None  # ... from this table


def _default_mqtt_port(values: Mapping[str, Any], env: Mapping[str, str]) -> int:
    """1883, or 8883 when TLS is on (the registered MQTT-over-TLS port, as mosquitto does)."""
    return 8883 if isinstance(values.get("tls"), TlsConfig) else 1883


def _default_vehicle_name(values: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    vin = values.get("vin")
    return default_vehicle_name(vin) if isinstance(vin, str) else _INVALID


def _is_root() -> bool:
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and geteuid() == 0


def _default_state_dir(values: Mapping[str, Any], env: Mapping[str, str]) -> Path:
    """systemd's StateDirectory=, else the FHS place for a system service, else the user's XDG one."""
    systemd = env.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd)
    if _is_root():
        return Path("/var/lib/mqttbridge")
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "mqttbridge"
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".local" / "state" / "mqttbridge"


_TLS = Key(
    "section",
    nullable=True,
    toggle=True,
    build=TlsConfig,
    fields={
        "ca_certs": Key("file", nullable=True),
        "certfile": Key("file", nullable=True),
        "keyfile": Key("file", nullable=True, requires="certfile"),
        "insecure": Key(
            "bool",
            default=False,
            warn_if=(True, "TLS certificate and hostname checks are off; use this only for testing"),
        ),
    },
)

_MQTT = Key(
    "section",
    build=MqttConfig,
    fields={
        "host": Key("str", default="localhost", nonempty=True),
        "port": Key("int", default_from=_default_mqtt_port, minimum=1, maximum=65535),
        "username": Key("str", nullable=True),
        "password": Key("str", nullable=True, secret=True),
        "client_id": Key("str", default="mqttbridge", nonempty=True),
        "protocol": Key("str", default="5", choices=("5", "3.1.1")),
        "keepalive": Key("int", default=60, minimum=5, maximum=3600),
        "base_topic": Key("topic", default="car"),
        "tls": _TLS,
    },
)

_HOMEASSISTANT = Key(
    "section",
    build=HomeAssistantConfig,
    fields={
        "discovery": Key("str", default="device", choices=("device", "component", "off")),
        "prefix": Key("topic", default="homeassistant"),
        "status_topic": Key("topic", default="homeassistant/status"),
    },
)

_VEHICLE = Key(
    "section",
    build=VehicleConfig,
    fields={
        "vin": Key(
            "str",
            default=REQUIRED,
            pattern=r"[A-Za-z0-9_-]{1,40}",
            pattern_hint="1 to 40 letters, digits, '_' or '-'",
            unique="VIN",
        ),
        "name": Key(
            "str",
            default_from=_default_vehicle_name,
            pattern=r"[A-Za-z0-9_-]{1,64}",
            pattern_hint="1 to 64 letters, digits, '_' or '-'",
        ),
        "topic": Key("topic", nullable=True),
        "allow_unlock": Key("bool", default=False),
        "unlock_code": Key("str", nullable=True, secret=True),
    },
)

# Shared by every provider so that names are unique across all accounts.
_ACCOUNT_NAME = Key(
    "str",
    default=REQUIRED,
    pattern=r"[a-z0-9_-]{1,32}",
    pattern_hint="1 to 32 lower-case letters, digits, '_' or '-'",
    unique="account name",
)
_PROVIDER = Key("str", default=REQUIRED)
_CLOCK = r"([01][0-9]|2[0-3]):[0-5][0-9]"


_POLL_DEFAULTS: Mapping[str, Any] = {
    "interval": 300,
    "budget_reset": "00:00",
    "command_reserve": 10,
    "quiet_hours": "22:00-06:00",
}


def _poll(daily_budget: int | None, defaults: Mapping[str, Any] | None = None) -> Key:
    """The poll section; providers differ in the default budget and may change a few other defaults
    (CONTRACT section 8: e.g. BMW CarData's budget resets at 00:00 UTC)."""
    unknown = set(defaults or {}) - set(_POLL_DEFAULTS)
    if unknown:
        raise ValueError(f"poll defaults a provider cannot change: {sorted(unknown)}")
    d = {**_POLL_DEFAULTS, **(defaults or {})}
    return Key(
        "section",
        build=PollConfig,
        fields={
            "interval": Key("int", default=d["interval"], minimum=60),
            "datasets_interval": Key("int", default=3600, minimum=300),
            "offline_after": Key("int", default=3, minimum=1, maximum=100),
            "max_parallel": Key("int", default=4, minimum=1, maximum=32),
            "daily_budget": Key("int", default=daily_budget, nullable=True, minimum=1, maximum=100000),
            "budget_reset": Key(
                "str",
                default=d["budget_reset"],
                pattern=f"{_CLOCK}( UTC)?",
                pattern_hint="a local time HH:MM, or HH:MM UTC",
            ),
            "command_reserve": Key("int", default=d["command_reserve"], minimum=0, maximum=1000),
            "force_interval": Key("int", default=None, nullable=True, minimum=3600),
            "quiet_hours": Key(
                "str",
                default=d["quiet_hours"],
                nullable=True,
                pattern=f"{_CLOCK}-{_CLOCK}",
                pattern_hint="HH:MM-HH:MM in local time, or null for none",
            ),
            "min_battery_12v": Key("int", default=50, minimum=0, maximum=100),
        },
    )


_COMMANDS = Key(
    "section",
    build=CommandsConfig,
    fields={
        "poll_interval": Key("number", default=2.0, minimum=0.1, maximum=60),
        "timeout": Key("number", default=120.0, minimum=1, maximum=1800),
        "refresh_delay": Key("number", default=10.0, minimum=0, maximum=300),
    },
)


def account_schema(
    build: Callable[..., AccountConfig],
    fields: Mapping[str, Key],
    *,
    daily_budget: int | None = None,
    poll_defaults: Mapping[str, Any] | None = None,
) -> Key:
    """A provider's account section: ``name`` and ``provider``, the provider's own ``fields``, then the
    sections every account has (``poll`` with the provider's default budget, ``commands``, ``vehicles``)."""
    return Key(
        "section",
        build=build,
        fields={
            "name": _ACCOUNT_NAME,
            "provider": _PROVIDER,
            **fields,
            "poll": _poll(daily_budget, poll_defaults),
            "commands": _COMMANDS,
            "vehicles": Key("list", default=(), item=_VEHICLE),
        },
    )


#: provider name -> account schema, from the installed providers (mqttbridge.providers)
PROVIDERS: Mapping[str, Key] = AccountSchemas()

_NOTIFY = Key(
    "section",
    build=NotifyConfig,
    fields={
        "type": Key("str", default=REQUIRED, choices=("synology_chat", "webhook")),
        # a webhook URL usually carries its token: a secret
        "url": Key("url", default=REQUIRED, secret=True),
    },
)

_METRICS = Key(
    "section",
    nullable=True,
    toggle=True,
    build=MetricsConfig,
    fields={
        "host": Key("str", default="127.0.0.1", nonempty=True),
        "port": Key("int", default=9464, minimum=1, maximum=65535),
    },
)

_UNLOCK_LOCKOUT = Key(
    "section",
    build=UnlockLockoutConfig,
    fields={
        "attempts": Key("int", default=3, minimum=1, maximum=100),
        "window_minutes": Key("int", default=15, minimum=1, maximum=7 * 24 * 60),
        "minutes": Key("int", default=15, minimum=1, maximum=7 * 24 * 60),
    },
)

_CLUSTER = Key(
    "section",
    nullable=True,
    build=ClusterConfig,
    fields={
        "id": Key(
            "str",
            default=REQUIRED,
            pattern=r"[a-z0-9_-]{1,64}",
            pattern_hint="1 to 64 lower-case letters, digits, '_' or '-'",
        ),
        "takeover_s": Key("int", default=60, minimum=5, maximum=3600),
    },
)

SCHEMA = Key(
    "section",
    fields={
        "mqtt": _MQTT,
        "homeassistant": _HOMEASSISTANT,
        "state_dir": Key("path", default_from=_default_state_dir),
        "log_level": Key("str", default="INFO", choices=LEVELS, ignore_case=True),
        "accounts": Key("list", default=REQUIRED, min_items=1, item=Key("variant", tag="provider", variants=PROVIDERS)),
        "notify": Key("list", default=(), item=_NOTIFY),
        "notify_interval": Key("int", default=3600, minimum=60, maximum=7 * 86400),
        "metrics": _METRICS,
        "unlock_lockout": _UNLOCK_LOCKOUT,
        "cluster": _CLUSTER,
    },
)
