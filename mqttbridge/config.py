"""Load and validate the YAML configuration (contract §2).

The schema is a data table (``SCHEMA``, ``PROVIDERS``) walked by one generic validator, so a new key
or a new backend is one table entry, not new checking code. Every problem is collected and reported
as ``<key path>: <message>`` so a user fixes the whole file in one go, and no message ever echoes a
secret's value.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from mqttbridge.errors import ConfigError
from mqttbridge.logsetup import MIN_SECRET_LEN, mask_secrets, secret_pattern
from mqttbridge.providers import AccountSchemas

logger = logging.getLogger(__name__)

MAX_TOPIC_LENGTH = 200


# --------------------------------------------------------------------------------------------------
# The result: plain frozen dataclasses (cheap on a Raspberry Pi, safe to share between threads).
# Secret fields are left out of repr() so that logging a config object cannot leak them.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsConfig:
    """TLS towards the broker; ``ca_certs=None`` means the system's CA store."""

    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False


@dataclass(frozen=True)
class MqttConfig:
    """How to reach the broker and where the bridge publishes."""

    host: str = "localhost"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = "mqttbridge"
    protocol: str = "5"
    keepalive: int = 60
    base_topic: str = "car"
    tls: TlsConfig | None = None


@dataclass(frozen=True)
class HomeAssistantConfig:
    """Home Assistant discovery: ``device`` or ``component`` style, or ``off``."""

    discovery: str = "device"
    prefix: str = "homeassistant"
    status_topic: str = "homeassistant/status"


@dataclass(frozen=True)
class PollConfig:
    """How often an account's vehicles are read, and when a vehicle counts as unreachable."""

    interval: int = 300
    datasets_interval: int = 3600
    offline_after: int = 3
    max_parallel: int = 4
    daily_budget: int | None = None
    budget_reset: str = "00:00"
    command_reserve: int = 10
    force_interval: int | None = None
    quiet_hours: str | None = "22:00-06:00"
    min_battery_12v: int = 50


@dataclass(frozen=True)
class CommandsConfig:
    """How a command's execution is followed (vendor-api-facts A9: 1-2 s polls, 120 s, 10 s)."""

    poll_interval: float = 2.0
    timeout: float = 120.0
    refresh_delay: float = 10.0


@dataclass(frozen=True)
class VehicleConfig:
    """One configured vehicle; ``topic`` replaces the default root ``<base_topic>/<name>``."""

    vin: str
    name: str
    topic: str | None = None
    allow_unlock: bool = False
    unlock_code: str | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class AccountConfig:
    """What every account has, whatever its provider; each provider's package subclasses it with its own
    keys (``account_schema`` builds the schema). An empty ``vehicles`` means every vehicle of the account."""

    name: str
    provider: str
    poll: PollConfig = field(default_factory=PollConfig)
    commands: CommandsConfig = field(default_factory=CommandsConfig)
    vehicles: tuple[VehicleConfig, ...] = ()

    def vehicle(self, vin: str) -> VehicleConfig | None:
        """The configured entry for ``vin``, or None when the account does not list it."""
        return next((v for v in self.vehicles if v.vin == vin), None)

    def where(self) -> str:
        """Where the account's vendor is, for ``check-config``'s summary (e.g. ``region europe``)."""
        return ""


