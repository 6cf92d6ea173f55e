"""The ``mqttbridge`` command line (CONTRACT section 1).

Exit codes: 0 success, 2 bad usage or invalid configuration, 1 any other failure. A user's mistake
gets a message that says what was wrong and what to do, never a traceback.

The commands live in the package's modules, each with its sub-command's options: ``daemon`` (run, addon, demo,
health), ``accounts`` (login, vehicles, status, replay, fingerprint: an account's vendor), ``tools`` (check-config,
simulate, purge); ``common`` holds what they share. This module assembles the parser and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mqttbridge import __version__
from mqttbridge.cli import accounts, daemon, tools
from mqttbridge.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError
from mqttbridge.errors import ApiGoneError, AuthError, ConfigError, ConnectionFailed, MqttBridgeError

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "UsageError", "build_parser", "main"]

#: the sub-commands in the order ``--help`` lists them
COMMANDS = (
    daemon.add_run,
    daemon.add_addon,
    daemon.add_demo,
    tools.add_purge,
    tools.add_check_config,
    tools.add_simulate,
    daemon.add_health,
    accounts.add_login,
    accounts.add_vehicles,
    accounts.add_status,
    accounts.add_replay,
    accounts.add_fingerprint,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mqttbridge", description="Cars to MQTT, with Home Assistant discovery.")
    parser.add_argument("--version", action="version", version=f"mqttbridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
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
