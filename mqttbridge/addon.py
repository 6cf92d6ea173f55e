"""``mqttbridge addon``: the Home Assistant add-on's entry point (CONTRACT §11).

The Supervisor writes the form's options to ``/data/options.json``. They become the §2 configuration and go
through the very validator ``run`` and ``check-config`` use, so an add-on accepts exactly what a config file
accepts; its problems are reported at the option's path (``accounts[0].password: required for bmw_legacy``),
because the user sees the form, not the file. The broker comes from the Supervisor's MQTT service unless the
options name one. Then the bridge runs as ``run`` runs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mqttbridge.config import PROVIDERS, SCHEMA, Config, Key, parse_config
from mqttbridge.errors import ConfigError
from mqttbridge.logsetup import MASK
from mqttbridge.supervisor import DEFAULT_API, Broker, mqtt_service

log = logging.getLogger(__name__)

DEFAULT_OPTIONS = Path("/data/options.json")
DEFAULT_STATE_DIR = Path("/data")
#: its own client id: a pip or Docker install of the bridge on the same broker keeps ``mqttbridge``
CLIENT_ID = "mqttbridge-addon"

#: the options of config.yaml's ``schema`` (CONTRACT §11), and the §2 keys each one becomes
TOP_OPTIONS = ("log_level", "base_topic", "discovery", "mqtt", "accounts", "vehicles")
MQTT_OPTIONS = ("host", "port", "username", "password")
ACCOUNT_OPTIONS = (
    "name",
    "provider",
    "region",
    "brand",
    "base_url",
    "username",
    "password",
    "pin",
    "api_key",
    "api_secret",
    "client_id",
    "poll_interval",
)
VEHICLE_OPTIONS = ("account", "vin", "name", "allow_unlock", "unlock_code")


@dataclass
class Translation:
    """The §2 data made from the options, the problems only the options can have, and where each §2 path
    came from in the options (longest prefix wins), so the validator's messages name what the user typed."""

    data: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)
    providers: dict[int, str] = field(default_factory=dict)

    def option_path(self, path: str) -> str:
        for prefix in sorted(self.paths, key=len, reverse=True):
            if path == prefix or path.startswith((f"{prefix}.", f"{prefix}[")):
                return self.paths[prefix] + path[len(prefix) :]
        return path

    def problem(self, line: str) -> str:
        """One validator line, told in the options' terms."""
        path, sep, message = line.partition(": ")
        if not sep:
            return line
        option = self.option_path(path)
        parts = option.split(".")
        if message.startswith("is required") and len(parts) == 2 and parts[0].startswith("accounts["):
            index = int(parts[0][len("accounts[") : -1])
            if parts[1] not in ("name", "provider") and index in self.providers:
                message = f"required for {self.providers[index]}"
        elif option == "accounts" and message == "must not be empty":
            message = "must list at least one account"
        return f"{option}: {message}"


def _given(value: Any) -> bool:
    """An optional option the form left empty arrives absent, null or as an empty string: all mean unset."""
    return value is not None and value != ""


def _text(value: Any) -> Any:
    """Option text is literal: ``$`` doubled so that §2's ``${VAR}`` substitution leaves it as typed."""
    return value.replace("$", "$$") if isinstance(value, str) else value


def _mapping(value: Any, path: str, out: Translation) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    out.problems.append(f"{path}: must be a mapping of options")
    return None


def _unknown(raw: Mapping[str, Any], known: tuple[str, ...], path: str, out: Translation) -> None:
    for name in raw:
        if name not in known:
            out.problems.append(f"{path}{name}: unknown option (known: {', '.join(known)})")


