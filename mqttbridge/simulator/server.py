"""The legacy BMW simulator: the vendor API (``Simulation``) and the HTTP server that serves it.

All state sits in one ``Simulation`` behind one lock; the HTTP handler only turns bytes into a
``Request`` and a ``Response`` back into bytes. Time comes from injected clocks and remote service
executions are advanced lazily before each request, so tests drive the timeline without sleeping and
no background thread ever changes a car. The rest has rooms of its own: ``web`` (the HTTP plumbing),
``faults`` (the fault rules and what they serve), ``executions`` (remote services and their timeline)
and ``control`` (the ``/_sim/`` endpoints for tests).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from .control import SimulationControl
from .executions import SimulationExecutions
from .faults import FaultRule, OutcomeRule, fault_response, is_number, is_whole_number
from .vehicles import DATASETS, SimExecution, SimulatorError, SimVehicle
from .web import POLL_INTERVAL, Request, Response, SimHTTPServer, api_error, json_response, masked, oauth_error

logger = logging.getLogger(__name__)

DEMO_USER = "demo@example.com"
DEMO_PASSWORD = "demo"
SCOPE = "authenticate_user vehicle_data remote_services"
#: the request log keeps the last this many requests (a fleet's poll rounds would grow it without end)
REQUEST_LOG_LIMIT = 100_000

_TOKEN_PATH = re.compile(r"^/(?:webapi/oauth/token/?|gcdm/oauth/token/?)$")
_VEHICLES_PATH = re.compile(r"^/webapi/v1/user/vehicles/?$")
_VIN_PATH = re.compile(r"^/webapi/v1/user/vehicles/(?P<vin>[^/]+)/(?P<rest>.+?)/?$")
#: path part after the VIN -> (fault endpoint name, HTTP method)
_VIN_ENDPOINTS: dict[str, tuple[str, str]] = {
    "status": ("status", "GET"),
    "statistics/lastTrip": ("lastTrip", "GET"),
    "statistics/allTrips": ("allTrips", "GET"),
    "chargingprofile": ("chargingprofile", "GET"),
    "destinations": ("destinations", "GET"),
    "rangemap": ("rangemap", "GET"),
    "executeService": ("executeService", "POST"),
    "serviceExecutionStatus": ("serviceExecutionStatus", "GET"),
}


class Simulation(SimulationControl, SimulationExecutions):
    """The simulated vendor: cars, tokens, executions, fault rules and the request log."""

    def __init__(
        self,
        vehicles: list[SimVehicle],
        *,
        execution_step: float = 1.0,
        token_lifetime: int = 28799,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        log_limit: int = REQUEST_LOG_LIMIT,
    ):
        if not is_number(execution_step) or execution_step < 0:
            raise SimulatorError(f"the execution step must be >= 0 seconds, not {execution_step!r}")
        if not is_whole_number(token_lifetime) or token_lifetime < 1:
            raise SimulatorError(f"the token lifetime must be a whole number of seconds >= 1, not {token_lifetime!r}")
        self.vehicles: dict[str, SimVehicle] = {}
        for vehicle in vehicles:
            if not vehicle.vin:
                raise SimulatorError(f"a vehicle from {vehicle.source} has no VIN")
            if vehicle.vin in self.vehicles:
                raise SimulatorError(f"VIN {vehicle.vin} is given twice; every simulated car needs its own VIN")
            self.vehicles[vehicle.vin] = vehicle
        self.execution_step = float(execution_step)
        self.token_lifetime = token_lifetime
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.RLock()
        self._tokens: dict[str, float] = {}
        self._faults: dict[str, FaultRule] = {}
        self._outcome: OutcomeRule | None = None
        #: (method, path, query, form, time, status) of the last ``log_limit`` requests; dicts only when asked
        self._log: deque[tuple[str, str, dict[str, str] | None, dict[str, str] | None, datetime, int]] = deque(
            maxlen=log_limit
        )
        #: requests recorded since the start (or the last clearing), also those the log no longer holds
        self._logged = 0
        self._seq = 0
        #: executions not ended yet, oldest first: each request moves only these along (not every car's history)
        self._open: list[tuple[SimVehicle, SimExecution]] = []

    # -- entry point -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request; never raises (a bug becomes a 500 that says so)."""
        with self._lock:
            control = request.path == "/_sim" or request.path.startswith("/_sim/")
            try:
                self._advance()
                response = self._control(request) if control else self._api(request)
            except Exception as exc:  # the server must keep serving; the log has the traceback
                logger.exception("simulator failed on %s %s", request.method, request.path)
                response = api_error(500, f"simulator bug: {type(exc).__name__}: {exc}")
            if not control:
                self._record(request, response.status)
            return response

    def _now_wall(self) -> datetime:
        moment = self._wall_clock()
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

    def _record(self, request: Request, status: int) -> None:
        form = request.form()
        self._log.append(
            (
                request.method,
                request.path,
                masked(request.query) if request.query else None,
                masked(form) if form else None,
                self._now_wall(),
                status,
            )
        )
        self._logged += 1

    def request_log(self) -> list[dict[str, Any]]:
        """The requests the log holds, oldest first, as ``GET /_sim/requests`` gives them."""
        with self._lock:
            return [
                {
                    "method": method,
                    "path": path,
                    "query": dict(query or {}),
                    "form": dict(form or {}),
                    "time": moment.isoformat(),
                    "status": status,
                }
                for method, path, query, form, moment, status in self._log
            ]

    # -- the vendor API ----------------------------------------------------------------------------

    def _api(self, request: Request) -> Response:
        endpoint, vin, method = self._route(request.path)
        rule = self._take_fault(endpoint)
        if rule is not None and not rule.passes_through:
            response = fault_response(rule, endpoint)
        else:
            response = self._serve(request, endpoint, vin, method)
        if rule is not None:
            response.delay = rule.delay
        response.headers.setdefault("X-CorrelationID", f"Id-{uuid.uuid4().hex} 0")
        response.headers.setdefault("X-NodeID", "01")
        response.headers.setdefault("X-Powered-By", "JOY")
        return response

    @staticmethod
    def _route(path: str) -> tuple[str | None, str | None, str | None]:
        """(fault endpoint name, VIN, expected method) of an API path; Nones for an unknown path."""
        if _TOKEN_PATH.match(path):
            return "token", None, "POST"
        if _VEHICLES_PATH.match(path):
            return "vehicles", None, "GET"
        match = _VIN_PATH.match(path)
        if match and match["rest"] in _VIN_ENDPOINTS:
            endpoint, method = _VIN_ENDPOINTS[match["rest"]]
            return endpoint, unquote(match["vin"]), method
        return None, None, None

    def _take_fault(self, endpoint: str | None) -> FaultRule | None:
        """Use up one request of the rule for this endpoint, else of the ``any`` rule."""
        for key in (endpoint, "any"):
            rule = self._faults.get(key) if key else None
            if rule is not None:
                rule.count -= 1
                if rule.count <= 0:
                    del self._faults[rule.endpoint]
                return rule
        return None

    def _serve(self, request: Request, endpoint: str | None, vin: str | None, method: str | None) -> Response:
        if endpoint is None:
            return api_error(404, f"no such resource: {request.path}")
        if request.method != method:
            return api_error(405, f"{request.method} is not allowed here; use {method}", {"Allow": str(method)})
        if endpoint == "token":
            return self._token(request)
        problem = self._check_bearer(request)
        if problem:
            return api_error(401, problem, {"WWW-Authenticate": "Bearer"})
        if endpoint == "vehicles":
            return json_response(
                200, {"vehicles": [v.entry_view() for v in self.vehicles.values()]}
            )  # serialised at once
        vehicle = self.vehicles.get(vin or "")
        if vehicle is None:
            return api_error(404, f"vehicle {vin} is not known for this account")
        if endpoint == "status":
            return json_response(200, {"vehicleStatus": vehicle.status_view()})  # serialised at once, under the lock
        if endpoint in DATASETS:
            return json_response(200, vehicle.dataset_view(endpoint))
        if endpoint == "executeService":
            return self._execute_service(request, vehicle)
        return self._execution_status(request, vehicle)

    def _token(self, request: Request) -> Response:
        scheme, _, credential = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "basic" or not credential.strip():
            return oauth_error(401, "invalid_client", "client authentication (HTTP Basic) is required")
        try:
            decoded = base64.b64decode(credential.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return oauth_error(401, "invalid_client", "the Basic credential is not base64 of key:secret")
        key, colon, _secret = decoded.partition(":")
        if not colon or not key:
            return oauth_error(401, "invalid_client", "the Basic credential is not base64 of key:secret")
        form = request.form()
        if form.get("grant_type") != "password":
            return oauth_error(400, "unsupported_grant_type", "only grant_type=password is supported")
        if form.get("username") != DEMO_USER or form.get("password") != DEMO_PASSWORD:
            return oauth_error(400, "invalid_grant", "bad user credentials")
        now = self._clock()
        self._tokens = {token: expiry for token, expiry in self._tokens.items() if expiry > now}
        token = secrets.token_hex(32)
        self._tokens[token] = now + self.token_lifetime
        return json_response(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "refresh_token": secrets.token_hex(32),
                "scope": SCOPE,
            },
        )

    def _check_bearer(self, request: Request) -> str | None:
        """Why the request is not authorised, or None when its Bearer token is valid."""
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "an access token is required (Authorization: Bearer ...)"
        expiry = self._tokens.get(token.strip())
        if expiry is None:
            return "the access token is invalid or was revoked; log in again"
        if self._clock() >= expiry:
            del self._tokens[token.strip()]
            return "the access token has expired; log in again"
        return None


