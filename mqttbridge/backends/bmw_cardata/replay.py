"""Replaying a captured CarData answer through the backend's own mapping.

CarData has two kinds of status answers, and a bug report may bring either: a REST telematicData
answer (``{"telematicData": {...}}``, also accepted unwrapped, as people paste it) or one stream
message (``{"vin", "entityId", "topic", "timestamp", "data"}``). The shape tells which. The other
answers of the API (basicData, mappings, containers, errors) are named in the error, so a wrong file
is obvious at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mqttbridge.errors import BadResponseError
from mqttbridge.model import VehicleStatus
from mqttbridge.replay import ReplayError, describe

from .mapping import CarState, entries_from_stream, entries_from_telematic

REGION_WORDS: frozenset[str] | None = None
BRAND_WORDS: frozenset[str] | None = None
REQUIRED: tuple[str, ...] = ()

#: a REST answer carries no VIN
REPLAY_VIN = "REPLAY"
EXPECTED = 'a telematicData answer {"telematicData": {...}} or a stream message {"vin": ..., "data": {...}}'
#: a key of the API's other answers -> what that answer is
OTHER_ANSWERS: dict[str, str] = {
    "exveErrorId": "an error answer of the vendor",
    "modelName": "a basicData answer",
    "driveTrain": "a basicData answer",
    "containers": "the container list",
    "containerId": "a container",
    "passengerCar": "a tyre diagnosis answer",
    "access_token": "a token answer",
    "error": "an OAuth error answer",
    "device_code": "a device-code answer",
}


def _kind(body: Any, source: str) -> str:
    """``rest`` or ``stream``, or a ReplayError saying what the file is instead."""
    if isinstance(body, list):
        if body and all(isinstance(e, dict) and "mappingType" in e for e in body):
            raise ReplayError(f"{source}: the vehicle mappings answer, not {EXPECTED}")
        raise ReplayError(f"{source}: {describe(body)}, not {EXPECTED}")
    if not isinstance(body, dict):
        raise ReplayError(f"{source}: {describe(body)}, not {EXPECTED}")
    if "telematicData" in body:
        return "rest"
    if "data" in body and ("vin" in body or "topic" in body):
        return "stream"
    for key, what in OTHER_ANSWERS.items():
        if key in body:
            detail = f" ({body.get('exveErrorId')}: {body.get('exveErrorMsg')})" if key == "exveErrorId" else ""
            raise ReplayError(f"{source}: {what}{detail}, not {EXPECTED}")
    if body and all(str(k).startswith("vehicle.") and isinstance(v, dict) for k, v in body.items()):
        return "bare"
    raise ReplayError(f"{source}: {describe(body)}, not {EXPECTED}")


def replay_answer(
    body: Any, *, source: str, region: str | None, brand: str | None, fetched_at: datetime
) -> VehicleStatus:
    """A telematicData answer or a stream message -> the VehicleStatus the backend publishes for it
    (a fresh car: only what this one answer says)."""
    kind = _kind(body, source)
    try:
        if kind == "stream":
            vin, entries = entries_from_stream(body)
        else:
            vin = REPLAY_VIN
            entries = entries_from_telematic(body if kind == "rest" else {"telematicData": body})
    except BadResponseError as exc:
        raise ReplayError(f"{source}: {exc}") from None
    state = CarState()
    state.merge(entries)
    return state.status(vin, fetched_at)
