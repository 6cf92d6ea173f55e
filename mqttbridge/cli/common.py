"""What every command shares: the exit codes, a usage error, and how a command finds and loads its configuration.

Its own module so that the command modules (``daemon``, ``accounts``, ``tools``) can import it without importing the
package's ``__init__``, which imports them to assemble the parser.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from mqttbridge.errors import MqttBridgeError
from mqttbridge.logsetup import LEVELS

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

#: what ``build_parser`` hands each command module to add its sub-command to
Subparsers = argparse._SubParsersAction


class UsageError(MqttBridgeError):
    """Bad usage: exit code 2."""


def _config_path(args: argparse.Namespace) -> Path:
    path = args.config or os.environ.get("MQTTBRIDGE_CONFIG")
    if not path:
        raise UsageError("no configuration file: give -c FILE or set MQTTBRIDGE_CONFIG")
    return Path(path)


def _load(args: argparse.Namespace, *, log_level: str | None = None):
    """The configuration, its secrets masked in every output; ``log_level``: the command's own default, instead of
    the configuration's (``--log-level`` beats both)."""
    from mqttbridge.config import load_config
    from mqttbridge.logsetup import register_secret, setup_logging

    config = load_config(_config_path(args))
    for secret in config.secrets():
        register_secret(secret)
    setup_logging(args.log_level or log_level or config.log_level)
    for warning in config.warnings:
        log.warning("%s", warning)
    return config


def _broker(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, "1883"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--broker must be HOST:PORT (got {text!r})")
    return host, int(port)


def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("-c", "--config", help="configuration file (default: $MQTTBRIDGE_CONFIG)")
    return with_log_level(p, "overrides log_level of the configuration")


def with_log_level(p: argparse.ArgumentParser, text: str) -> argparse.ArgumentParser:
    """``--log-level``, the same levels as the configuration's ``log_level``, in any case."""
    p.add_argument("--log-level", choices=list(LEVELS), type=str.upper, help=text)
    return p
