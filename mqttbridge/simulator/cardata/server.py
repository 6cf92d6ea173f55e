"""The CarData simulator: OAuth, REST and ``/_sim/`` on one HTTP listener, the stream on Mosquitto.

``CarDataSimulation`` holds all state behind one lock and answers requests; ``CarDataSimulator``
owns the HTTP server, the private broker and a thread that ends stream sessions whose id_token
expired on the simulator's clock (tests can call ``advance`` instead of waiting an hour).
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from ..web import Request, Response, SimHTTPServer
from .bodies import Bodies
from .cars import Car, Catalogue, build_cars, default_fixtures_dir, load_catalogue, typed
from .clock import SimClock, iso_ms, iso_s
from .faults import FaultBook, parse_fault
from .oauth import REFRESH_LIFETIME, Account, OAuth
from .quota import Quota
from .rest import Rest
from .stream import Broker

logger = logging.getLogger(__name__)

__all__ = ["CarDataSimulation"]

JSON = "application/json"
_STREAM_PATH = re.compile(r"^/_sim/cardata/(?P<vin>[^/]+)/stream$")
_TELEMATIC_PATH = re.compile(r"^/_sim/cardata/(?P<vin>[^/]+)/telematic$")
#: form fields shown in /_sim/requests only by their first characters
SECRET_FIELDS = frozenset({"code_verifier", "refresh_token", "device_code", "code_challenge", "access_token"})


def _json(status: int, data: Any) -> Response:
    return Response(status, json.dumps(data, ensure_ascii=False).encode(), JSON)


def _masked(form: dict[str, str]) -> dict[str, str]:
    return {k: (f"{v[:4]}***" if k in SECRET_FIELDS and v else v) for k, v in form.items()}


class CarDataSimulation:
    """Everything the simulated vendor knows; ``handle`` is called by the HTTP server's threads."""

    def __init__(
        self,
        cars: list[Car],
        catalogue: Catalogue,
        bodies: Bodies,
        clock: SimClock,
        url: Callable[[], str],
        broker: Broker | None = None,
        refresh_lifetime: float = REFRESH_LIFETIME,
    ):
        self.cars = {car.vin: car for car in cars}
        self.catalogue = catalogue
        self.clock = clock
        self.broker = broker
        self.lock = threading.RLock()
        self.faults = FaultBook(bodies)
        self.oauth = OAuth(clock, bodies, url, self._on_id_token, refresh_lifetime)
        self.quota = Quota(clock)
        self.rest = Rest(self.cars, catalogue, self.oauth, self.quota, bodies, clock, self.faults.take)
        self.log: list[dict[str, Any]] = []
        self.published: list[dict[str, Any]] = []
        self._locked_out: set[str] = set()

    # -- entry point -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request; never raises (a bug becomes a 500 that says so)."""
        with self.lock:
            gcid: str | None = None
            try:
                if request.path.startswith("/_sim/"):
                    return self._control(request)
                if request.path.startswith("/customers/"):
                    response, gcid = self.rest.handle(request)
                elif request.path.rstrip("/") in ("/gcdm/oauth/device/code", "/gcdm/oauth/token"):
                    response = self._oauth(request)
                elif request.path.rstrip("/") == "/oneid/link" and request.method == "GET":
                    response = self._link(request)
                else:
                    response = _json(404, {"error": f"no such path: {request.path}"})
            except Exception as exc:  # the server must keep serving; the log has the traceback
                logger.exception("simulator failed on %s %s", request.method, request.path)
                response = _json(500, {"error": f"simulator bug: {type(exc).__name__}: {exc}"})
            self.log.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": _masked(request.query),
                    "form": _masked(request.form()),
                    "time": iso_ms(self.clock.now()),
                    "status": response.status,
                    "gcid": gcid,
                }
            )
            return response

    def _oauth(self, request: Request) -> Response:
        if request.method != "POST":
            return _json(405, {"error": "invalid_request", "error_description": "POST only"})
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        device = request.path.rstrip("/").endswith("/device/code")
        fault = self.faults.take("device_code" if device else "token")
        if fault is not None:
            status, body, headers = fault
            return Response(status, body, JSON, headers)
        status, body = self.oauth.device_code(form) if device else self.oauth.token(form)
        return Response(status, body, JSON)

    def _link(self, request: Request) -> Response:
        """BMW's verification page, reduced to its effect: ``?user_code=`` approves (for manual demos)."""
        ok = self.oauth.approve(request.query.get("user_code", ""))
        text = "Login successful" if ok else "Enter a valid, current user code (?user_code=...)"
        return Response(200 if ok else 400, text.encode(), "text/plain; charset=utf-8")

    # -- the stream --------------------------------------------------------------------------------

    def _on_id_token(self, account: Account) -> None:
        self._locked_out.discard(account.gcid)
        if self.broker is not None and account.id_token:
            self.broker.set_password(account.gcid, account.id_token, list(self.cars))

    def expire_sessions(self) -> list[str]:
        """Lock out every account whose newest id_token expired (kicks its sessions); the GCIDs."""
        now = self.clock.now()
        done = []
        with self.lock:
            for account in self.oauth.accounts.values():
                if account.id_token and now >= account.id_token_exp and account.gcid not in self._locked_out:
                    self._locked_out.add(account.gcid)
                    if self.broker is not None:
                        self.broker.lock_out(account.gcid)
                    logger.info("id_token of %s… expired: stream session closed", account.gcid[:8])
                    done.append(account.gcid)
        return done

    def stream_message(self, vin: str, data: dict[str, Any]) -> dict[str, Any]:
        """Publish one message for ``vin`` to every account and update the car's REST values."""
        car = self.cars[vin]
        now = self.clock.now()
        message_data: dict[str, Any] = {}
        for key, item in data.items():
            spec = item if isinstance(item, dict) else {"value": item}
            old = car.values.get(key)
            entry: dict[str, Any] = {
                "timestamp": spec.get("timestamp") or iso_s(now),
                "value": typed(self.catalogue, key, spec.get("value"), old.value if old else None),
            }
            unit = spec.get("unit", old.unit if old else None)
            if unit is not None:
                entry["unit"] = unit
            message_data[key] = entry
            car.set(key, spec.get("value"), spec.get("unit"), iso_ms(now), self.catalogue)
        message = {"vin": vin, "entityId": car.entity_id, "topic": vin, "timestamp": iso_ms(now), "data": message_data}
        payload = json.dumps(message, ensure_ascii=False).encode()
        for account in self.oauth.accounts.values():
            if self.broker is not None and account.gcid in self.broker.accounts:
                self.broker.publish(f"{account.gcid}/{vin}", payload)
        self.published.append(message)
        return message

    # -- /_sim/ ------------------------------------------------------------------------------------

    def _control(self, request: Request) -> Response:
        path, method = request.path.rstrip("/"), request.method
        try:
            body = request.json() if method in ("POST", "PATCH") else None
        except ValueError as exc:
            return _json(400, {"error": str(exc)})
        simple: dict[tuple[str, str], Callable[[], Response]] = {
            ("GET", "/_sim/faults"): lambda: _json(200, [r.to_json() for r in self.faults.rules.values()]),
            ("DELETE", "/_sim/faults"): lambda: self._clear(self.faults.rules),
            ("GET", "/_sim/requests"): lambda: _json(200, self.log),
            ("DELETE", "/_sim/requests"): lambda: self._clear(self.log),
            ("GET", "/_sim/quota"): lambda: _json(200, self.quota.state(request.query.get("gcid"))),
            ("GET", "/_sim/device/pending"): lambda: _json(200, self.oauth.pending()),
            ("GET", "/_sim/stream/connections"): lambda: _json(200, self.broker.connections() if self.broker else {}),
            ("GET", "/_sim/stream/messages"): lambda: _json(200, self.published),
            ("GET", "/_sim/accounts"): lambda: _json(200, self._accounts()),
        }
        if (method, path) in simple:
            return simple[(method, path)]()
        if not isinstance(body, dict):
            return _json(400, {"error": "the body must be a JSON object"})
        if (method, path) == ("POST", "/_sim/faults"):
            return self._add_fault(body)
        if (method, path) == ("POST", "/_sim/device/approve"):
            ok = self.oauth.approve(str(body.get("user_code", "")), deny=bool(body.get("deny")))
            return (
                _json(200, {"ok": True}) if ok else _json(404, {"error": "no pending device code with that user_code"})
            )
        if (method, path) == ("POST", "/_sim/clock"):
            return self._advance(body.get("advance"))
        if (method, path) == ("POST", "/_sim/clients"):
            client_id = body.get("client_id")
            if not isinstance(client_id, str) or not client_id:
                return _json(400, {"error": "client_id is required"})
            if body.get("revoked", True):
                self.oauth.revoke_client(client_id)
            else:
                self.oauth.revoked.discard(client_id)
            return _json(200, {"client_id": client_id, "revoked": client_id in self.oauth.revoked})
        match = _STREAM_PATH.match(path) if method == "POST" else _TELEMATIC_PATH.match(path)
        if match is None:
            return _json(404, {"error": f"no such control: {method} {path}"})
        if match["vin"] not in self.cars:
            return _json(404, {"error": f"no car with VIN {match['vin']}"})
        if method == "POST":
            data = body.get("data")
            if not isinstance(data, dict) or not data:
                return _json(400, {"error": 'give {"data": {<key>: {"value": ..., "unit": ..., "timestamp": ...}}}'})
            return _json(200, self.stream_message(match["vin"], data))
        car = self.cars[match["vin"]]
        for key, value in body.items():
            car.set(key, value, None, iso_ms(self.clock.now()), self.catalogue)
        return _json(200, {key: car.entry(key, self.catalogue) for key in body})

    @staticmethod
    def _clear(container: dict[str, Any] | list[Any]) -> Response:
        container.clear()
        return _json(200, [])

    def _accounts(self) -> list[dict[str, Any]]:
        return [
            {"client_id": a.client_id, "gcid": a.gcid, "id_token_exp": a.id_token_exp}
            for a in self.oauth.accounts.values()
        ]

    def _add_fault(self, body: dict[str, Any]) -> Response:
        try:
            rule = parse_fault(body)
        except ValueError as exc:
            return _json(400, {"error": str(exc)})
        if rule.disconnect:
            dropped = self.broker.drop() if self.broker is not None else 0
            return _json(200, {"dropped": dropped})
        self.faults.add(rule)
        return _json(200, [r.to_json() for r in self.faults.rules.values()])

    def _advance(self, seconds: Any) -> Response:
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            return _json(400, {"error": 'give {"advance": <seconds >= 0>}'})
        self.clock.advance(float(seconds))
        expired = self.expire_sessions()
        return _json(200, {"now": iso_ms(self.clock.now()), "expired_sessions": expired})


def make_simulation(
    vehicles: int | None,
    clock: SimClock,
    url: Callable[[], str],
    broker: Broker | None,
    fixtures: Path | bool | None = True,
    refresh_lifetime: float = REFRESH_LIFETIME,
) -> CarDataSimulation:
    """The simulation with cars from the fixtures (``fixtures=True``: found next to the repo) or demo data."""
    where = default_fixtures_dir() if fixtures is True else (fixtures or None)
    assert where is None or isinstance(where, Path)
    cars = build_cars(vehicles, where)
    catalogue = load_catalogue(where)
    for car in cars:  # a unit seen in a real answer beats the catalogue's text
        for key, entry in car.values.items():
            catalogue.add(key, entry.unit)
            if entry.unit is not None:
                catalogue.units[key] = entry.unit
    return CarDataSimulation(cars, catalogue, Bodies(where), clock, url, broker, refresh_lifetime)


def temp_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cardata-sim-"))


__all__ += ["SimHTTPServer", "make_simulation", "temp_workdir"]
