"""The legacy BMW ConnectedDrive backend (vendor-api-facts part A)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from mqttbridge.backends.base import Backend
from mqttbridge.backends.bmw_legacy.api import BmwApi, device_time
from mqttbridge.backends.bmw_legacy.parse import (
    DATASETS,
    SERVICES,
    parse_dataset,
    parse_execution,
    parse_status,
    parse_vehicles,
)
from mqttbridge.errors import BadResponseError, UnsupportedError
from mqttbridge.model import CommandRequest, ExecutionUpdate, VehicleInfo, VehicleStatus
from mqttbridge.statestore import StateStore

log = logging.getLogger(__name__)

#: an execution check is itself polled again by the caller, so it gives up sooner than a read
EXECUTION_CHECK_ATTEMPTS = 2


class BmwLegacyBackend(Backend):
    provider = "bmw_legacy"

    def __init__(
        self,
        account: Any,
        store: StateStore,
        *,
        session: requests.Session | None = None,
        **kwargs: Any,
    ):
        super().__init__(account, store, **kwargs)
        self.api = BmwApi(
            account,
            store,
            session=session,
            sleep=self.sleep,
            clock=self.clock,
            policy=self.policy,
            closing=self.closing,
        )

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def list_vehicles(self) -> list[VehicleInfo]:
        return parse_vehicles(self.api.get("/user/vehicles", "vehicle list"))

    def read_status(self, vehicle: VehicleInfo, *, force: bool = False) -> VehicleStatus:
        if force:
            raise UnsupportedError("the legacy BMW API has no forced (waking) status read")
        body = self.api.get(
            f"/user/vehicles/{vehicle.vin}/status",
            f"status of {vehicle.vin}",
            params={"deviceTime": device_time(), "dlat": "0.0", "dlon": "0.0"},
        )
        return parse_status(body, vehicle.vin, self._now())

    def read_dataset(self, vehicle: VehicleInfo, name: str) -> Any:
        spec = DATASETS.get(name)
        if spec is None or name not in vehicle.datasets:
            raise UnsupportedError(f"{vehicle.vin} does not offer the data set {name!r}")
        body = self.api.get(f"/user/vehicles/{vehicle.vin}/{spec.path}", f"{name} of {vehicle.vin}")
        return parse_dataset(name, body, vehicle.vin)

    def service_for(self, vehicle: VehicleInfo, request: CommandRequest) -> str:
        entry = SERVICES.get((request.command, request.action))
        if entry is None or not vehicle.supports(request.command, request.action):
            raise UnsupportedError(f"{vehicle.vin} does not support {request.command} {request.action}")
        return entry[0]

    def _form(self, service: str, request: CommandRequest) -> dict[str, str]:
        extra = set(request.params) - _PARAMS.get(service, set())
        if extra:
            raise UnsupportedError(f"the legacy BMW API's {service} takes no {', '.join(sorted(extra))}")
        form = {"serviceType": service}
        builder: Callable[[CommandRequest], dict[str, str]] | None = _FORM_FIELDS.get(service)
        if builder is not None:
            form.update(builder(request))
        if service == "DOOR_UNLOCK" and self.account.security_answer:
            form["bmwSkAnswer"] = self.account.security_answer  # A9: North America asks for it
        return form

    def execute(self, vehicle: VehicleInfo, request: CommandRequest) -> ExecutionUpdate:
        service = self.service_for(vehicle, request)
        body = self.api.post_command(
            f"/user/vehicles/{vehicle.vin}/executeService",
            f"{service} for {vehicle.vin}",
            self._form(service, request),
        )
        return parse_execution(body, service)

    def execution_status(self, vehicle: VehicleInfo, started: ExecutionUpdate) -> ExecutionUpdate:
        body = self.api.get(
            f"/user/vehicles/{vehicle.vin}/serviceExecutionStatus",
            f"{started.service} status for {vehicle.vin}",
            params={"serviceType": started.service},
            attempts=EXECUTION_CHECK_ATTEMPTS,
        )
        update = parse_execution(body, started.service)
        if started.event_id and update.event_id and update.event_id != started.event_id:
            # A9: the endpoint answers the last execution of the type; another app may have sent one
            raise BadResponseError(
                f"{started.service} status for {vehicle.vin}: the vendor reports another execution "
                f"({update.event_id}), not ours ({started.event_id})"
            )
        return update

    def close(self) -> None:
        super().close()
        self.api.close()


def _count(request: CommandRequest) -> dict[str, str]:
    count = request.params.get("count")
    return {"count": str(int(count))} if count is not None else {}


def _charging_data(request: CommandRequest) -> dict[str, str]:
    profile = request.params.get("profile")
    if not isinstance(profile, dict):
        raise UnsupportedError("CHARGING_CONTROL needs a profile object")
    if "weeklyPlanner" not in profile and "twoTimesTimer" not in profile:
        profile = {"weeklyPlanner": profile}
    return {"data": json.dumps(profile, separators=(",", ":"))}


#: the request parameters each service can carry; anything else is refused before any call
_PARAMS: dict[str, set[str]] = {"LIGHT_FLASH": {"count"}, "CHARGING_CONTROL": {"profile"}}

#: extra form fields per service (A9)
_FORM_FIELDS: dict[str, Callable[[CommandRequest], dict[str, str]]] = {
    "LIGHT_FLASH": _count,
    "CHARGING_CONTROL": _charging_data,
}
