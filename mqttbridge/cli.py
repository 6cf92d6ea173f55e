"""The ``mqttbridge`` command line (CONTRACT section 1).

Exit codes: 0 success, 2 bad usage or invalid configuration, 1 any other failure. A user's mistake
gets a message that says what was wrong and what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mqttbridge import __version__
from mqttbridge.errors import ApiGoneError, AuthError, ConfigError, ConnectionFailed, MqttBridgeError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(MqttBridgeError):
    """Bad usage: exit code 2."""


def _config_path(args: argparse.Namespace) -> Path:
    path = args.config or os.environ.get("MQTTBRIDGE_CONFIG")
    if not path:
        raise UsageError("no configuration file: give -c FILE or set MQTTBRIDGE_CONFIG")
    return Path(path)


def _load(args: argparse.Namespace):
    from mqttbridge.config import load_config
    from mqttbridge.logsetup import register_secret, setup_logging

    config = load_config(_config_path(args))
    for secret in config.secrets():
        register_secret(secret)
    setup_logging(args.log_level or config.log_level)
    for warning in config.warnings:
        log.warning("%s", warning)
    return config


# --- commands ------------------------------------------------------------------------------------


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
    from mqttbridge.logsetup import setup_logging
    from mqttbridge.simulator import SimulatorServer, build_vehicles

    setup_logging(args.log_level or "INFO")
    if args.vehicles is not None and args.vehicles < 1:
        raise UsageError("--vehicles must be at least 1")
    if args.execution_step < 0:
        raise UsageError("--execution-step must be >= 0 seconds")
    vehicles = build_vehicles([Path(d) for d in args.vehicle_dir or []], args.vehicles)
    server = SimulatorServer(vehicles, host=args.host, port=args.port, execution_step=args.execution_step)
    _stop_on_signals()
    print(f"listening on {server.url}", flush=True)
    for vehicle in vehicles:
        log.info("serving %s (%s)", vehicle.vin, vehicle.entry.get("model"))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return EXIT_OK


def _stop_on_signals() -> None:
    """SIGTERM ends like Ctrl-C does: cleanly, exit 0."""

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _serve(bridge, state_dir: Path) -> int:
    """Run until SIGTERM or SIGINT, then stop cleanly (``offline`` published by hand).

    The service monitor tells systemd when the bridge is up and that it is still alive, and
    keeps ``state_dir/heartbeat.json`` fresh for ``mqttbridge health``.
    """
    import threading

    from mqttbridge.service import ServiceMonitor

    done = threading.Event()

    def stop(_signum: int, _frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    monitor = ServiceMonitor(state_dir, connected=bridge.session.connected.is_set, alive=bridge.alive)
    # written before "online" is published, so whoever sees "online" finds a heartbeat saying connected
    bridge.connection_listeners.append(lambda _connected: monitor.poke())
    bridge.start()
    monitor.start()
    monitor.ready()
    try:
        while not done.wait(1.0):
            pass
        log.info("stopping")
        monitor.stopping()
        bridge.stop()
    finally:
        monitor.stop()
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from mqttbridge.bridge import Bridge

    config = _load(args)
    return _serve(Bridge(config), config.state_dir)


def cmd_demo(args: argparse.Namespace) -> int:
    from mqttbridge.demo import demo_bridge, finish_demo

    host, port = _broker(args.broker)
    bridge, lines = demo_bridge(host, port, args.base_topic, log_level=args.log_level or "INFO")
    for line in lines:
        print(line, flush=True)
    # the demo's own state is a throw-away temp folder; its heartbeat goes where `health` looks
    # (in the container image, STATE_DIRECTORY=/data)
    try:
        return _serve(bridge, Path(os.environ.get("STATE_DIRECTORY", "").split(":")[0] or bridge.config.state_dir))
    finally:  # after the monitor's last heartbeat, which lands in that folder
        print(finish_demo(bridge, keep=args.keep), flush=True)


def cmd_purge(args: argparse.Namespace) -> int:
    """Retained topics outlive the bridge: this takes a base topic's, and its discovery configs, back."""
    from mqttbridge.config import valid_topic
    from mqttbridge.logsetup import setup_logging
    from mqttbridge.purge import purge

    setup_logging(args.log_level or "WARNING")
    host, port = _broker(args.broker)
    for option, topic in (("--base-topic", args.base_topic), ("--discovery-prefix", args.discovery_prefix)):
        problem = valid_topic(topic)
        if problem:
            raise UsageError(f"{option} {topic!r}: {problem}")
    print(purge(host, port, args.base_topic, prefix=args.discovery_prefix, force=args.force).summary())
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the daemon using this state_dir runs and is connected; otherwise 1 and why."""
    from mqttbridge.service import health

    if args.state_dir:
        state_dir = Path(args.state_dir)
    elif args.config or os.environ.get("MQTTBRIDGE_CONFIG"):
        from mqttbridge.config import load_config

        state_dir = load_config(_config_path(args)).state_dir
    else:  # the daemon's own default: $STATE_DIRECTORY, /var/lib/mqttbridge for root, else ~/.local/state
        from mqttbridge.config import _default_state_dir

        state_dir = _default_state_dir({}, os.environ)
    if args.max_age <= 0:
        raise UsageError("--max-age must be > 0 seconds")
    ok, reason = health(state_dir, max_age=args.max_age)
    print(reason, file=sys.stdout if ok else sys.stderr)
    return EXIT_OK if ok else EXIT_FAILURE


def _broker(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, "1883"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--broker must be HOST:PORT (got {text!r})")
    return host, int(port)


def _backends(config):
    from mqttbridge.backends import create_backend
    from mqttbridge.backends.base import RetryPolicy
    from mqttbridge.statestore import StateStore

    store = StateStore(config.state_dir)
    interactive = RetryPolicy(attempts=3, backoff_max=5.0, max_retry_after=10.0)
    for account in config.accounts:
        yield account, create_backend(account, store, policy=interactive)


def cmd_login(args: argparse.Namespace) -> int:
    """An interactive login for what a daemon cannot do alone: a one-time code the vendor sent (CONTRACT §7).

    The tokens land in ``state_dir``, where a running daemon finds them at its next login attempt.
    """
    from mqttbridge.backends import create_backend
    from mqttbridge.backends.base import RetryPolicy
    from mqttbridge.errors import ActionRequiredError
    from mqttbridge.statestore import StateStore

    config = _load(args)
    account = next((a for a in config.accounts if a.name == args.account), None)
    if account is None:
        names = ", ".join(a.name for a in config.accounts) or "none"
        raise UsageError(f"no account {args.account!r} in the configuration; accounts: {names}")
    backend = create_backend(
        account, StateStore(config.state_dir), policy=RetryPolicy(attempts=3, backoff_max=5.0, max_retry_after=10.0)
    )
    with _closing(backend):
        for _ in range(3):  # a login may ask once for a code, then succeed
            try:
                backend.login()
            except ActionRequiredError as exc:
                if exc.kind != "otp" or not backend.takes_codes():
                    raise MqttBridgeError(f"account {account.name}: {exc}") from None
                where = exc.details.get("sent_to")
                print(f"account {account.name}: {exc}", flush=True)
                code = input(f"the one-time code{f' sent by {where}' if where else ''}: ").strip()
                backend.submit_code("otp", code)
                continue
            print(
                f"account {account.name}: logged in; the tokens are kept in {config.state_dir}, where a "
                "running daemon picks them up"
            )
            return EXIT_OK
    raise MqttBridgeError(f"account {account.name}: the vendor still wants a code after three attempts")


def cmd_vehicles(args: argparse.Namespace) -> int:
    config = _load(args)
    for account, backend in _backends(config):
        with _closing(backend):
            vehicles = backend.list_vehicles()
        print(f"account {account.name} ({account.provider}): {len(vehicles)} vehicle(s)")
        for vehicle in vehicles:
            commands = " ".join(
                f"{name}({','.join(sorted(actions))})" for name, actions in sorted(vehicle.commands.items())
            )
            print(f"  {vehicle.vin}  {vehicle.brand} {vehicle.model}  {vehicle.drive_train.value}")
            print(f"    commands: {commands}")
            print(f"    data sets: {', '.join(sorted(vehicle.datasets)) or 'none'}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    config = _load(args)
    wanted = args.vehicle.strip()
    configured = [
        (account, vehicle)
        for account in config.accounts
        for vehicle in account.vehicles
        if wanted.lower() in (vehicle.vin.lower(), vehicle.name.lower())
    ]
    for account, backend in _backends(config):
        with _closing(backend):
            if configured and configured[0][0] is not account:
                continue
            if not configured and account.vehicles:
                continue  # only the listed vehicles of such an account are bridged
            target = configured[0][1].vin if configured else wanted
            for vehicle in backend.list_vehicles():
                if vehicle.vin.lower() == target.lower():
                    status = backend.read_status(vehicle)
                    print(json.dumps(status.to_state(), indent=2, sort_keys=True, ensure_ascii=False))
                    return EXIT_OK
            if configured:
                raise MqttBridgeError(
                    f"account {account.name} does not list the configured vehicle {target}; "
                    f"`mqttbridge vehicles -c {_config_path(args)}` shows what it has"
                )
    raise UsageError(
        f"no vehicle {wanted!r} in the configuration or the accounts' vehicle lists; "
        f"`mqttbridge vehicles -c {_config_path(args)}` lists them"
    )


def cmd_replay(args: argparse.Namespace) -> int:
    """A captured status answer through the provider's real parsing, printed as ``status`` prints it."""
    from mqttbridge.logsetup import setup_logging
    from mqttbridge.replay import ReplayUsageError, render, replay_file

    setup_logging(args.log_level or "WARNING")
    try:
        status = replay_file(args.provider.strip().lower(), Path(args.file), region=args.region, brand=args.brand)
    except ReplayUsageError as exc:
        raise UsageError(str(exc)) from None
    print(render(status))
    return EXIT_OK


