"""The commands that talk to a vendor with an account of the configuration: ``login``, ``vehicles``, ``status``,
``fingerprint``; and ``replay``, which runs a captured vendor answer through the same parsing without the network.

They log in once, do one thing, print it and exit; none of them runs the bridge.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

from mqttbridge.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    Subparsers,
    UsageError,
    _config_path,
    _load,
    with_config,
    with_log_level,
)
from mqttbridge.errors import ActionRequiredError, MqttBridgeError

#: ``mqttbridge login`` asks the backend this often whether a device code was approved (it polls the vendor)
DEVICE_CODE_CHECK_S = 5.0


def _backends(config):
    from mqttbridge.backends import create_backend
    from mqttbridge.backends.base import RetryPolicy
    from mqttbridge.statestore import StateStore

    store = StateStore(config.state_dir)
    interactive = RetryPolicy(attempts=3, backoff_max=5.0, max_retry_after=10.0)
    for account in config.accounts:
        yield account, create_backend(account, store, policy=interactive)


class _TerminalLogin:
    """``LoginListener`` of ``mqttbridge login``: a device code that expired is replaced by the backend on its
    own; the terminal shows the new one, and wakes as soon as the user approved."""

    def __init__(self, account: str):
        self.account = account
        self.completed = threading.Event()
        self.shown: dict[str, object] | None = None

    def show(self, exc: ActionRequiredError) -> None:
        if exc.details == self.shown:
            return
        self.shown = dict(exc.details)
        uri, code = exc.details.get("verification_uri"), exc.details.get("user_code")
        expires = exc.details.get("expires_at")
        said = str(exc)  # a backend's message may already name the account
        print(said if said.startswith(f"{self.account}: ") else f"account {self.account}: {said}", flush=True)
        print(f"  open {uri} and enter the code {code}" + (f" (valid until {expires})" if expires else ""), flush=True)
        complete = exc.details.get("verification_uri_complete")
        if complete:
            print(f"  or open {complete}", flush=True)

    def login_required(self, exc: ActionRequiredError) -> None:
        self.show(exc)

    def login_completed(self) -> None:
        self.completed.set()


def cmd_login(args: argparse.Namespace) -> int:
    """An interactive login for what a daemon cannot do alone: a one-time code the vendor sent (CONTRACT §7),
    or a device code to approve at the vendor's site (§9).

    The tokens land in ``state_dir``, where a running daemon finds them at its next login attempt.
    """
    from mqttbridge.backends import create_backend
    from mqttbridge.backends.base import RetryPolicy
    from mqttbridge.statestore import StateStore

    config = _load(args)
    account = next((a for a in config.accounts if a.name == args.account), None)
    if account is None:
        names = ", ".join(a.name for a in config.accounts) or "none"
        raise UsageError(f"no account {args.account!r} in the configuration; accounts: {names}")
    backend = create_backend(
        account, StateStore(config.state_dir), policy=RetryPolicy(attempts=3, backoff_max=5.0, max_retry_after=10.0)
    )
    terminal = _TerminalLogin(account.name)
    backend.login_listener = terminal
    codes = 0
    with _closing(backend):
        while True:
            try:
                backend.login()
            except ActionRequiredError as exc:
                if exc.kind == "device_code":  # the backend polls the vendor; we wait for it, or for a new code
                    terminal.show(exc)
                    terminal.completed.wait(DEVICE_CODE_CHECK_S)
                    continue
                if exc.kind != "otp" or not backend.takes_codes():
                    raise MqttBridgeError(f"account {account.name}: {exc}") from None
                codes += 1
                if codes > 3:
                    raise MqttBridgeError(
                        f"account {account.name}: the vendor still wants a code after three attempts"
                    ) from None
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


# --- their sub-commands ----------------------------------------------------------------------


def add_login(sub: Subparsers) -> None:
    p = with_config(
        sub.add_parser(
            "login", help="log in on this terminal: approve a device code (BMW CarData) or type a one-time code"
        )
    )
    p.add_argument("account", metavar="ACCOUNT", help="the account's name in the configuration")
    p.set_defaults(func=cmd_login)


def add_vehicles(sub: Subparsers) -> None:
    p = with_config(sub.add_parser("vehicles", help="log in and list each account's vehicles"))
    p.set_defaults(func=cmd_vehicles)


def add_status(sub: Subparsers) -> None:
    p = with_config(sub.add_parser("status", help="one fetch of one vehicle, printed as <root>/state JSON"))
    p.add_argument("vehicle", metavar="VEHICLE", help="VIN or configured name")
    p.set_defaults(func=cmd_status)


def add_replay(sub: Subparsers) -> None:
    p = sub.add_parser(
        "replay",
        help="no network: one captured vendor status answer through the provider's "
        "parsing, printed as `status` prints it",
    )
    p.add_argument("--provider", required=True, metavar="P", help="bmw_legacy or hyundai_kia")
    p.add_argument("--region", metavar="R", help="hyundai_kia: the account's region (europe, usa ...)")
    p.add_argument("--brand", metavar="B", help="hyundai_kia: the account's brand (kia, hyundai, genesis)")
    with_log_level(p, "how much to log on stderr (default WARNING)")
    p.add_argument("file", metavar="FILE", help="the answer, as the vendor sent it (or as fingerprint saved it)")
    p.set_defaults(func=cmd_replay)


def add_fingerprint(sub: Subparsers) -> None:
    p = with_config(
        sub.add_parser("fingerprint", help="save every raw vendor answer of each car, anonymised, for a bug report")
    )
    p.add_argument("--out", metavar="DIR", help="the folder to create (default ./mqttbridge-fingerprint-<date>)")
    p.set_defaults(func=cmd_fingerprint)
