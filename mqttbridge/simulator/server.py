"""The simulator's HTTP side: the legacy BMW API, its faults, and a /_sim/ control for tests.

All state sits in one ``Simulation`` behind one lock; the HTTP handler only turns bytes into a
``Request`` and a ``Response`` back into bytes. Time comes from injected clocks and remote service
executions are advanced lazily before each request, so tests drive the timeline without sleeping and
no background thread ever changes a car.
"""

from __future__ import annotations

import base64
import binascii
import copy
import http
import json
import logging
import math
import re
import secrets
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .vehicles import DATASETS, SERVICE_TYPES, SimExecution, SimulatorError, SimVehicle, api_time

logger = logging.getLogger(__name__)

DEMO_USER = "demo@example.com"
DEMO_PASSWORD = "demo"
SCOPE = "authenticate_user vehicle_data remote_services"
JSON_TYPE = "application/json;charset=UTF-8"
#: how often the serving loop looks for a stop request (seconds): ``stop`` waits at most this long
POLL_INTERVAL = 0.05

FAULT_ENDPOINTS = (
    "token",
    "vehicles",
    "status",
    "executeService",
    "serviceExecutionStatus",
    "lastTrip",
    "allTrips",
    "chargingprofile",
    "destinations",
    "rangemap",
    "any",
)
OUTCOMES = ("EXECUTED", "NOT_EXECUTED", "TIMED_OUT", "PENDING")
#: form and query fields whose values never reach the request log
MASKED_FIELDS = frozenset({"password", "bmwSkAnswer"})
MASK = "***"

SERVER_PANIC = (
    "(SmartPhoneUtil-I-300) Unexpected error - server panic. "
    "Values to be returned cannot be converted to interface type."
)
#: the kind of page the API answered with once BMW switched it off (2021-11), written for the simulator
GONE_PAGE = (
    "<!DOCTYPE html><html><head><title>Payara Micro #badassfish - Error report</title></head>"
    "<body><h1>HTTP Status 410 - Gone</h1><hr/><p><b>type</b> Status report</p><p><b>message</b>Gone</p>"
    "<p><b>description</b>The requested resource is no longer available and has no forwarding address.</p>"
    "<hr/><h3>Payara Micro #badassfish</h3></body></html>"
)

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
_SIM_VEHICLE_STATUS = re.compile(r"^/_sim/vehicles/(?P<vin>[^/]+)/status$")


@dataclass
class Request:
    """What the handler received, decoded just enough for the simulation."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    def form(self) -> dict[str, str]:
        """The body as form fields (the API is form-encoded; a JSON body has no fields)."""
        if "json" in self.headers.get("content-type", "").lower() or not self.body:
            return {}
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def json(self) -> Any:
        """The body as JSON; raises ``ValueError`` with a readable message."""
        try:
            return json.loads(self.body.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"the body is not valid JSON: {exc}") from None


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    #: seconds to wait before answering (a fault rule's ``delay``)
    delay: float = 0.0


def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return Response(status, body, JSON_TYPE, dict(headers or {}))


def _api_error(status: int, description: str, headers: dict[str, str] | None = None) -> Response:
    """The API's own error shape: ``{"error": {"code": N, "description": ...}}``."""
    return _json(status, {"error": {"code": status, "description": description}}, headers)


def _oauth_error(status: int, error: str, description: str) -> Response:
    """The token endpoint's OAuth error shape."""
    return _json(status, {"error": error, "error_description": description})


def _control_error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _masked(fields: dict[str, str]) -> dict[str, str]:
    return {key: (MASK if key in MASKED_FIELDS else value) for key, value in fields.items()}


@dataclass
class FaultRule:
    """The next ``count`` requests to ``endpoint`` fail with ``http_status`` (or only come late)."""

    endpoint: str
    count: int
    http_status: int | None = None
    retry_after: float | None = None
    body: str | None = None
    content_type: str = "text/plain"
    delay: float = 0.0

    @property
    def passes_through(self) -> bool:
        """A 200 (or no status) without a body only delays the real answer (client timeout tests)."""
        return self.http_status in (None, 200) and self.body is None

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "http_status": self.http_status,
            "count": self.count,
            "retry_after": self.retry_after,
            "body": self.body,
            "content_type": self.content_type,
            "delay": self.delay,
        }


