"""Capturing a CarData account's raw answers for ``mqttbridge fingerprint``.

The backend takes a recording session, so its own requests, container handling and parsing run unchanged.
Per account the mappings; per car its basic data (fetched again, not from ``state_dir``) and one
``telematicData`` answer, which ``mqttbridge replay --provider bmw_cardata`` reads. Login answers hold tokens
and are not written. Each capture costs REST calls of the day's 50: 1 + 2 per car (+ 2 when the container
must be found or made).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import requests

from mqttbridge.backends.base import RetryPolicy
from mqttbridge.errors import ActionRequiredError, MqttBridgeError
from mqttbridge.fingerprint import Anonymiser, Capture, Recorder, pick
from mqttbridge.statestore import StateStore

from .backend import CarDataBackend

log = logging.getLogger(__name__)

#: a capture run is interactive, and every retry costs quota
POLICY = RetryPolicy(attempts=2, backoff_max=5.0, max_retry_after=10.0)


def capture(account: Any, store: StateStore, anonymiser: Anonymiser) -> Iterator[Capture | dict[str, Any]]:
    recorder = Recorder()
    session = recorder.attach(requests.Session())
    backend = CarDataBackend(account, store, session=session, policy=POLICY)
    try:
        try:
            with recorder.window() as got:
                vehicles = backend.list_vehicles()
        except ActionRequiredError as exc:
            raise MqttBridgeError(
                f"{account.name}: not logged in to BMW CarData; run `mqttbridge login -c CONFIG {account.name}` "
                f"first ({exc})"
            ) from None
        tokens = backend.auth.current()
        if tokens is not None:
            anonymiser.alias("account", tokens.gcid)
            for secret in (tokens.access_token, tokens.refresh_token, tokens.id_token):
                anonymiser.add_secret(secret)
        for vehicle in vehicles:  # aliases numbered in the list's order
            anonymiser.alias("vin", vehicle.vin)
        mappings = pick(got, r"/customers/vehicles/mappings$")
        if mappings is not None:
            yield Capture((account.name, "mappings"), mappings, "mappings")
        for vehicle in vehicles:
            vin = vehicle.vin
            yield {"vin": vin, "model": vehicle.model, "drive_train": vehicle.drive_train.value}
            got = recorder.read(f"{account.name}: basic data of {vin}", backend.rest.basic_data, vin, cached=False)
            basic = pick(got, r"/basicData$")
            if basic is not None:
                yield Capture((account.name, vin, "basic_data"), basic, "basic_data", vehicle=vin)
            got = recorder.read(f"{account.name}: telematic data of {vin}", backend.read_status, vehicle)
            telematic = pick(got, r"/telematicData$")
            if telematic is not None:
                yield Capture((account.name, vin, "telematic_data"), telematic, "status", vehicle=vin, replay={})
    finally:
        backend.close()