def translate(options: object, state_dir: Path, broker: Broker | None = None) -> Translation:
    """Options (as the Supervisor wrote them) -> §2 data; ``broker`` fills what the mqtt options leave out."""
    out = Translation()
    if not isinstance(options, dict):
        out.problems.append("options: must be a JSON object")
        options = {}
    _unknown(options, TOP_OPTIONS, "", out)
    data: dict[str, Any] = {"state_dir": str(state_dir)}
    out.paths.update({"state_dir": "--state-dir", "log_level": "log_level", "mqtt.base_topic": "base_topic"})
    if _given(options.get("log_level")):
        data["log_level"] = options["log_level"]
    mqtt: dict[str, Any] = {"client_id": CLIENT_ID}
    if broker is not None:
        mqtt.update(host=broker.host, port=broker.port, username=broker.username, password=_text(broker.password))
        if broker.ssl:
            mqtt["tls"] = {}
        for key in ("host", "port", "username", "password", "tls"):
            out.paths[f"mqtt.{key}"] = f"the Supervisor's MQTT service {key}"
    raw_mqtt = _mapping(options.get("mqtt", {}), "mqtt", out) or {}
    _unknown(raw_mqtt, MQTT_OPTIONS, "mqtt.", out)
    for key in MQTT_OPTIONS:
        if _given(raw_mqtt.get(key)):
            mqtt[key] = _text(raw_mqtt[key])
            out.paths[f"mqtt.{key}"] = f"mqtt.{key}"
    if _given(options.get("base_topic")):
        mqtt["base_topic"] = _text(options["base_topic"])
    data["mqtt"] = mqtt
    if _given(options.get("discovery")):
        data["homeassistant"] = {"discovery": options["discovery"]}
        out.paths["homeassistant.discovery"] = "discovery"
    data["accounts"] = _accounts(options.get("accounts", []), out)
    _vehicles(options.get("vehicles", []), data["accounts"], out)
    out.data = data
    return out


def _accounts(raw: object, out: Translation) -> list[Any]:
    if not isinstance(raw, list):
        out.problems.append("accounts: must be a list")
        return []
    accounts: list[Any] = []
    for index, item in enumerate(raw):
        path = f"accounts[{index}]"
        out.paths[path] = path
        entry = _mapping(item, path, out)
        if entry is None:
            accounts.append(item)  # the validator reports it as well; the indexes stay those of the options
            continue
        _unknown(entry, ACCOUNT_OPTIONS, f"{path}.", out)
        provider = entry.get("provider")
        schema = PROVIDERS.get(provider) if isinstance(provider, str) else None
        if isinstance(provider, str) and schema is not None:
            out.providers[index] = provider
        account: dict[str, Any] = {}
        for key in ACCOUNT_OPTIONS:
            value = entry.get(key)
            if not _given(value):
                continue
            if key == "poll_interval":
                account["poll"] = {"interval": value}
                out.paths[f"{path}.poll"] = f"{path}.poll_interval"
                out.paths[f"{path}.poll.interval"] = f"{path}.poll_interval"
            elif schema is not None and schema.fields is not None and key not in schema.fields:
                out.problems.append(f"{path}.{key}: not used by {provider}; leave it empty")
            else:
                account[key] = _text(value)
        accounts.append(account)
    return accounts


def _vehicles(raw: object, accounts: list[Any], out: Translation) -> None:
    """Each vehicle names its account (the form nests two levels at most): it joins that account's list."""
    if not isinstance(raw, list):
        out.problems.append("vehicles: must be a list")
        return
    by_name = {a.get("name"): a for a in accounts if isinstance(a, dict) and _given(a.get("name"))}
    for index, item in enumerate(raw):
        path = f"vehicles[{index}]"
        entry = _mapping(item, path, out)
        if entry is None:
            continue
        _unknown(entry, VEHICLE_OPTIONS, f"{path}.", out)
        name = entry.get("account")
        account = by_name.get(_text(name)) if isinstance(name, str) else None
        if not _given(name):
            out.problems.append(f"{path}.account: is required (the name of one of the accounts)")
            continue
        if account is None:
            known = ", ".join(str(n).replace("$$", "$") for n in by_name) or "none"
            out.problems.append(f"{path}.account: no account named {name!r}; accounts: {known}")
            continue
        vehicles = account.setdefault("vehicles", [])
        account_index = accounts.index(account)
        out.paths[f"accounts[{account_index}].vehicles[{len(vehicles)}]"] = path
        vehicles.append({k: _text(entry[k]) for k in VEHICLE_OPTIONS[1:] if _given(entry.get(k))})


