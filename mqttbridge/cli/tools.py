"""The commands that need no vendor account: ``check-config`` (no network at all), ``simulate`` (a vendor
simulator) and ``purge`` (a broker's retained topics).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from mqttbridge.cli.common import (
    EXIT_OK,
    Subparsers,
    UsageError,
    _broker,
    _config_path,
    _load,
    with_config,
    with_log_level,
)
from mqttbridge.cli.daemon import _stop_on_signals
from mqttbridge.errors import ConfigError, MqttBridgeError

log = logging.getLogger(__name__)


def cmd_check_config(args: argparse.Namespace) -> int:
    from mqttbridge.config import load_config

    path = _config_path(args)
    config = load_config(path)
    _check_providers(config)
    print(f"{path}: valid")
    for line in config.summary():
        print(f"  {line}")
    for warning in config.warnings:
        print(f"warning: {warning}")
    return EXIT_OK


def _check_providers(config: Any) -> None:
    """A configuration is only valid here if each account's backend can be loaded (its extra installed)."""
    from mqttbridge.backends.registry import backend_class

    problems = []
    for index, account in enumerate(config.accounts):
        try:
            backend_class(account.provider)
        except MqttBridgeError as exc:
            problems.append(f"accounts[{index}].provider: {exc}")
    if problems:
        raise ConfigError(problems)


def cmd_simulate(args: argparse.Namespace) -> int:
    """The simulator a provider names in its spec (``ProviderSpec.simulator``): the core names none."""
    from mqttbridge import providers
    from mqttbridge.logsetup import setup_logging

    setup_logging(args.log_level or "INFO")
    if args.vehicles is not None and args.vehicles < 1:
        raise UsageError("--vehicles must be at least 1")
    spec = providers.get(args.provider)
    if spec.simulator is None:
        raise UsageError(f"the {spec.name} provider has no simulator; simulators: {', '.join(_simulators())}")
    run: Any = spec.load(spec.simulator, "simulator")
    return int(run(args))


def _simulators() -> list[str]:
    from mqttbridge import providers

    return sorted(name for name, spec in providers.available().items() if spec.simulator)


def simulate_legacy(args: argparse.Namespace) -> int:
    """``mqttbridge simulate --provider bmw_legacy``: the legacy BMW API (CONTRACT section 6)."""
    from mqttbridge.simulator import SimulatorServer, build_vehicles

    if args.execution_step < 0:
        raise UsageError("--execution-step must be >= 0 seconds")
    vehicles = build_vehicles([Path(d) for d in args.vehicle_dir or []], args.vehicles)
    server = SimulatorServer(vehicles, host=args.host, port=args.port, execution_step=args.execution_step)
    _stop_on_signals()
    print(f"listening on {server.url}", flush=True)
    for vehicle in vehicles:
        log.info("serving %s (%s)", vehicle.vin, vehicle.model)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return EXIT_OK


def cmd_purge(args: argparse.Namespace) -> int:
    """Retained topics outlive the bridge: this takes a base topic's, and its discovery configs, back.

    With ``-c`` the broker, its credentials, TLS and protocol, the base topic and the discovery prefix are the
    bridge's (its ``mqtt`` and ``homeassistant`` sections); ``--broker``, ``--base-topic`` and
    ``--discovery-prefix`` override them. ``MQTTBRIDGE_CONFIG`` is not read: without ``-c`` purge is what it was.
    """
    from mqttbridge.config import valid_topic
    from mqttbridge.logsetup import setup_logging
    from mqttbridge.purge import purge

    if args.config:
        config = _load(args, log_level="WARNING")
        mqtt = config.mqtt
        host, port = (mqtt.host, mqtt.port) if args.broker is None else _broker(args.broker)
        base_topic = mqtt.base_topic if args.base_topic is None else args.base_topic
        prefix = config.homeassistant.prefix if args.discovery_prefix is None else args.discovery_prefix
    else:
        setup_logging(args.log_level or "WARNING")
        needed = (("--broker HOST:PORT", args.broker), ("--base-topic BASE", args.base_topic))
        missing = [option for option, value in needed if value is None]
        if missing:
            raise UsageError(f"purge needs {' and '.join(missing)}, or -c with the bridge's configuration file")
        mqtt = None
        host, port = _broker(args.broker)
        base_topic = args.base_topic
        prefix = "homeassistant" if args.discovery_prefix is None else args.discovery_prefix
    for option, topic in (("--base-topic", base_topic), ("--discovery-prefix", prefix)):
        problem = valid_topic(topic)
        if problem:
            raise UsageError(f"{option} {topic!r}: {problem}")
    print(purge(host, port, base_topic, prefix=prefix, force=args.force, mqtt=mqtt).summary())
    return EXIT_OK


# --- their sub-commands ----------------------------------------------------------------------


def add_purge(sub: Subparsers) -> None:
    p = sub.add_parser(
        "purge",
        help="delete the retained topics under a base topic and the Home Assistant discovery configs that point at it",
    )
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="the bridge's configuration: the broker, user name, password, TLS and protocol, the base topic and "
        "the discovery prefix come from its mqtt and homeassistant sections (the options below override them)",
    )
    p.add_argument(
        "--broker",
        metavar="HOST:PORT",
        help="the MQTT broker to clean (with -c: instead of mqtt.host and mqtt.port; without -c: required, "
        "and purge connects without a user name or TLS)",
    )
    p.add_argument(
        "--base-topic",
        metavar="BASE",
        help="every retained topic under BASE/ is deleted (the bridge's mqtt.base_topic; required without -c)",
    )
    p.add_argument(
        "--discovery-prefix",
        metavar="PREFIX",
        help="where Home Assistant reads discovery configs (default homeassistant, or homeassistant.prefix with -c); "
        "only configs naming a topic under BASE are deleted",
    )
    p.add_argument("--force", action="store_true", help="purge even while BASE/bridge/state says a bridge is online")
    with_log_level(p, "how much to log on stderr (default WARNING; DEBUG lists each deleted topic)")
    p.set_defaults(func=cmd_purge)


def add_check_config(sub: Subparsers) -> None:
    p = with_config(sub.add_parser("check-config", help="validate the configuration without any network"))
    p.set_defaults(func=cmd_check_config)


def add_simulate(sub: Subparsers) -> None:
    p = sub.add_parser("simulate", help="run a built-in vendor simulator (a provider's: see --provider)")
    p.add_argument(
        "--provider",
        choices=_simulators(),
        default="bmw_legacy",
        help="which vendor to simulate (default bmw_legacy)",
    )
    p.add_argument("--stream-port", type=int, default=0, metavar="P", help="a streaming vendor's MQTT port (0: free)")
    p.add_argument("--stream-tls", action="store_true", help="TLS on the vendor's stream; prints its CA file")
    p.add_argument("--stream-plugin", metavar="PATH", help="the stream broker's dynamic-security plugin (Mosquitto)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    p.add_argument("--vehicles", type=int, metavar="N", help="serve N demo vehicles")
    p.add_argument(
        "--vehicle-dir",
        action="append",
        metavar="DIR",
        help="serve a car from captures laid out as shared/fixtures/bmw_legacy/<model>/ (repeatable)",
    )
    p.add_argument(
        "--execution-step",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds per remote-service status step (default 1)",
    )
    with_log_level(p, "how much to log on stderr (default INFO)")
    p.set_defaults(func=cmd_simulate)
