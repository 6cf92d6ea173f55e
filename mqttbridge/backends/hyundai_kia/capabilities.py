"""Which of the library's calls work for one car, asked of the library itself.

Why ask instead of keeping a table per region: what works differs by region, brand, protocol and
library release (Brazil raises ``NotImplementedError`` for charging, the EU CCI region sends only the
commands verified per brand and none to pre-CCS2 cars, Kia CCI has no forced read...), and a table
would be wrong for the next release. So each call is tried once on a throwaway copy of the library's
API with every HTTP request stopped before it leaves (``metering.probing``): a call that gets as far
as sending a request is offered; one that raises ``NotImplementedError`` or the library's "not
supported" (``UnsupportedControlError``) first is not. Nothing reaches the vendor, and the answer is
kept per region, brand, protocol and drive train.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from hyundai_kia_connect_api import ClimateRequestOptions, Token, VehicleManager
from hyundai_kia_connect_api.exceptions import UnsupportedControlError

from mqttbridge.backends.hyundai_kia.metering import ProbeReached, probing

log = logging.getLogger(__name__)

#: the manager methods probed
PROBED = (
    "lock",
    "unlock",
    "start_climate",
    "stop_climate",
    "start_charge",
    "stop_charge",
    "set_charge_limits",
    "force_refresh_vehicle_state",
    "check_action_status",
)


def probe_arguments(method: str) -> tuple[Any, ...]:
    """The arguments after the vehicle id; new objects each time (the library edits the options it gets)."""
    if method == "start_climate":
        return (ClimateRequestOptions(set_temp=21.0, duration=5, defrost=False, climate=True, heating=0),)
    if method == "set_charge_limits":
        return (80, 90)
    if method == "check_action_status":
        # shaped like the EU CCI region's action ids ("gspa:<id>"), which it alone checks; opaque elsewhere
        return ("gspa:0123abcd",)
    return ()


#: what the library raises before sending anything when a call does not work here
NOT_OFFERED: tuple[type[BaseException], ...] = (NotImplementedError, UnsupportedControlError)

_cache: dict[tuple[Any, ...], bool] = {}
_cache_lock = threading.Lock()


#: every string of the probe's token: hexadecimal like a device id (the EU CCI stamp parses it)
_PROBE_TEXT = "0123abcd-0000-4000-8000-00000000abcd"


def _probe_token() -> Token:
    """A token with every string field set, valid for days: no call stops for want of one."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Token):
        if "str" in str(field.type):
            values[field.name] = _PROBE_TEXT
    values.update(
        pin="0000",
        valid_until=datetime.now(UTC) + timedelta(days=7),
        control_token_expiry=(datetime.now(UTC) + timedelta(days=7)).timestamp(),
    )
    known = {field.name for field in dataclasses.fields(Token)}
    return Token(**{name: value for name, value in values.items() if name in known})


def _key(region: int, brand: int, car: Any, method: str) -> tuple[Any, ...]:
    engine = getattr(car, "engine_type", None)
    return (
        region,
        brand,
        method,
        getattr(car, "ccu_ccs2_protocol_support", None),
        getattr(engine, "value", engine),
        getattr(car, "generation", None),
    )


def builds_request(region: int, brand: int, car: Any, method: str) -> bool:
    """Whether the library, for this region, brand and car, gets as far as sending ``method``'s request."""
    key = _key(region, brand, car, method)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        offered = _probe(region, brand, car, method)
        _cache[key] = offered
    return offered


def _probe(region: int, brand: int, car: Any, method: str) -> bool:
    try:
        manager = VehicleManager(region, brand, "probe@example.invalid", "probe", "0000", token=_probe_token())
    except Exception as exc:  # a region or brand the library refuses: nothing works
        log.debug("probe of %s: no manager for region %s brand %s: %s", method, region, brand, exc)
        return False
    twin = copy.copy(car)
    manager.vehicles = {twin.id: twin}
    outcome = "no request"
    with probing() as probe:
        try:
            getattr(manager, method)(twin.id, *probe_arguments(method))
        except ProbeReached:
            pass
        except NOT_OFFERED as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # anything else before a request: the call cannot be made either
            outcome = f"{type(exc).__name__}"
    offered = probe.reached is not None
    verdict = f"offered ({probe.reached.split(' ', 1)[0]} request)" if probe.reached else f"not offered ({outcome})"
    log.debug("probe of %s (%s) in region %s, brand %s: %s", method, type(manager.api).__name__, region, brand, verdict)
    return offered


def clear_cache() -> None:
    """Forget the answers (tests that change the library's behaviour)."""
    with _cache_lock:
        _cache.clear()