def cmd_fingerprint(args: argparse.Namespace) -> int:
    """Every raw vendor answer of each account's cars, anonymised, into a folder for a bug report."""
    from mqttbridge.fingerprint import default_out, run

    config = _load(args)
    out = Path(args.out) if args.out else default_out()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out}: exists and is not an empty folder; give a new one")
    result = run(config, out)
    print(
        f"wrote {len(result.files)} file(s) to {out}; look through them, then attach the folder "
        f"(zipped) to the bug report (README.txt says how to replay each status)"
    )
    for account in result.failed:
        print(f"account {account['account']}: {account['error']}", file=sys.stderr)
    return EXIT_FAILURE if result.failed else EXIT_OK


class _closing:
    def __init__(self, backend):
        self.backend = backend

    def __enter__(self):
        return self.backend

    def __exit__(self, *_exc: object) -> None:
        self.backend.close()


# --- parser and entry point ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mqttbridge", description="Cars to MQTT, with Home Assistant discovery.")
    parser.add_argument("--version", action="version", version=f"mqttbridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("-c", "--config", help="configuration file (default: $MQTTBRIDGE_CONFIG)")
        p.add_argument(
            "--log-level",
            choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            type=str.upper,
            help="overrides log_level of the configuration",
        )
        return p

    p = with_config(sub.add_parser("run", help="the bridge daemon, in the foreground"))
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="simulator + bridge with demo cars, no configuration needed")
    p.add_argument(
        "--broker",
        default="localhost:1883",
        metavar="HOST:PORT",
        help="the MQTT broker to publish to (default localhost:1883)",
    )
    p.add_argument(
        "--base-topic", default="car", metavar="BASE", help="the topic every demo topic lies under (default car)"
    )
    p.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="how much to log on stderr (default INFO)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="leave the demo's retained topics and discovery configs on the broker at stop (default: they are deleted)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "purge",
        help="delete the retained topics under a base topic and the Home Assistant discovery configs that point at it",
    )
    p.add_argument("--broker", required=True, metavar="HOST:PORT", help="the MQTT broker to clean")
    p.add_argument(
        "--base-topic",
        required=True,
        metavar="BASE",
        help="every retained topic under BASE/ is deleted (the bridge's mqtt.base_topic)",
    )
    p.add_argument(
        "--discovery-prefix",
        default="homeassistant",
        metavar="PREFIX",
        help="where Home Assistant reads discovery configs (default homeassistant); only configs "
        "naming a topic under BASE are deleted",
    )
    p.add_argument("--force", action="store_true", help="purge even while BASE/bridge/state says a bridge is online")
    p.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="how much to log on stderr (default WARNING; DEBUG lists each deleted topic)",
    )
    p.set_defaults(func=cmd_purge)

    p = with_config(sub.add_parser("check-config", help="validate the configuration without any network"))
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("simulate", help="run the built-in vendor simulator (legacy BMW API)")
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
    p.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="how much to log on stderr (default INFO)",
    )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("health", help="exit 0 if the daemon runs and is connected to its broker, else 1 and why")
    p.add_argument("-c", "--config", help="take state_dir from this configuration (default: $MQTTBRIDGE_CONFIG)")
    p.add_argument("--state-dir", metavar="DIR", help="the daemon's state_dir (instead of -c)")
    p.add_argument(
        "--max-age",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds after which the heartbeat counts as stale (default 60)",
    )
    p.set_defaults(func=cmd_health)

    p = with_config(sub.add_parser("login", help="log in on this terminal when the vendor wants a one-time code"))
    p.add_argument("account", metavar="ACCOUNT", help="the account's name in the configuration")
    p.set_defaults(func=cmd_login)

    p = with_config(sub.add_parser("vehicles", help="log in and list each account's vehicles"))
    p.set_defaults(func=cmd_vehicles)

    p = with_config(sub.add_parser("status", help="one fetch of one vehicle, printed as <root>/state JSON"))
    p.add_argument("vehicle", metavar="VEHICLE", help="VIN or configured name")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "replay",
        help="no network: one captured vendor status answer through the provider's "
        "parsing, printed as `status` prints it",
    )
    p.add_argument("--provider", required=True, metavar="P", help="bmw_legacy or hyundai_kia")
    p.add_argument("--region", metavar="R", help="hyundai_kia: the account's region (europe, usa ...)")
    p.add_argument("--brand", metavar="B", help="hyundai_kia: the account's brand (kia, hyundai, genesis)")
    p.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="how much to log on stderr (default WARNING)",
    )
    p.add_argument("file", metavar="FILE", help="the answer, as the vendor sent it (or as fingerprint saved it)")
    p.set_defaults(func=cmd_replay)

    p = with_config(
        sub.add_parser("fingerprint", help="save every raw vendor answer of each car, anonymised, for a bug report")
    )
    p.add_argument("--out", metavar="DIR", help="the folder to create (default ./mqttbridge-fingerprint-<date>)")
    p.set_defaults(func=cmd_fingerprint)
    return parser


def _hint(exc: MqttBridgeError) -> str:
    if isinstance(exc, ConnectionFailed):
        return " (is the server reachable? check the account's region or base_url)"
    if isinstance(exc, AuthError):
        return " (check the account's username, password, api_key and api_secret)"
    if isinstance(exc, ApiGoneError):
        return " (use the simulator, or another provider)"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        source = getattr(args, "config", None) or os.environ.get("MQTTBRIDGE_CONFIG") or "configuration"
        print(f"{source}: invalid configuration", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"mqttbridge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MqttBridgeError as exc:
        from mqttbridge.logsetup import redact

        print(f"mqttbridge: error: {redact(str(exc))}{_hint(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
