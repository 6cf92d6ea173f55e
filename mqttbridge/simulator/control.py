"""The legacy simulator's ``/_sim/`` control: what a test reads and changes beside the vendor API.

``SimulationControl`` is a part of ``Simulation`` (a base class of it) kept in a room of its own: the
state it works on is the simulation's, set up by ``Simulation.__init__`` and declared below.
"""

from __future__ import annotations

import copy
import logging
import re
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from .faults import FaultRule, OutcomeRule, parse_fault
from .vehicles import SimVehicle
from .web import Request, Response, json_response

logger = logging.getLogger(__name__)

_SIM_VEHICLE_STATUS = re.compile(r"^/_sim/vehicles/(?P<vin>[^/]+)/status$")


def _control_error(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


class SimulationControl:
    """The ``/_sim/`` endpoints of ``Simulation``; called under the simulation's lock."""

    # the simulation's state this part uses (``Simulation.__init__`` sets it)
    vehicles: dict[str, SimVehicle]
    execution_step: float
    _clock: Callable[[], float]
    _now_wall: Callable[[], datetime]
    request_log: Callable[[], list[dict[str, Any]]]
    _tokens: dict[str, float]
    _faults: dict[str, FaultRule]
    _outcome: OutcomeRule | None
    _log: deque[tuple[str, str, dict[str, str] | None, dict[str, str] | None, datetime, int]]
    _logged: int

    def _control(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        method = request.method
        match = _SIM_VEHICLE_STATUS.match(path)
        if match:
            return self._control_status(request, unquote(match["vin"]))
        routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "/_sim/vehicles"): self._control_vehicles,
            ("GET", "/_sim/faults"): lambda _r: json_response(200, self._rules()),
            ("POST", "/_sim/faults"): self._control_add_fault,
            ("DELETE", "/_sim/faults"): self._control_clear_faults,
            ("GET", "/_sim/requests"): lambda _r: json_response(200, self.request_log()),
            ("GET", "/_sim/requests/count"): lambda _r: json_response(
                200, {"count": self._logged, "kept": len(self._log)}
            ),
            ("DELETE", "/_sim/requests"): self._control_clear_log,
            ("POST", "/_sim/tokens/revoke"): self._control_revoke,
        }
        handler = routes.get((method, path))
        if handler is not None:
            return handler(request)
        allowed = sorted(m for m, p in routes if p == path)
        if allowed:
            return _control_error(405, f"{method} {path}: use {' or '.join(allowed)}")
        return _control_error(404, f"no simulator control at {path}")

    def _control_vehicles(self, _request: Request) -> Response:
        now = self._clock()
        return json_response(200, [v.to_json(now, self.execution_step) for v in self.vehicles.values()])

    def _control_status(self, request: Request, vin: str) -> Response:
        vehicle = self.vehicles.get(vin)
        if vehicle is None:
            return _control_error(404, f"no simulated vehicle {vin}; known: {', '.join(self.vehicles)}")
        if request.method == "GET":
            return json_response(200, {"vehicleStatus": copy.deepcopy(vehicle.status)})
        if request.method != "PATCH":
            return _control_error(405, f"{request.method}: use PATCH (or GET) on a vehicle's status")
        try:
            patch = request.json()
        except ValueError as exc:
            return _control_error(400, str(exc))
        if not isinstance(patch, dict):
            return _control_error(400, "the patch must be a JSON object of vehicleStatus fields")
        if "vin" in patch and patch["vin"] != vin:
            return _control_error(400, "the patch cannot change the VIN")
        vehicle.patch_status(patch, self._now_wall())
        logger.info("%s status patched: %s", vin, ", ".join(sorted(patch)))
        return json_response(200, {"vehicleStatus": copy.deepcopy(vehicle.status)})

    def _rules(self) -> list[dict[str, Any]]:
        rules = [rule.to_json() for rule in self._faults.values()]
        if self._outcome is not None:
            rules.append(self._outcome.to_json())
        return rules

    def _control_add_fault(self, request: Request) -> Response:
        try:
            rule = parse_fault(request.json())
        except ValueError as exc:
            return _control_error(400, str(exc))
        if isinstance(rule, OutcomeRule):
            self._outcome = rule if rule.count > 0 else None
        elif rule.count > 0:
            self._faults[rule.endpoint] = rule
        else:
            self._faults.pop(rule.endpoint, None)
        logger.info("fault rules now: %s", self._rules())
        return json_response(200, self._rules())

    def _control_clear_faults(self, _request: Request) -> Response:
        self._faults.clear()
        self._outcome = None
        return json_response(200, [])

    def _control_clear_log(self, _request: Request) -> Response:
        self._log.clear()
        self._logged = 0
        return json_response(200, [])

    def _control_revoke(self, _request: Request) -> Response:
        revoked = len(self._tokens)
        self._tokens.clear()
        logger.info("revoked %d access token(s)", revoked)
        return json_response(200, {"revoked": revoked})