def validate(translation: Translation) -> Config:
    """The same validator as ``run`` and ``check-config``; every problem at its option's path."""
    problems = list(translation.problems)
    config: Config | None = None
    try:
        config = parse_config(translation.data, env={}, base_dir=Path(translation.data["state_dir"]))
    except ConfigError as exc:
        problems += [translation.problem(line) for line in exc.problems]
    if problems or config is None:
        raise ConfigError(list(dict.fromkeys(problems)))
    return config


def masked(key: Key, value: Any) -> Any:
    """§2 data with every secret (the schema's ``secret`` keys, whatever the provider) shown as ``***``."""
    if key.kind == "variant" and key.variants and key.tag and isinstance(value, dict):
        chosen = key.variants.get(str(value.get(key.tag)))
        return masked(chosen, value) if chosen is not None else value
    if key.kind == "list" and key.item is not None and isinstance(value, list):
        return [masked(key.item, item) for item in value]
    if key.kind == "section" and key.fields is not None and isinstance(value, dict):
        out = {}
        for name, item in value.items():
            sub = key.fields.get(name)
            if sub is None:
                out[name] = item
            elif sub.secret and item is not None:
                out[name] = MASK
            else:
                out[name] = masked(sub, item)
        return out
    return value


def read_options(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            [f"{path}: cannot read: {exc.strerror or type(exc).__name__} (the Supervisor writes it; give --options)"]
        ) from None
    except ValueError as exc:
        raise ConfigError([f"{path}: not JSON: {exc}"]) from None


def configure(options_path: Path, state_dir: Path, env: Mapping[str, str]) -> tuple[Config, Translation, Broker | None]:
    """Options -> a validated configuration, the broker asked of the Supervisor when the options name none.

    The options are checked first, so a form's mistakes are reported even where no Supervisor answers.
    """
    options = read_options(options_path)
    first = translate(options, state_dir)
    config = validate(first)
    mqtt = options.get("mqtt") if isinstance(options, dict) else None
    if isinstance(mqtt, dict) and _given(mqtt.get("host")):
        return config, first, None
    api = env.get("SUPERVISOR_API") or DEFAULT_API
    broker = mqtt_service(api, env.get("SUPERVISOR_TOKEN") or env.get("HASSIO_TOKEN"))
    second = translate(options, state_dir, broker)
    return validate(second), second, broker


def run_addon(args: argparse.Namespace) -> int:
    """The add-on's process: exit 2 for invalid options, 1 when there is no broker, else the daemon."""
    from mqttbridge.bridge import Bridge
    from mqttbridge.cli.common import EXIT_OK, EXIT_USAGE
    from mqttbridge.cli.daemon import _serve
    from mqttbridge.logsetup import register_secret, setup_logging

    options_path = Path(args.options) if args.options else DEFAULT_OPTIONS
    state_dir = Path(args.state_dir) if args.state_dir else DEFAULT_STATE_DIR
    register_secret(os.environ.get("SUPERVISOR_TOKEN"))
    register_secret(os.environ.get("HASSIO_TOKEN"))
    try:
        config, translation, broker = configure(options_path, state_dir, os.environ)
    except ConfigError as exc:
        print(f"{options_path}: invalid add-on options", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.print_config:
        print(yaml.safe_dump(masked(SCHEMA, translation.data), sort_keys=False, allow_unicode=True), end="")
        return EXIT_OK
    for secret in config.secrets():
        register_secret(secret)
    setup_logging(config.log_level)
    for warning in config.warnings:
        log.warning("%s", warning)
    if broker is not None:
        user = f" as {broker.username}" if broker.username else ""
        by = f" ({broker.provider})" if broker.provider else ""
        log.info("broker from the Supervisor's MQTT service%s: %s:%d%s", by, broker.host, broker.port, user)
    else:
        log.info("broker from the options: %s:%d", config.mqtt.host, config.mqtt.port)
    return _serve(Bridge(config), config.state_dir)