@dataclass
class OutcomeRule:
    """The next ``count`` executions to reach their end end with ``outcome``."""

    outcome: str
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"endpoint": "serviceExecutionStatus", "outcome": self.outcome, "count": self.count}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_fault(data: Any) -> FaultRule | OutcomeRule:
    """Validate a ``POST /_sim/faults`` body; ``ValueError`` says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError('a fault rule is a JSON object such as {"endpoint": "status", "http_status": 500}')
    allowed = {"endpoint", "http_status", "count", "retry_after", "body", "content_type", "delay", "outcome"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    endpoint = data.get("endpoint")
    if endpoint not in FAULT_ENDPOINTS:
        raise ValueError(f"endpoint must be one of {', '.join(FAULT_ENDPOINTS)}, not {endpoint!r}")
    count = data.get("count", 1)
    if not _is_int(count) or count < 0:
        raise ValueError(f"count must be a whole number >= 0, not {count!r}")
    outcome = data.get("outcome")
    if outcome is not None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        if endpoint != "serviceExecutionStatus":
            raise ValueError("an outcome rule needs endpoint serviceExecutionStatus")
        extra = sorted(k for k in ("http_status", "retry_after", "body", "delay") if data.get(k) is not None)
        if extra:
            raise ValueError(f"an outcome rule takes no {', '.join(extra)}: send those as a separate rule")
        return OutcomeRule(outcome=outcome, count=count)
    http_status = data.get("http_status")
    if http_status is not None and (not _is_int(http_status) or not 200 <= http_status <= 599):
        raise ValueError(f"http_status must be a whole number from 200 to 599, not {http_status!r}")
    retry_after = data.get("retry_after")
    if retry_after is not None and (not _is_number(retry_after) or retry_after < 0):
        raise ValueError(f"retry_after must be a number of seconds >= 0 or null, not {retry_after!r}")
    body = data.get("body")
    if body is not None and not isinstance(body, str):
        raise ValueError("body must be a string (it is served as it is) or null")
    content_type = data.get("content_type", "text/plain")
    if not isinstance(content_type, str) or not content_type or "\n" in content_type:
        raise ValueError(f"content_type must be a media type such as text/plain, not {content_type!r}")
    delay = data.get("delay")
    if delay is not None and (not _is_number(delay) or not 0 <= delay <= 3600):
        raise ValueError(f"delay must be a number of seconds from 0 to 3600 or null, not {delay!r}")
    if count > 0 and http_status is None and delay is None:
        raise ValueError(
            "give http_status (the failure to serve) or delay (a late answer), or count 0 to clear the rule"
        )
    return FaultRule(
        endpoint=endpoint,
        count=count,
        http_status=http_status,
        retry_after=retry_after,
        body=body,
        content_type=content_type,
        delay=float(delay or 0.0),
    )


class Simulation:
    """The simulated vendor: cars, tokens, executions, fault rules and the request log."""

    def __init__(
        self,
        vehicles: list[SimVehicle],
        *,
        execution_step: float = 1.0,
        token_lifetime: int = 28799,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        if not _is_number(execution_step) or execution_step < 0:
            raise SimulatorError(f"the execution step must be >= 0 seconds, not {execution_step!r}")
        if not _is_int(token_lifetime) or token_lifetime < 1:
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
        self._log: list[dict[str, Any]] = []
        self._seq = 0

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
                response = _api_error(500, f"simulator bug: {type(exc).__name__}: {exc}")
            if not control:
                self._record(request, response.status)
            return response

    def _now_wall(self) -> datetime:
        moment = self._wall_clock()
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

    def _record(self, request: Request, status: int) -> None:
        self._log.append(
            {
                "method": request.method,
                "path": request.path,
                "query": _masked(request.query),
                "form": _masked(request.form()),
                "time": self._now_wall().isoformat(),
                "status": status,
            }
        )

    # -- the execution timeline --------------------------------------------------------------------

    def _advance(self) -> None:
        """Move every open execution along the clock; decide each end once, oldest first."""
        now = self._clock()
        step = self.execution_step
        open_executions = sorted(
            (
                (execution.seq, vehicle, execution)
                for vehicle in self.vehicles.values()
                for execution in vehicle.executions
                if execution.final_status is None and not execution.stuck
            ),
            key=lambda item: item[0],
        )
        for _seq, vehicle, execution in open_executions:
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

    def _take_outcome(self) -> str:
        assert self._outcome is not None
        outcome = self._outcome.outcome
        self._outcome.count -= 1
        if self._outcome.count <= 0:
            self._outcome = None
        return outcome

    # -- the vendor API ----------------------------------------------------------------------------

    def _api(self, request: Request) -> Response:
        endpoint, vin, method = self._route(request.path)
        rule = self._take_fault(endpoint)
        if rule is not None and not rule.passes_through:
            response = self._fault_response(rule, endpoint)
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

    @staticmethod
    def _fault_response(rule: FaultRule, endpoint: str | None) -> Response:
        status = rule.http_status or 500
        headers: dict[str, str] = {}
        if rule.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(rule.retry_after))
        if rule.body is not None:
            return Response(status, rule.body.encode("utf-8"), rule.content_type, headers)
        if status == 410:
            return Response(status, GONE_PAGE.encode("utf-8"), "text/html;charset=UTF-8", headers)
        if status == 500:
            response = _api_error(500, SERVER_PANIC, headers)
        elif endpoint == "token" and status == 401:
            response = _oauth_error(401, "client disabled", "provided clients are disabled")
        elif endpoint == "token" and status == 400:
            response = _oauth_error(400, "invalid_grant", "the authN circuit failed")
        elif status == 429:
            response = _api_error(429, "Too many requests (simulated fault)", headers)
        else:
            response = _api_error(status, f"{_phrase(status)} (simulated fault)", headers)
        response.headers.update(headers)
        return response

    def _serve(self, request: Request, endpoint: str | None, vin: str | None, method: str | None) -> Response:
        if endpoint is None:
            return _api_error(404, f"no such resource: {request.path}")
        if request.method != method:
            return _api_error(405, f"{request.method} is not allowed here; use {method}", {"Allow": str(method)})
        if endpoint == "token":
            return self._token(request)
        problem = self._check_bearer(request)
        if problem:
            return _api_error(401, problem, {"WWW-Authenticate": "Bearer"})
        if endpoint == "vehicles":
            return _json(200, {"vehicles": [copy.deepcopy(v.entry) for v in self.vehicles.values()]})
        vehicle = self.vehicles.get(vin or "")
        if vehicle is None:
            return _api_error(404, f"vehicle {vin} is not known for this account")
        if endpoint == "status":
            return _json(200, {"vehicleStatus": copy.deepcopy(vehicle.status)})
        if endpoint in DATASETS:
            return _json(200, vehicle.dataset_body(endpoint))
        if endpoint == "executeService":
            return self._execute_service(request, vehicle)
        return self._execution_status(request, vehicle)

    def _token(self, request: Request) -> Response:
        scheme, _, credential = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "basic" or not credential.strip():
            return _oauth_error(401, "invalid_client", "client authentication (HTTP Basic) is required")
        try:
            decoded = base64.b64decode(credential.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return _oauth_error(401, "invalid_client", "the Basic credential is not base64 of key:secret")
        key, colon, _secret = decoded.partition(":")
        if not colon or not key:
            return _oauth_error(401, "invalid_client", "the Basic credential is not base64 of key:secret")
        form = request.form()
        if form.get("grant_type") != "password":
            return _oauth_error(400, "unsupported_grant_type", "only grant_type=password is supported")
        if form.get("username") != DEMO_USER or form.get("password") != DEMO_PASSWORD:
            return _oauth_error(400, "invalid_grant", "bad user credentials")
        now = self._clock()
        self._tokens = {token: expiry for token, expiry in self._tokens.items() if expiry > now}
        token = secrets.token_hex(32)
        self._tokens[token] = now + self.token_lifetime
        return _json(
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

    def _execute_service(self, request: Request, vehicle: SimVehicle) -> Response:
        form = request.form()
        service = form.get("serviceType", "")
        if not service:
            return _api_error(400, "the form field serviceType is missing")
        if service not in SERVICE_TYPES:
            return _api_error(400, f"unknown serviceType {service}")
        if not vehicle.supports_service(service):
            return _api_error(400, f"service {service} is not activated for vehicle {vehicle.vin}")
        params: dict[str, Any] = {}
        if service in ("LIGHT_FLASH", "HORN_BLOW") and "count" in form:
            try:
                params["count"] = int(form["count"])
            except ValueError:
                params["count"] = -1
            if params["count"] < 1:
                return _api_error(400, f"count must be a whole number >= 1, not {form['count']!r}")
        if service == "CHARGING_CONTROL":
            try:
                data = json.loads(form.get("data", ""))
            except json.JSONDecodeError:
                data = None
            if not isinstance(data, dict):
                return _api_error(400, "CHARGING_CONTROL needs the form field data holding a JSON object")
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
        logger.info("%s %s initiated (%s)", vehicle.vin, service, execution.event_id)
        return _json(
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
            return _api_error(400, "the query parameter serviceType is missing")
        execution = next((e for e in reversed(vehicle.executions) if e.service_type == service), None)
        if execution is None:
            return _api_error(404, f"no execution of {service} for vehicle {vehicle.vin}")
        return _json(200, {"executionStatus": execution.execution_status(self._clock(), self.execution_step)})

    # -- the /_sim/ control ------------------------------------------------------------------------

    def _control(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        method = request.method
        match = _SIM_VEHICLE_STATUS.match(path)
        if match:
            return self._control_status(request, unquote(match["vin"]))
        routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "/_sim/vehicles"): self._control_vehicles,
            ("GET", "/_sim/faults"): lambda _r: _json(200, self._rules()),
            ("POST", "/_sim/faults"): self._control_add_fault,
            ("DELETE", "/_sim/faults"): self._control_clear_faults,
            ("GET", "/_sim/requests"): lambda _r: _json(200, copy.deepcopy(self._log)),
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
        return _json(200, [v.to_json(now, self.execution_step) for v in self.vehicles.values()])

    def _control_status(self, request: Request, vin: str) -> Response:
        vehicle = self.vehicles.get(vin)
        if vehicle is None:
            return _control_error(404, f"no simulated vehicle {vin}; known: {', '.join(self.vehicles)}")
        if request.method == "GET":
            return _json(200, {"vehicleStatus": copy.deepcopy(vehicle.status)})
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
        return _json(200, {"vehicleStatus": copy.deepcopy(vehicle.status)})

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
        return _json(200, self._rules())

    def _control_clear_faults(self, _request: Request) -> Response:
        self._faults.clear()
        self._outcome = None
        return _json(200, [])

    def _control_clear_log(self, _request: Request) -> Response:
        self._log.clear()
        return _json(200, [])

    def _control_revoke(self, _request: Request) -> Response:
        revoked = len(self._tokens)
        self._tokens.clear()
        logger.info("revoked %d access token(s)", revoked)
        return _json(200, {"revoked": revoked})


# --------------------------------------------------------------------------------------------------
# HTTP


class _Handler(BaseHTTPRequestHandler):
    """Bytes in, bytes out: HTTP/1.1 keep-alive, always with Content-Length."""

    protocol_version = "HTTP/1.1"
    server_version = "BMW Group API Gateway"
    #: headers and body go out in two writes; with Nagle on, each answer would wait for a delayed ACK
    disable_nagle_algorithm = True
    server: _HTTPServer

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            return None
        return self.rfile.read(size) if size > 0 else b""

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            body = None
        if body is None:
            response = _api_error(400, "unreadable request body (bad Content-Length or chunk size)")
            self.close_connection = True
        else:
            parts = urlsplit(self.path)
            request = Request(
                method=self.command,
                path=parts.path,
                query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
            response = self.server.simulation.handle(request)
        if response.delay > 0:
            time.sleep(response.delay)
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
        except OSError:  # the client gave up (a timeout test); nothing to answer any more
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    #: the default backlog of 5 drops connections when many clients (scale tests) connect at once
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulation: Simulation, family: socket.AddressFamily):
        self.address_family = family
        self.simulation = simulation
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would do a reverse DNS lookup of the host; loopback needs none.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


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
            self._httpd = _HTTPServer((host, port), self.simulation, family)
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
