"""Remote services of the legacy simulator: starting an execution, its status, and the timeline that ends it.

``SimulationExecutions`` is a part of ``Simulation`` (a base class of it) kept in a room of its own:
the state it works on is the simulation's, set up by ``Simulation.__init__`` and declared below.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .faults import OutcomeRule
from .vehicles import SERVICE_TYPES, SimExecution, SimVehicle, api_time
from .web import MASK, Request, Response, api_error, json_response

logger = logging.getLogger(__name__)


class SimulationExecutions:
    """The remote service executions of ``Simulation``; called under the simulation's lock."""

    # the simulation's state this part uses (``Simulation.__init__`` sets it)
    execution_step: float
    _clock: Callable[[], float]
    _now_wall: Callable[[], datetime]
    _outcome: OutcomeRule | None
    _seq: int
    _open: list[tuple[SimVehicle, SimExecution]]

    def _advance(self) -> None:
        """Move every open execution along the clock; decide each end once, oldest first."""
        if not self._open:
            return
        now = self._clock()
        step = self.execution_step
        for vehicle, execution in list(self._open):  # oldest first: they were started in this order
            elapsed = now - execution.started
            if step > 0 and elapsed < step:
                continue
            if not execution.left_pending:
                if self._outcome is not None and self._outcome.outcome == "PENDING":
                    self._take_outcome()
                    execution.stuck = True
                    logger.info("%s %s stays PENDING (outcome rule)", vehicle.vin, execution.event_id)
                    continue
                execution.left_pending = True
            if step > 0 and elapsed < 3 * step:
                continue
            final = "EXECUTED"
            if self._outcome is not None and self._outcome.outcome != "PENDING":
                final = self._take_outcome()
            wall = self._now_wall()
            if final == "EXECUTED":
                final = vehicle.carry_out(execution, wall)
            execution.final_status = final
            execution.finished_at = api_time(wall)
            logger.info("%s %s %s ended %s", vehicle.vin, execution.service_type, execution.event_id, final)
        self._open = [(v, e) for v, e in self._open if e.final_status is None and not e.stuck]

    def _take_outcome(self) -> str:
        assert self._outcome is not None
        outcome = self._outcome.outcome
        self._outcome.count -= 1
        if self._outcome.count <= 0:
            self._outcome = None
        return outcome

    def _execute_service(self, request: Request, vehicle: SimVehicle) -> Response:
        form = request.form()
        service = form.get("serviceType", "")
        if not service:
            return api_error(400, "the form field serviceType is missing")
        if service not in SERVICE_TYPES:
            return api_error(400, f"unknown serviceType {service}")
        if not vehicle.supports_service(service):
            return api_error(400, f"service {service} is not activated for vehicle {vehicle.vin}")
        params: dict[str, Any] = {}
        if service in ("LIGHT_FLASH", "HORN_BLOW") and "count" in form:
            try:
                params["count"] = int(form["count"])
            except ValueError:
                params["count"] = -1
            if params["count"] < 1:
                return api_error(400, f"count must be a whole number >= 1, not {form['count']!r}")
        if service == "CHARGING_CONTROL":
            try:
                data = json.loads(form.get("data", ""))
            except json.JSONDecodeError:
                data = None
            if not isinstance(data, dict):
                return api_error(400, "CHARGING_CONTROL needs the form field data holding a JSON object")
            params["data"] = data
        if "bmwSkAnswer" in form:
            params["bmwSkAnswer"] = MASK
        self._seq += 1
        execution = SimExecution(
            service_type=service,
            event_id=f"{secrets.token_hex(12)}@bmw.de",
            started=self._clock(),
            created_at=api_time(self._now_wall()),
            params=params,
            seq=self._seq,
        )
        vehicle.executions.append(execution)
        self._open.append((vehicle, execution))
        logger.info("%s %s initiated (%s)", vehicle.vin, service, execution.event_id)
        return json_response(
            200,
            {
                "executionStatus": {
                    "serviceType": service,
                    "status": "INITIATED",
                    "eventId": execution.event_id,
                }
            },
        )

    def _execution_status(self, request: Request, vehicle: SimVehicle) -> Response:
        service = request.query.get("serviceType", "")
        if not service:
            return api_error(400, "the query parameter serviceType is missing")
        execution = next((e for e in reversed(vehicle.executions) if e.service_type == service), None)
        if execution is None:
            return api_error(404, f"no execution of {service} for vehicle {vehicle.vin}")
        return json_response(200, {"executionStatus": execution.execution_status(self._clock(), self.execution_step)})