@dataclass(frozen=True)
class NotifyConfig:
    """One alert target (CONTRACT section 8): a Synology Chat incoming webhook or a JSON webhook."""

    type: str
    url: str = field(repr=False)


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus metrics (off unless configured); loopback by default, as they are not authenticated."""

    host: str = "127.0.0.1"
    port: int = 9464


@dataclass(frozen=True)
class UnlockLockoutConfig:
    """After ``attempts`` wrong unlock codes within ``window_minutes``, a vehicle's UNLOCK is refused for
    ``minutes``, even with the right code (a four-digit code falls to 10,000 tries otherwise)."""

    attempts: int = 3
    window_minutes: int = 15
    minutes: int = 15


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    mqtt: MqttConfig
    homeassistant: HomeAssistantConfig
    state_dir: Path
    log_level: str
    accounts: tuple[AccountConfig, ...]
    notify: tuple[NotifyConfig, ...] = ()
    notify_interval: int = 3600
    metrics: MetricsConfig | None = None
    unlock_lockout: UnlockLockoutConfig = field(default_factory=UnlockLockoutConfig)
    source: Path | None = None
    warnings: tuple[str, ...] = ()

    def secrets(self) -> set[str]:
        """Every non-empty secret value, so log output can be redacted (found via the schema)."""
        found: set[str] = set()
        _collect_secrets(SCHEMA, self, found)
        return found

    def root_topic(self, vehicle: VehicleConfig) -> str:
        """The vehicle's topic root: its own ``topic`` or ``<base_topic>/<name>``."""
        return vehicle.topic or f"{self.mqtt.base_topic}/{vehicle.name}"

    def summary(self) -> list[str]:
        """Short lines for ``check-config``; never a secret."""
        mqtt = self.mqtt
        if mqtt.tls is None:
            tls = "TLS off"
        else:
            tls = "TLS on, certificate checks OFF" if mqtt.tls.insecure else "TLS on"
        user = f", user {mqtt.username}" if mqtt.username else ""
        ha = self.homeassistant
        discovery = f"home assistant discovery: {ha.discovery}"
        if ha.discovery != "off":
            discovery += f" (prefix {ha.prefix}, status topic {ha.status_topic})"
        lines = [
            f"broker: {mqtt.host}:{mqtt.port} (MQTT {mqtt.protocol}, {tls}, client id {mqtt.client_id}{user})",
            f"base topic: {mqtt.base_topic} (bridge on {mqtt.base_topic}/bridge/...)",
            discovery,
            f"state_dir: {self.state_dir}",
            f"log_level: {self.log_level}",
        ]
        if self.metrics is not None:
            lines.append(f"metrics: http://{self.metrics.host}:{self.metrics.port}/metrics")
        lockout = self.unlock_lockout
        lines.append(
            f"unlock lockout: {lockout.minutes} min after {lockout.attempts} wrong codes within "
            f"{lockout.window_minutes} min"
        )
        for account in self.accounts:
            where = f", {account.where()}" if account.where() else ""
            lines.append(f"account {account.name}: {account.provider}{where}, poll every {account.poll.interval} s")
            if not account.vehicles:
                lines.append(f"  vehicles: all of the account's, at {mqtt.base_topic}/<vin in lower case>")
            for vehicle in account.vehicles:
                if not vehicle.allow_unlock:
                    unlock = "unlock refused"
                else:
                    unlock = "unlock allowed with a code" if vehicle.unlock_code else "unlock allowed"
                root = self.root_topic(vehicle)
                lines.append(f"  vehicle {vehicle.name} ({vehicle.vin}) -> {root}, {unlock}")
        return lines


# --------------------------------------------------------------------------------------------------
# Small public helpers.
# --------------------------------------------------------------------------------------------------


def valid_topic(topic: str) -> str | None:
    """None if ``topic`` can be published to, else why not (used for every topic in the file)."""
    if not topic:
        return "must not be empty"
    if len(topic) > MAX_TOPIC_LENGTH:
        return f"must be at most {MAX_TOPIC_LENGTH} characters long (it has {len(topic)})"
    for char, what in (("+", "the wildcard '+'"), ("#", "the wildcard '#'"), ("\0", "a NUL character")):
        if char in topic:
            return f"must not contain {what}"
    if topic.startswith("$"):
        return "must not start with '$' (reserved for the broker)"
    if "" in topic.split("/"):
        return "must not have an empty level (no leading or trailing '/', no '//')"
    return None


def default_vehicle_name(vin: str) -> str:
    """The topic segment of a vehicle that has no ``name``: its VIN in lower case. The VIN may come from
    the vendor, so anything but ``[a-z0-9_-]`` becomes ``_``: no wildcard, level or empty topic from it."""
    return re.sub(r"[^a-z0-9_-]", "_", vin.lower())[:64] or "vehicle"


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


