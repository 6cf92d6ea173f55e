"""Capturing a legacy BMW account's raw answers for ``mqttbridge fingerprint``.

The backend takes its HTTP session from outside, so a recording one is handed in: the backend's own
requests, retries and parsing run unchanged. Each car's folder has the layout of
``shared/fixtures/bmw_legacy/<model>/`` (status.json, vehicles.json, last_trip.json ...), so
``mqttbridge simulate --vehicle-dir`` serves a captured car as it is and ``replay`` reads its status.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import requests

from mqttbridge.backends import create_backend
from mqttbridge.backends.base import RetryPolicy
from mqttbridge.backends.bmw_legacy.parse import DATASETS
from mqttbridge.fingerprint import Anonymiser, Capture, Recorder, pick
from mqttbridge.statestore import StateStore

log = logging.getLogger(__name__)

#: a capture run is interactive: a dead server is reported soon, not retried for minutes
POLICY = RetryPolicy(attempts=3, backoff_max=5.0, max_retry_after=10.0)
#: data set -> its file, named as the simulator's --vehicle-dir reads it
FILES: dict[str, str] = {
    "last_trip": "last_trip",
    "all_trips": "all_trips",
    "charging_profile": "charging_profile",
    "destinations": "last_destinations",
    "range_map": "range_maps",
}


def capture(account: Any, store: StateStore, anonymiser: Anonymiser) -> Iterator[Capture | dict[str, Any]]:
    """The vehicle list, then per car its status and every data set it offers."""
    recorder = Recorder()
    session = recorder.attach(requests.Session())
    backend = create_backend(account, store, policy=POLICY, session=session)
    try:
        with recorder.window() as got:
            vehicles = backend.list_vehicles()
        listing = pick(got, r"/user/vehicles/?$")
        for vehicle in vehicles:  # aliases numbered in the list's order
            anonymiser.alias("vin", vehicle.vin)
        if listing is not None:
            yield Capture((account.name, "vehicles"), listing, "vehicles")
        for vehicle in vehicles:
            vin = vehicle.vin
            yield {
                "vin": vin,
                "model": vehicle.model,
                "drive_train": vehicle.drive_train.value,
                "data_sets": sorted(vehicle.datasets),
            }
            if listing is not None:  # beside the status too: the simulator picks the car's entry from it
                yield Capture((account.name, vin, "vehicles"), listing, "vehicles", vehicle=vin)
            got = recorder.read(f"{account.name}: status of {vin}", backend.read_status, vehicle)
            status = pick(got, r"/status$")
            if status is not None:
                yield Capture((account.name, vin, "status"), status, "status", vehicle=vin, replay={})
            for name in sorted(vehicle.datasets):
                got = recorder.read(f"{account.name}: {name} of {vin}", backend.read_dataset, vehicle, name)
                answer = pick(got, rf"/{DATASETS[name].path}$")
                if answer is not None:
                    yield Capture((account.name, vin, FILES[name]), answer, name, vehicle=vin)
    finally:
        backend.close()