class SimulatorServer:
    """A real HTTP server speaking the legacy BMW API with the given cars (CONTRACT section 6)."""

    def __init__(
        self,
        vehicles: list[SimVehicle],
        host: str = "127.0.0.1",
        port: int = 0,
        execution_step: float = 1.0,
        token_lifetime: int = 28799,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.simulation = Simulation(
            vehicles, execution_step=execution_step, token_lifetime=token_lifetime, clock=clock, wall_clock=wall_clock
        )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._httpd = SimHTTPServer((host, port), self.simulation, family)
        except OSError as exc:
            raise SimulatorError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another host or port"
            ) from None
        bound_port = self._httpd.server_address[1]
        self.url = f"http://[{host}]:{bound_port}" if family == socket.AF_INET6 else f"http://{host}:{bound_port}"
        self._thread: threading.Thread | None = None
        self._serving = False
        self._closed = False

    @property
    def vehicles(self) -> dict[str, SimVehicle]:
        return self.simulation.vehicles

    def start(self) -> None:
        """Serve in a daemon thread; the socket already listens, so this returns at once."""
        if self._closed:
            raise SimulatorError("this simulator was stopped; create a new one")
        if self._thread is not None:
            return
        self._serving = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(POLL_INTERVAL,), name="simulator", daemon=True
        )
        self._thread.start()
        logger.info("simulator listening on %s with %d vehicle(s)", self.url, len(self.vehicles))

    def serve_forever(self) -> None:
        """Serve in this thread until ``stop`` is called from another one (or Ctrl-C)."""
        if self._closed:
            raise SimulatorError("this simulator was stopped; create a new one")
        self._serving = True
        logger.info("simulator listening on %s with %d vehicle(s)", self.url, len(self.vehicles))
        self._httpd.serve_forever(POLL_INTERVAL)

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._serving:
            self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        logger.info("simulator on %s stopped", self.url)

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
