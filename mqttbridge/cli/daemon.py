"""The commands that keep running: ``run``, ``addon`` and ``demo`` serve until a signal, ``health`` checks on them.

Serving (the service monitor, the heartbeat, a clean stop on SIGTERM/SIGINT) is written once here for the three
daemons; ``simulate`` reuses the signal handling.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from mqttbridge.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    Subparsers,
    UsageError,
    _broker,
    _config_path,
    _load,
    with_config,
    with_log_level,
)

log = logging.getLogger(__name__)


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


def cmd_addon(args: argparse.Namespace) -> int:
    """The Home Assistant add-on's process (CONTRACT §11): its options and the Supervisor's broker, then ``run``."""
    from mqttbridge.addon import run_addon

    return run_addon(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from mqttbridge.demo import DemoChoiceError, demo_bridge, finish_demo

    host, port = _broker(args.broker)
    try:
        bridge, lines = demo_bridge(
            host, port, args.base_topic, log_level=args.log_level or "INFO", provider_names=args.provider
        )
    except DemoChoiceError as exc:  # the providers are checked first, before anything starts
        raise UsageError(f"--provider: {exc}") from None
    for line in lines:
        print(line, flush=True)
    # the demo's own state is a throw-away temp folder; its heartbeat goes where `health` looks
    # (in the container image, STATE_DIRECTORY=/data)
    try:
        return _serve(bridge, Path(os.environ.get("STATE_DIRECTORY", "").split(":")[0] or bridge.config.state_dir))
    finally:  # after the monitor's last heartbeat, which lands in that folder
        print(finish_demo(bridge, keep=args.keep), flush=True)


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


# --- their sub-commands ----------------------------------------------------------------------


def add_run(sub: Subparsers) -> None:
    p = with_config(sub.add_parser("run", help="the bridge daemon, in the foreground"))
    p.set_defaults(func=cmd_run)


def add_addon(sub: Subparsers) -> None:
    p = sub.add_parser("addon", help="the Home Assistant add-on: its options, the Supervisor's broker, then run")
    p.add_argument("--options", metavar="FILE", help="the add-on's options (default /data/options.json)")
    p.add_argument("--state-dir", metavar="DIR", help="tokens, budgets and the heartbeat (default /data)")
    p.add_argument("--print-config", action="store_true", help="print the configuration, secrets masked, and exit")
    p.set_defaults(func=cmd_addon)


def add_demo(sub: Subparsers) -> None:
    p = sub.add_parser("demo", help="simulator + bridge with demo cars, no configuration needed")
    p.add_argument(
        "--provider",
        action="append",
        metavar="NAME",
        help="show this provider's demo cars (repeatable; default: each installed provider whose demo is on by "
        "default); e.g. --provider bmw_legacy --provider bmw_cardata",
    )
    p.add_argument(
        "--broker",
        default="localhost:1883",
        metavar="HOST:PORT",
        help="the MQTT broker to publish to (default localhost:1883)",
    )
    p.add_argument(
        "--base-topic", default="car", metavar="BASE", help="the topic every demo topic lies under (default car)"
    )
    with_log_level(p, "how much to log on stderr (default INFO)")
    p.add_argument(
        "--keep",
        action="store_true",
        help="leave the demo's retained topics and discovery configs on the broker at stop (default: they are deleted)",
    )
    p.set_defaults(func=cmd_demo)


def add_health(sub: Subparsers) -> None:
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
