"""``mqttbridge replay``: one captured vendor status answer through a provider's real parsing.

A bug report about a wrong or missing value needs the vendor's own answer and what the bridge made
of it. Replay reads the answer from a file (a capture, or what ``mqttbridge fingerprint`` saved) and
prints exactly what ``mqttbridge status`` would print for it, without any network, so a maintainer
can reproduce the report and a test can pin it.

Each provider brings its own reader, ``mqttbridge.backends.<provider>.replay``, with

* ``REGION_WORDS`` / ``BRAND_WORDS``: the ``--region`` / ``--brand`` words it accepts, ``None`` when it
  takes none;
* ``check_options(region=, brand=)`` (optional): refuses combinations the provider does not serve;
* ``REQUIRED``: which of ``region`` and ``brand`` it needs;
* ``replay_answer(body, *, source, region, brand, fetched_at) -> VehicleStatus``, raising
  ``ReplayError`` for an answer it cannot read.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from mqttbridge.errors import MqttBridgeError
from mqttbridge.model import VehicleStatus

log = logging.getLogger(__name__)

#: the block the shared fixtures' maintainers added to each capture; a vendor never sends it
FIXTURE_META = "_fixture_meta"


def _readers() -> dict[str, str]:
    """provider -> its reader module (``ProviderSpec.replay``); a provider without one cannot be replayed."""
    from mqttbridge.providers import available

    return {name: spec.replay for name, spec in available().items() if spec.replay}


class ReplayError(MqttBridgeError):
    """The file cannot be read as the provider's status answer (exit 1); the message names the file."""


class ReplayUsageError(MqttBridgeError):
    """The command line asks for something replay does not know (exit 2)."""


def read_answer(path: Path) -> Any:
    """The JSON in ``path``, without the fixtures' ``_fixture_meta``; every way it can fail is one line."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ReplayError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise ReplayError(f"{source}: a folder, not a file (give the status answer's file in it)") from None
    except OSError as exc:
        raise ReplayError(f"{source}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not raw.strip():
        raise ReplayError(f"{source}: the file is empty; a vendor status answer (JSON) was expected")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReplayError(f"{source}: not UTF-8 text (byte {exc.start}); a JSON answer was expected") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReplayError(f"{source}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if isinstance(body, dict):
        body.pop(FIXTURE_META, None)
    return body


def describe(value: Any) -> str:
    """What a JSON value is, for a message: ``a JSON list``, ``an object with keys a, b``."""
    if isinstance(value, dict):
        keys = ", ".join(sorted(map(str, value))[:6])
        more = ", ..." if len(value) > 6 else ""
        return f"an object with the keys {keys}{more}" if value else "an empty object"
    kind = {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "null")
    return f"a JSON {kind}"


def reader(provider: str) -> ModuleType:
    """The provider's reader module; an unknown provider is a usage error, a missing library is not."""
    readers = _readers()
    module_name = readers.get(provider)
    if module_name is None:
        known = ", ".join(sorted(readers))
        raise ReplayUsageError(f"unknown provider {provider!r}; replay knows: {known}")
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ReplayUsageError(f"the {provider} provider has no replay yet") from None
        raise MqttBridgeError(
            f"replaying {provider} answers needs a library that is not installed ({exc.name}); "
            f"install it with: pip install 'mqttbridge[{provider.split('_')[0]}]'"
        ) from None


def _check_option(
    provider: str, option: str, value: str | None, allowed: Collection[str] | None, required: bool
) -> str | None:
    if value is None:
        if required:
            words = " | ".join(sorted(allowed or ()))
            raise ReplayUsageError(f"--provider {provider} needs --{option} ({words})")
        return None
    word = value.strip().lower()
    if allowed is None:
        raise ReplayUsageError(f"--provider {provider} takes no --{option}")
    if word not in allowed:
        raise ReplayUsageError(f"unknown {option} {value!r} for {provider}; known: {', '.join(sorted(allowed))}")
    return word


def replay_file(
    provider: str,
    path: Path,
    *,
    region: str | None = None,
    brand: str | None = None,
    fetched_at: datetime | None = None,
) -> VehicleStatus:
    """``path``'s answer through ``provider``'s parsing, as ``mqttbridge status`` would have read it."""
    module = reader(provider)
    required = getattr(module, "REQUIRED", ())
    region = _check_option(provider, "region", region, getattr(module, "REGION_WORDS", None), "region" in required)
    brand = _check_option(provider, "brand", brand, getattr(module, "BRAND_WORDS", None), "brand" in required)
    check = getattr(module, "check_options", None)
    if check is not None:
        check(region=region, brand=brand)  # combinations the provider does not serve
    body = read_answer(path)
    log.debug("replaying %s as a %s answer (region %s, brand %s)", path, provider, region, brand)
    status: VehicleStatus = module.replay_answer(
        body, source=str(path), region=region, brand=brand, fetched_at=fetched_at or datetime.now(UTC)
    )
    return status


def render(status: VehicleStatus) -> str:
    """The JSON ``mqttbridge status`` prints: the ``<root>/state`` object, indented, keys sorted."""
    return json.dumps(status.to_state(), indent=2, sort_keys=True, ensure_ascii=False)
