"""The validated configuration's types: plain frozen dataclasses, one per section of the YAML file.

They are what the rest of the daemon reads (``Config`` and its parts); the schema in ``schema.py`` builds
them. Also the two topic helpers that other modules share: ``valid_topic`` and ``default_vehicle_name``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

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
class ClusterConfig:
    """Several instances on one base topic (CONTRACT section 10): this one's unique ``id``, and how long a silent
    instance is waited for before its vehicles move (``takeover_s``)."""

    id: str
    takeover_s: int = 60


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
    cluster: ClusterConfig | None = None
    source: Path | None = None
    warnings: tuple[str, ...] = ()

    def secrets(self) -> set[str]:
        """Every non-empty secret value, so log output can be redacted (found via the schema)."""
        from mqttbridge.config.schema import SCHEMA  # the schema builds these classes: imported on use
        from mqttbridge.config.walker import _collect_secrets

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
        if self.cluster is not None:
            lines.append(
                f"cluster: instance {self.cluster.id}, takeover after {self.cluster.takeover_s} s "
                f"(announced on {mqtt.base_topic}/bridge/instances/{self.cluster.id})"
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