def _poll(daily_budget: int | None) -> Key:
    """The poll section; only the default call budget differs between providers (CONTRACT section 8)."""
    return Key(
        "section",
        build=PollConfig,
        fields={
            "interval": Key("int", default=300, minimum=60),
            "datasets_interval": Key("int", default=3600, minimum=300),
            "offline_after": Key("int", default=3, minimum=1, maximum=100),
            "max_parallel": Key("int", default=4, minimum=1, maximum=32),
            "daily_budget": Key("int", default=daily_budget, nullable=True, minimum=1, maximum=100000),
            "budget_reset": Key("str", default="00:00", pattern=_CLOCK, pattern_hint="a local time HH:MM"),
            "command_reserve": Key("int", default=10, minimum=0, maximum=1000),
            "force_interval": Key("int", default=None, nullable=True, minimum=3600),
            "quiet_hours": Key(
                "str",
                default="22:00-06:00",
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
    build: Callable[..., AccountConfig], fields: Mapping[str, Key], *, daily_budget: int | None = None
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
            "poll": _poll(daily_budget),
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

SCHEMA = Key(
    "section",
    fields={
        "mqtt": _MQTT,
        "homeassistant": _HOMEASSISTANT,
        "state_dir": Key("path", default_from=_default_state_dir),
        "log_level": Key("str", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), ignore_case=True),
        "accounts": Key("list", default=REQUIRED, min_items=1, item=Key("variant", tag="provider", variants=PROVIDERS)),
        "notify": Key("list", default=(), item=_NOTIFY),
        "notify_interval": Key("int", default=3600, minimum=60, maximum=7 * 86400),
        "metrics": _METRICS,
        "unlock_lockout": _UNLOCK_LOCKOUT,
    },
)


# --------------------------------------------------------------------------------------------------
# The generic validator.
# --------------------------------------------------------------------------------------------------

PathParts = tuple[str | int, ...]


class _Invalid(Exception):
    """Raised by a converter; the message is already safe to show (no secret in it)."""


def _fmt_path(path: PathParts) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return _kind_of(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _got(value: object, secret: bool) -> str:
    """`` (got …)`` for a message; for a secret only its type, never the value."""
    if secret:
        return "" if isinstance(value, str) else f" (got {_kind_of(value)})"
    return f" (got {_show(value)})"


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BOOL_WORDS = {
    **dict.fromkeys(("true", "yes", "on", "1"), True),
    **dict.fromkeys(("false", "no", "off", "0"), False),
}
# YAML 1.1 reads an unquoted on/off/yes/no as a boolean; a choice key gets the word back.
_YAML_BOOL_CHOICES = {True: ("on", "yes", "true"), False: ("off", "no", "false")}


def _to_str(key: Key, value: object, walker: _Walker) -> str:
    if isinstance(value, str):
        return value
    if key.choices and isinstance(value, bool):
        return next((w for w in _YAML_BOOL_CHOICES[value] if w in key.choices), _show(value))
    if key.choices and isinstance(value, int | float):
        return str(value)  # protocol: 5; anything else then fails the choice with its list
    hint = "; put it in quotes" if isinstance(value, bool | int | float) else ""
    raise _Invalid(f"must be a string{_got(value, key.secret)}{hint}")


def _to_int(key: Key, value: object, walker: _Walker) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value.strip())
    raise _Invalid(f"must be an integer{_got(value, key.secret)}")


def _to_number(key: Key, value: object, walker: _Walker) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
        number = float(value.strip())
    if number is None or not math.isfinite(number):
        raise _Invalid(f"must be a number{_got(value, key.secret)}")
    return number


def _to_bool(key: Key, value: object, walker: _Walker) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    raise _Invalid(f"must be true or false{_got(value, key.secret)}")


def _to_topic(key: Key, value: object, walker: _Walker) -> str:
    text = _to_str(key, value, walker)
    reason = valid_topic(text)
    if reason:
        raise _Invalid(f"not a valid MQTT topic: {reason}{_got(text, key.secret)}")
    return text


def _to_url(key: Key, value: object, walker: _Walker) -> str:
    text = _to_str(key, value, walker).strip()
    try:
        parts = urlsplit(text)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        usable = False
    if not usable:
        raise _Invalid(f"must be an http:// or https:// URL with a host{_got(text, key.secret)}")
    return text.rstrip("/")


def _to_path(key: Key, value: object, walker: _Walker) -> Path:
    text = _to_str(key, value, walker)
    if not text:
        raise _Invalid("must not be empty")
    path = Path(text).expanduser()
    return path if path.is_absolute() else walker.base_dir / path


def _to_file(key: Key, value: object, walker: _Walker) -> str:
    path = _to_path(key, value, walker)
    if not path.exists():
        raise _Invalid(f"file not found: {path}")
    if not path.is_file():
        raise _Invalid(f"not a file: {path}")
    return str(path)


_CONVERTERS: dict[str, Callable[[Key, object, _Walker], Any]] = {
    "str": _to_str,
    "int": _to_int,
    "number": _to_number,
    "bool": _to_bool,
    "topic": _to_topic,
    "url": _to_url,
    "path": _to_path,
    "file": _to_file,
}

_TOKEN = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
_EXPRESSION = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


class _Walker:
    """One validation run: walks the schema and the data together, collecting problems."""

    def __init__(self, env: Mapping[str, str], base_dir: Path):
        self.env = env
        self.base_dir = base_dir
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.inline_secret = False  # a secret written in the file itself (for the chmod warning)
        self.secret_values: set[str] = set()  # redacted from every message as a last line of defence
        self.seen: dict[str, dict[Any, str]] = {}

    def error(self, path: PathParts, message: str) -> Any:
        self.problems.append(f"{_fmt_path(path)}: {message}")
        return _INVALID

    def redact(self, lines: list[str]) -> list[str]:
        """Hide any secret value that still reached a message, e.g. an env value also used for a port."""
        pattern = secret_pattern(self.secret_values)
        return [mask_secrets(line, pattern, "<redacted>") for line in lines]

    # -- dispatch ----------------------------------------------------------------------------------

    def value(self, key: Key, raw: object, path: PathParts) -> Any:
        """Validate one present value (possibly null) against ``key``."""
        if key.kind == "section":
            return self.section(key, raw, path)
        if key.kind == "list":
            return self.sequence(key, raw, path)
        if key.kind == "variant":
            return self.variant(key, raw, path)
        return self.scalar(key, raw, path)

    def section(self, key: Key, raw: object, path: PathParts) -> Any:
        assert key.fields is not None
        if key.toggle and isinstance(raw, bool):
            raw = {} if raw else None
        if raw is None and key.nullable:
            return None
        if not isinstance(raw, dict):
            return self.error(path, f"must be a mapping of keys{_got(raw, False)}")
        fields = key.fields
        from_file = self._check_keys(fields, raw, path)
        values: dict[str, Any] = {}
        later: list[str] = []
        for name, sub in fields.items():
            sub_path = (*path, name)
            if name in from_file:
                file_key = from_file[name]
                values[name] = self.secret_file(sub, raw[file_key], (*path, file_key))
            elif raw.get(name) is not None:
                values[name] = self.value(sub, raw[name], sub_path)
            elif sub.nullable and (name in raw or sub.default is None):
                values[name] = None  # an explicit null switches a key with a default off
            elif sub.default is REQUIRED:
                alternative = f"; or give {name}_file" if sub.secret else ""
                values[name] = self.error(sub_path, f"is required{alternative}")
            elif sub.default_from is not None:
                later.append(name)
            elif sub.kind == "section":
                values[name] = self.section(sub, {}, sub_path)
            elif sub.kind == "list":
                values[name] = tuple(sub.default or ())
            else:
                values[name] = sub.default
        for name in later:
            values[name] = fields[name].default_from(values, self.env)  # type: ignore[misc]
        for name, sub in fields.items():
            self._after(sub, values, name, (*path, name))
        if any(v is _INVALID for v in values.values()):
            return _INVALID
        return key.build(**values) if key.build else values

    def _after(self, key: Key, values: Mapping[str, Any], name: str, path: PathParts) -> None:
        """Checks that need the whole section: requires, unique, warn_if."""
        value = values[name]
        if value is None or value is _INVALID:
            return
        if key.requires and values.get(key.requires) is None:
            parent = _fmt_path(path[:-1])
            self.error(path, f"needs {parent + '.' if parent else ''}{key.requires} as well")
        if key.unique:
            seen = self.seen.setdefault(key.unique, {})
            if value in seen:
                self.error(path, f"duplicate {key.unique} {_show(value)} (also at {seen[value]})")
            else:
                seen[value] = _fmt_path(path)
        if key.warn_if and value == key.warn_if[0]:
            self.warnings.append(f"{_fmt_path(path)}: {key.warn_if[1]}")

    def _check_keys(self, fields: Mapping[str, Key], raw: Mapping[Any, Any], path: PathParts) -> dict[str, str]:
        """Report unknown keys; return {secret key: its ``_file`` key} for secrets given as files."""
        from_file: dict[str, str] = {}
        known = [*fields, *(f"{n}_file" for n, k in fields.items() if k.secret)]
        for name in raw:
            text = str(name)
            if text in fields:
                continue
            base = text.removesuffix("_file")
            if text.endswith("_file") and base in fields:
                if not fields[base].secret:
                    self.error((*path, text), f"unknown key: only secrets may be read from a file, {base} is not one")
                elif raw.get(base) is not None:
                    self.error((*path, base), f"give either {base} or {text}, not both")
                else:
                    from_file[base] = text
                continue
            close = difflib.get_close_matches(text, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(fields)}"
            self.error((*path, text), f"unknown key ({hint})")
        return from_file

    def sequence(self, key: Key, raw: object, path: PathParts) -> Any:
        assert key.item is not None
        if not isinstance(raw, list):
            return self.error(path, f"must be a list{_got(raw, False)}")
        if len(raw) < key.min_items:
            return self.error(path, "must not be empty")
        items = [self.value(key.item, item, (*path, index)) for index, item in enumerate(raw)]
        return _INVALID if any(i is _INVALID for i in items) else tuple(items)

    def variant(self, key: Key, raw: object, path: PathParts) -> Any:
        assert key.tag is not None and key.variants is not None
        if not isinstance(raw, dict):
            return self.error(path, f"must be a mapping of keys{_got(raw, False)}")
        tag_path = (*path, key.tag)
        known = tuple(key.variants)
        if raw.get(key.tag) is None:
            return self.error(tag_path, f"is required (one of {', '.join(known)})")
        chosen = self.scalar(Key("str", choices=known), raw[key.tag], tag_path)
        if chosen is _INVALID:
            return _INVALID
        return self.section(key.variants[chosen], raw, path)

    # -- scalars -----------------------------------------------------------------------------------

    def scalar(self, key: Key, raw: object, path: PathParts, *, substitute: bool = True) -> Any:
        value = raw
        if isinstance(value, str) and substitute:
            value = self.substitute(value, path, key.secret)
            if value is _INVALID:
                return _INVALID
        if key.secret and isinstance(value, str) and value:
            self.secret_values.add(value)
            if len(value) < MIN_SECRET_LEN:
                self.warnings.append(
                    f"{_fmt_path(path)}: shorter than {MIN_SECRET_LEN} characters, too short to be "
                    "masked in logs safely (it would hide parts of ordinary words); use a longer one"
                )
        if value is None or (value == "" and key.nullable):
            return None if key.nullable else self.error(path, "must not be null")
        try:
            return self._check(key, _CONVERTERS[key.kind](key, value, self))
        except _Invalid as exc:
            return self.error(path, str(exc))

    def _check(self, key: Key, value: Any) -> Any:
        got = _got(value, key.secret)
        if key.nonempty and value == "":
            raise _Invalid("must not be empty")
        if key.choices:
            wanted = str(value).lower() if key.ignore_case else value
            match = next((c for c in key.choices if (c.lower() if key.ignore_case else c) == wanted), None)
            if match is None:
                raise _Invalid(f"must be one of {', '.join(key.choices)}{got}")
            value = match
        low, high = key.minimum, key.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            if high is None:
                raise _Invalid(f"must be >= {_number_text(low)}{got}")  # type: ignore[arg-type]
            if low is None:
                raise _Invalid(f"must be <= {_number_text(high)}{got}")
            raise _Invalid(f"must be between {_number_text(low)} and {_number_text(high)}{got}")
        if key.pattern and not re.fullmatch(key.pattern, value):
            raise _Invalid(f"must be {key.pattern_hint or 'of the form ' + key.pattern}{got}")
        return value

    def substitute(self, text: str, path: PathParts, secret: bool) -> Any:
        """Expand ``${VAR}``, ``${VAR:-default}`` and ``$$``; note whether file text ended up in a secret."""
        out: list[str] = []
        literal = False
        failed = False
        position = 0
        for match in _TOKEN.finditer(text):
            out.append(text[position : match.start()])
            literal = literal or match.start() > position
            position = match.end()
            token = match.group(0)
            if token == "$$":
                out.append("$")
                literal = True
                continue
            if token == "${":
                self.error(path, "unterminated '${' (write '$$' for a literal '$')")
                return _INVALID
            expression = _EXPRESSION.fullmatch(match.group(1))
            if expression is None:
                shown = "" if secret else f" {token!r}"
                self.error(path, f"invalid variable reference{shown}: write ${{NAME}} or ${{NAME:-default}}")
                failed = True
                continue
            name, default = expression.group(1), expression.group(2)
            found = self.env.get(name)
            if found is None or (found == "" and default is not None):
                if default is None:
                    self.error(path, f"environment variable {name} is not set")
                    failed = True
                    continue
                found = default
                literal = literal or bool(default)
            if secret and found:
                self.secret_values.add(found)
            out.append(found)
        out.append(text[position:])
        literal = literal or position < len(text)
        if failed:
            return _INVALID
        if secret and literal:
            self.inline_secret = True
        return "".join(out)

    def secret_file(self, key: Key, raw: object, path: PathParts) -> Any:
        """A secret read from ``<key>_file``: the file's content, stripped, never shown."""
        file_path = self.scalar(Key("path"), raw, path)
        if file_path is _INVALID:
            return _INVALID
        try:
            content = file_path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            return self.error(path, f"cannot read {file_path}: not UTF-8 text")
        except OSError as exc:
            return self.error(path, f"cannot read {file_path}: {exc.strerror or type(exc).__name__}")
        return self.scalar(key, content.strip(), path, substitute=False)


def _collect_secrets(key: Key, obj: Any, out: set[str]) -> None:
    """Walk a built config along the schema, gathering every secret value."""
    if obj is None:
        return
    if key.kind == "variant" and key.variants is not None and key.tag is not None:
        chosen = key.variants.get(getattr(obj, key.tag, ""))
        if chosen is not None:
            _collect_secrets(chosen, obj, out)
    elif key.kind == "list" and key.item is not None:
        for item in obj:
            _collect_secrets(key.item, item, out)
    elif key.kind == "section" and key.fields is not None:
        for name, sub in key.fields.items():
            value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
            if sub.secret:
                if isinstance(value, str) and value:
                    out.add(value)
            else:
                _collect_secrets(sub, value, out)


def _check_roots(config: Config) -> list[str]:
    """Vehicle roots must be valid, distinct, and outside ``<base_topic>/bridge``."""
    problems: list[str] = []
    bridge = f"{config.mqtt.base_topic}/bridge"
    owners: dict[str, tuple[str, VehicleConfig]] = {}
    for a_index, account in enumerate(config.accounts):
        for v_index, vehicle in enumerate(account.vehicles):
            where = f"accounts[{a_index}].vehicles[{v_index}]"
            root = config.root_topic(vehicle)
            this = f"vehicle {vehicle.name} ({vehicle.vin})"
            reason = valid_topic(root)
            if reason:
                problems.append(f"{where}: root topic {root!r} of {this} is not a valid topic: {reason}")
            elif root == bridge or root.startswith(bridge + "/"):
                problems.append(
                    f"{where}: root topic {root!r} of {this} collides with the bridge's own topics under "
                    f"{bridge!r}; give the vehicle another name or topic"
                )
            elif root in owners:
                other_where, other = owners[root]
                problems.append(
                    f"{where}: root topic {root!r} of {this} is already the root of vehicle {other.name} "
                    f"({other.vin}) at {other_where}; give one of them another name or topic"
                )
            else:
                owners[root] = (where, vehicle)
    return problems


# --------------------------------------------------------------------------------------------------
# Entry points.
# --------------------------------------------------------------------------------------------------


def parse_config(data: object, *, env: Mapping[str, str], base_dir: Path, source: Path | None = None) -> Config:
    """Validate already-parsed YAML ``data``; relative paths are taken from ``base_dir``."""
    name = str(source) if source is not None else "configuration"
    if data is None:
        raise ConfigError([f"{name}: the file is empty; see config.yaml.example"])
    if not isinstance(data, dict):
        raise ConfigError([f"{name}: the top level must be a mapping of keys (got {_kind_of(data)})"])
    walker = _Walker(env, Path(base_dir))
    values = walker.section(SCHEMA, data, ())
    if walker.problems or values is _INVALID:
        raise ConfigError(walker.redact(walker.problems or ["configuration: invalid"]))
    config = Config(**values, source=source)
    problems = _check_roots(config)
    if problems:
        raise ConfigError(problems)
    warnings = walker.redact(walker.warnings)
    if source is not None and walker.inline_secret:
        try:
            mode = source.stat().st_mode
        except OSError:
            mode = 0
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(
                f"{source}: holds secrets inline and is readable by group or others "
                f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {source}"
            )
    for warning in warnings:
        logger.debug("config warning: %s", warning)
    return Config(**values, source=source, warnings=tuple(warnings))


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate the YAML file at ``path``; ``env`` defaults to ``os.environ``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or type(exc).__name__}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: cannot read: not UTF-8 text (bad byte at offset {exc.start})"]) from None
    data = _parse_yaml(text, path)
    source = path.absolute()
    config = parse_config(data, env=os.environ if env is None else env, base_dir=source.parent, source=source)
    logger.debug("loaded configuration from %s", source)
    return config


def _parse_yaml(text: str, path: Path) -> object:
    """``yaml.safe_load`` plus a duplicate-key check; errors give line and column, never the line's text."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        duplicates: list[str] = []
        _find_duplicate_keys(node, (), set(), duplicates)
        if duplicates:
            raise ConfigError(duplicates)
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        message = f"{path}: YAML syntax error{where}: {exc.problem or exc.context or 'invalid YAML'}"
        if exc.context and exc.problem:
            context_mark = exc.context_mark
            started = ""
            if context_mark:
                started = f" at line {context_mark.line + 1}, column {context_mark.column + 1}"
            message += f" ({exc.context}{started})"
        raise ConfigError([message]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: YAML error: {exc}"]) from None


def _find_duplicate_keys(node: yaml.Node | None, path: PathParts, visited: set[int], out: list[str]) -> None:
    """PyYAML keeps the last of two equal keys silently; a duplicated section must not vanish."""
    if node is None or id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                _find_duplicate_keys(value_node, path, visited, out)
                continue
            name = key_node.value
            line = key_node.start_mark.line + 1
            if name in first_line:
                first = first_line[name]
                out.append(f"{_fmt_path((*path, name))}: duplicate key (line {line}, first at line {first})")
            else:
                first_line[name] = line
            _find_duplicate_keys(value_node, (*path, name), visited, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _find_duplicate_keys(item, (*path, index), visited, out)
