"""``mqttbridge fingerprint``: every raw vendor answer for each car, anonymised, for a bug report.

A wrong or missing value is usually a vendor answer nobody has seen before. This logs in to each
account (as ``mqttbridge vehicles`` does), reads each car once (as ``mqttbridge status`` does, no
wake-up, no command), keeps the HTTP bodies the vendor sent, and writes them to a folder that a user
can attach to an issue and a maintainer can feed to ``mqttbridge replay``.

What may identify the owner is replaced the same way in every file, so the files still fit together:
VINs by a fake VIN of the same shape (``WBY`` + ``FPRNT`` + a counter), positions by one fixed place,
names, number plates, e-mail addresses, account and vehicle ids and addresses by ``<kind>-<n>``,
tokens by ``token-<n>``. Every credential of the configuration and every token seen on the wire is
then masked wherever it still appears. Only answers about cars are written: login answers hold
tokens, and are left out.

Each provider brings ``mqttbridge.backends.<provider>.fingerprint.capture(account, store, session)``
which reads through a ``Recorder`` and yields ``Capture`` items.

Where things are: ``anonymise`` (the ``Anonymiser`` and what it replaces), ``recorder`` (``Recorder``,
``Exchange``, ``pick``, ``Capture``: what a provider's capture uses), ``writer`` (the files, the index and
the README). This package runs it all (``run``) and re-exports those names, so ``mqttbridge.fingerprint``
is the one import path.
"""

from __future__ import annotations

import importlib
import logging
from datetime import date
from pathlib import Path
from typing import Any

from mqttbridge.errors import MqttBridgeError
from mqttbridge.fingerprint.anonymise import (
    EMAIL,
    FIXED_LATITUDE,
    FIXED_LONGITUDE,
    KEY_KINDS,
    MASK,
    VIN,
    Anonymiser,
)
from mqttbridge.fingerprint.recorder import SECRET_HEADERS, Capture, Exchange, Recorder, pick
from mqttbridge.fingerprint.writer import Result, Writer, write_index

__all__ = [
    "EMAIL",
    "FIXED_LATITUDE",
    "FIXED_LONGITUDE",
    "KEY_KINDS",
    "MASK",
    "SECRET_HEADERS",
    "VIN",
    "Anonymiser",
    "Capture",
    "Exchange",
    "Recorder",
    "Result",
    "Writer",
    "default_out",
    "pick",
    "run",
]

log = logging.getLogger(__name__)


def default_out(now: date | None = None, cwd: Path | None = None) -> Path:
    """``./mqttbridge-fingerprint-<date>``, with ``-2``, ``-3`` ... when that exists already."""
    base = (cwd or Path.cwd()) / f"mqttbridge-fingerprint-{(now or date.today()).isoformat()}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _capturer(provider: str) -> Any:
    """The provider's capture module (``ProviderSpec.fingerprint``)."""
    from mqttbridge.providers import available

    spec = available().get(provider)
    module_name = spec.fingerprint if spec is not None else None
    if module_name is None:
        raise MqttBridgeError(f"fingerprint cannot capture {provider} accounts yet")
    return importlib.import_module(module_name)


def _account_secrets(account: Any) -> list[str]:
    names = ("password", "api_key", "api_secret", "pin", "unlock_code", "security_answer", "client_id", "username")
    found = [getattr(account, name, None) for name in names]
    found.extend(getattr(vehicle, "unlock_code", None) for vehicle in getattr(account, "vehicles", ()) or ())
    return [value for value in found if isinstance(value, str) and value]


def run(config: Any, out: Path, *, store: Any = None) -> Result:
    """Capture every account of ``config`` into ``out`` (created); one account's failure spares the others."""
    from mqttbridge.statestore import StateStore

    secrets = list(config.secrets()) if hasattr(config, "secrets") else []
    for account in config.accounts:
        secrets.extend(_account_secrets(account))
    anonymiser = Anonymiser(secrets)
    for account in config.accounts:  # the login name is an e-mail address or an account id: aliased
        if isinstance(account.username, str) and account.username:
            anonymiser.alias("email" if "@" in account.username else "account", account.username)
    out.mkdir(parents=True, exist_ok=True)
    writer = Writer(out, anonymiser)
    result = Result(out=out)
    store = store or StateStore(config.state_dir)
    for account in config.accounts:
        summary: dict[str, Any] = {
            "account": account.name,
            "provider": account.provider,
            "region": getattr(account, "region", None),
            "brand": getattr(account, "brand", None),
        }
        result.accounts.append(summary)
        captures: list[Capture] = []
        try:
            module = _capturer(account.provider)
            for item in module.capture(account, store, anonymiser):
                if isinstance(item, Capture):
                    captures.append(item)
                elif isinstance(item, dict):  # what the provider found out about a car
                    summary.setdefault("vehicles", []).append(anonymiser.clean(item))
        except MqttBridgeError as exc:
            from mqttbridge.logsetup import redact

            summary["error"] = anonymiser.text(redact(str(exc)))
            log.error("%s: %s", account.name, summary["error"])
        for capture in captures:  # whatever was read before a failure is still worth having
            anonymiser.scan(capture.exchange.json())
            for secret in capture.exchange.secrets:
                anonymiser.add_secret(secret)
        for capture in captures:
            result.files.append(writer.write(capture, account))
    write_index(result, anonymiser)
    return result
