"""Replaying a captured legacy BMW ``/status`` answer through the backend's own parser.

The answer is ``{"vehicleStatus": {...}}``; the unwrapped ``vehicleStatus`` object is accepted too,
because that is what people paste from logs. Other answers of the same API (the vehicle list, a data
set, an error) are named in the error, so a wrong file is obvious at once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from mqttbridge.backends.bmw_legacy.api import SERVERS
from mqttbridge.backends.bmw_legacy.parse import COMMON, LIDS, parse_status
from mqttbridge.errors import BadResponseError
from mqttbridge.model import VehicleStatus
from mqttbridge.replay import ReplayError, describe

log = logging.getLogger(__name__)

#: accepted for symmetry with the account's keys; the region does not change how a status is read
REGION_WORDS: frozenset[str] | None = frozenset(SERVERS)
BRAND_WORDS: frozenset[str] | None = None
REQUIRED: tuple[str, ...] = ()

#: the root key of the API's other answers -> what that answer is (A5)
OTHER_ANSWERS: dict[str, str] = {
    "vehicles": "the vehicle list (GET /user/vehicles)",
    "lastTrip": "the last trip data set",
    "allTrips": "the all-trips data set",
    "weeklyPlanner": "the charging profile",
    "twoTimesTimer": "the charging profile",
    "destinations": "the destinations data set",
    "rangemap": "the range map data set",
    "executionStatus": "a remote service's execution status",
    "access_token": "a login answer",
}
#: keys only a ``vehicleStatus`` object has: an unwrapped one is recognised by them
STATUS_KEYS = (
    frozenset(COMMON)
    | frozenset(LIDS)
    | {"vin", "position", "updateReason", "internalDataTimeUTC", "cbsData", "checkControlMessages"}
)


def _error_text(body: dict[str, Any]) -> str:
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("description") or error.get("code") or "")[:160]
    described = body.get("error_description")
    return f"{error}: {described}"[:160] if described else str(error)[:160]


def _wrapped(body: Any, source: str) -> dict[str, Any]:
    """``body`` as the API's ``{"vehicleStatus": {...}}``, or a ReplayError saying what it is instead."""
    if not isinstance(body, dict):
        raise ReplayError(
            f'{source}: {describe(body)}, not a bmw_legacy status answer (expected {{"vehicleStatus": {{...}}}})'
        )
    if "vehicleStatus" in body:
        return body
    if "error" in body:
        raise ReplayError(f"{source}: an error answer of the vendor ({_error_text(body)}), not a status")
    for key, what in OTHER_ANSWERS.items():
        if key in body:
            raise ReplayError(f"{source}: {what}, not a status answer (GET /user/vehicles/VIN/status)")
    if STATUS_KEYS & set(body):
        return {"vehicleStatus": body}
    raise ReplayError(
        f'{source}: {describe(body)}, not a bmw_legacy status answer (expected {{"vehicleStatus": {{...}}}})'
    )


def replay_answer(
    body: Any, *, source: str, region: str | None, brand: str | None, fetched_at: datetime
) -> VehicleStatus:
    """A ``/status`` answer -> the VehicleStatus the backend's ``read_status`` returns for it."""
    wrapped = _wrapped(body, source)
    inner = wrapped.get("vehicleStatus")
    found = inner.get("vin") if isinstance(inner, dict) else None
    vin = found if isinstance(found, str) else "REPLAY"
    try:
        return parse_status(wrapped, vin, fetched_at)
    except BadResponseError as exc:
        raise ReplayError(f"{source}: {exc}") from None
