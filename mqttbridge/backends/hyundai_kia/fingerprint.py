"""Capturing a Hyundai/Kia/Genesis account's raw answers for ``mqttbridge fingerprint``.

The library makes its requests through one ``requests`` session per API object (``session``, or
``sessions`` in Canada), so a response hook on it sees every answer while the backend runs exactly
as ``mqttbridge status`` runs it: one cached read per car, never a forced one that would wake it.
The status answer is saved as ``status.json`` for ``replay``; what else the library read for the car
(park location, driving info, charge targets) is saved beside it under the request's path. Login
answers are not saved: they hold tokens and nothing about the car.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import requests

from mqttbridge.backends import create_backend
from mqttbridge.backends.base import RetryPolicy
from mqttbridge.fingerprint import Anonymiser, Capture, Exchange, Recorder, pick
from mqttbridge.statestore import StateStore

log = logging.getLogger(__name__)

POLICY = RetryPolicy(attempts=1)
#: the vehicle list of each region's API class (EU/AU/CN/IN/BR, CA, US Kia, US Hyundai)
LIST_PATH = r"(/spa/vehicles/?$|/vhcllst$|/ownr/gvl$|/enrollment/details/)"
#: the cached status of each region's API class (pre-CCS2 and CCS2, CA, US Kia, US Hyundai)
STATUS_PATH = r"(/status/latest$|/ccs2/carstatus/latest$|/lstvhclsts$|/cmm/gvi$|/rcs/rvs/vehicleStatus$)"
#: requests of a login or token renewal, never saved even when they happen during a car's read
AUTH_PATH = re.compile(r"auth|token|login|signin|session|oauth|otp|/pin|/user/|register|device", re.IGNORECASE)
#: the Token fields that are credentials
TOKEN_FIELDS = ("access_token", "refresh_token", "control_token", "device_id", "stamp", "password", "pin")


def _sessions(api: Any) -> list[requests.Session]:
    return [
        s for s in (getattr(api, "session", None), getattr(api, "sessions", None)) if isinstance(s, requests.Session)
    ]


def _token_secrets(backend: Any, anonymiser: Anonymiser) -> None:
    token = getattr(backend.manager, "token", None)
    for name in TOKEN_FIELDS:
        anonymiser.add_secret(getattr(token, name, None))


def _name(exchange: Exchange, ids: tuple[str, ...]) -> str:
    """``location_park`` for ``.../vehicles/<id>/location/park``; the last two path parts otherwise."""
    parts = [p for p in exchange.path.split("/") if p]
    for vehicle_id in ids:
        if vehicle_id in parts:
            after = parts[parts.index(vehicle_id) + 1 :]
            if after:
                return "_".join(after)
    return "_".join(parts[-2:]) or "answer"


def capture(account: Any, store: StateStore, anonymiser: Anonymiser) -> Iterator[Capture | dict[str, Any]]:
    """The vehicle list, then per car its cached status answer and whatever else the read asked."""
    backend = create_backend(account, store, policy=POLICY)
    from mqttbridge.backends.hyundai_kia.backend import HyundaiKiaBackend  # loaded by create_backend already

    assert isinstance(backend, HyundaiKiaBackend)  # the hyundai_kia provider's backend class
    recorder = Recorder()
    for session in _sessions(backend.manager.api):
        recorder.attach(session)
    replay = {"region": str(account.region).lower(), "brand": str(account.brand).lower()}
    try:
        with recorder.window() as got:
            vehicles = backend.list_vehicles()
        _token_secrets(backend, anonymiser)
        listing = pick(got, LIST_PATH)
        for vehicle in vehicles:
            anonymiser.alias("vin", vehicle.vin)
            vehicle_id = vehicle.details.get("vehicle_id")
            if isinstance(vehicle_id, str) and vehicle_id != vehicle.vin:
                anonymiser.alias("vehicle-id", vehicle_id)
        if listing is not None:
            yield Capture((account.name, "vehicles"), listing, "vehicles")
        for vehicle in vehicles:
            vin = vehicle.vin
            details = vehicle.details
            yield {
                "vin": vin,
                "model": vehicle.model,
                "drive_train": vehicle.drive_train.value,
                "engine_type": details.get("engine_type"),
                "year": details.get("year"),
                "ccu_ccs2_protocol_support": details.get("ccu_ccs2_protocol_support"),
            }
            got = recorder.read(f"{account.name}: status of {vin}", backend.read_status, vehicle)
            status = pick(got, STATUS_PATH)
            if status is not None:
                yield Capture((account.name, vin, "status"), status, "status", vehicle=vin, replay=replay)
            ids = tuple(str(i) for i in (details.get("vehicle_id"), vin) if i)
            for other in got:
                if other is status or AUTH_PATH.search(other.path) or re.search(LIST_PATH, other.path):
                    continue
                yield Capture((account.name, vin, _name(other, ids)), other, "other", vehicle=vin)
    finally:
        _token_secrets(backend, anonymiser)
        backend.close()
