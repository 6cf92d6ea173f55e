"""The CarData REST API under ``/customers/…``: tokens, quota, containers and the cars' data.

Order of checks per request: the bearer token names the account, the request counts against that
account's quota (rejected ones too), then fault rules, expiry and scope, the quota limit, ``x-version``
and the route's own errors (CU-1xx, as in BMW's guide).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..web import Request, Response
from .bodies import Bodies
from .cars import Car, Catalogue
from .clock import SimClock, iso_ms
from .oauth import OAuth
from .quota import Quota

logger = logging.getLogger(__name__)

__all__ = ["MAX_CONTAINERS", "Container", "Rest"]

JSON = "application/json"
MAX_CONTAINERS = 10
_VIN = re.compile(r"^[A-Z0-9]{17}$")
_CONTAINER_ID = re.compile(r"^[A-Z0-9]{13}$")
_VEHICLE_PATH = re.compile(r"^/customers/vehicles/(?P<vin>[^/]+)/(?P<what>[A-Za-z]+)/?$")
_CONTAINER_PATH = re.compile(r"^/customers/containers/(?P<id>[^/]+)/?$")
_CU127_NOTE = "The presented token is invalid or expired."


@dataclass
class Container:
    container_id: str
    name: str
    purpose: str
    created: str
    descriptors: list[str]
    state: str = "ACTIVE"

    def summary(self) -> dict[str, Any]:
        return {
            "containerId": self.container_id,
            "name": self.name,
            "purpose": self.purpose,
            "state": self.state,
            "created": self.created,
        }

    def details(self) -> dict[str, Any]:
        return {**self.summary(), "technicalDescriptors": list(self.descriptors)}


def _json(status: int, data: Any) -> Response:
    return Response(status, json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode(), JSON)


class Rest:
    """Answers ``/customers/…`` for every account; all accounts see the same cars."""

    def __init__(
        self,
        cars: dict[str, Car],
        catalogue: Catalogue,
        oauth: OAuth,
        quota: Quota,
        bodies: Bodies,
        clock: SimClock,
        take_fault: Callable[[str], tuple[int, bytes, dict[str, str]] | None],
    ):
        self.cars = cars
        self.catalogue = catalogue
        self._oauth = oauth
        self._quota = quota
        self._bodies = bodies
        self._clock = clock
        self._take_fault = take_fault
        self.containers: dict[str, dict[str, Container]] = {}

    def _error(self, code: str, note: str | None = None) -> Response:
        status, body = self._bodies.api(code, note=note)
        return Response(status, body, JSON)

    @staticmethod
    def fault_endpoint(path: str) -> str | None:
        if path.rstrip("/") == "/customers/vehicles/mappings":
            return "mappings"
        if path.startswith("/customers/containers"):
            return "containers"
        match = _VEHICLE_PATH.match(path)
        if match and match["what"] in ("telematicData", "basicData"):
            return match["what"]
        return None

    def handle(self, request: Request) -> tuple[Response, str | None]:
        """The answer and the GCID it counted against (None when no token named an account)."""
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return self._error("CU-100"), None
        record = self._oauth.bearer(token.strip())
        if record is None:
            return self._error("CU-127", _CU127_NOTE), None
        within = self._quota.count(record.gcid)
        endpoint = self.fault_endpoint(request.path)
        fault = self._take_fault(endpoint) if endpoint else None
        if fault is not None:
            status, body, headers = fault
            return Response(status, body, JSON, headers), record.gcid
        if self._oauth.expired(record):
            return self._error("CU-127", _CU127_NOTE), record.gcid
        if "cardata:api:read" not in record.scope:
            return self._error("CU-103"), record.gcid
        if not within:
            return self._error("CU-429"), record.gcid
        if request.headers.get("x-version") != "v1":
            return self._error("CU-400", "The header x-version: v1 is required."), record.gcid
        return self._route(request, record.gcid), record.gcid

    def _route(self, request: Request, gcid: str) -> Response:
        path, method = request.path, request.method
        if path.rstrip("/") == "/customers/vehicles/mappings" and method == "GET":
            return _json(200, [car.mapping() for car in self.cars.values()])
        if path.rstrip("/") == "/customers/containers":
            if method == "GET":
                active = [c.summary() for c in self.containers.get(gcid, {}).values() if c.state == "ACTIVE"]
                return _json(200, {"containers": active})
            if method == "POST":
                return self._create(request, gcid)
        match = _CONTAINER_PATH.match(path)
        if match and method in ("GET", "DELETE"):
            return self._container(match["id"], gcid, delete=method == "DELETE")
        match = _VEHICLE_PATH.match(path)
        if match and method == "GET":
            return self._vehicle(request, gcid, match["vin"], match["what"])
        return self._error("CU-400", f"No such operation: {method} {path}")

    def _create(self, request: Request, gcid: str) -> Response:
        try:
            data = request.json()
        except ValueError:
            return self._error("CU-400", "The body is not valid JSON.")
        if not isinstance(data, dict):
            return self._error("CU-400", "The body must be a JSON object.")
        name, purpose, keys = data.get("name"), data.get("purpose"), data.get("technicalDescriptors")
        if (
            not isinstance(name, str)
            or not isinstance(purpose, str)
            or not isinstance(keys, list)
            or not keys
            or not all(isinstance(k, str) for k in keys)
        ):
            return self._error("CU-401", "name, purpose and a non-empty list technicalDescriptors are required.")
        unknown = [k for k in keys if not self.catalogue.knows(k)]
        if unknown:
            return self._error("CU-402", f"Unknown telematic key(s): {', '.join(unknown[:5])}")
        mine = self.containers.setdefault(gcid, {})
        if sum(1 for c in mine.values() if c.state == "ACTIVE") >= MAX_CONTAINERS:
            return self._error("CU-124")
        container_id = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(13))
        container = Container(container_id, name, purpose, iso_ms(self._clock.now()), list(keys))
        mine[container_id] = container
        logger.info("container %s (%s/%s, %d keys) created", container_id, name, purpose, len(keys))
        return _json(201, container.details())

    def _find(self, container_id: str, gcid: str) -> Container | Response:
        if not _CONTAINER_ID.match(container_id):
            return self._error("CU-121")
        container = self.containers.get(gcid, {}).get(container_id)
        return self._error("CU-105") if container is None else container

    def _container(self, container_id: str, gcid: str, delete: bool) -> Response:
        found = self._find(container_id, gcid)
        if isinstance(found, Response):
            return found
        if not delete:
            return _json(200, found.details())
        if found.state != "ACTIVE":
            return self._error("CU-122")
        found.state = "DELETED"
        return Response(204, b"", JSON)

    def _vehicle(self, request: Request, gcid: str, vin: str, what: str) -> Response:
        if not _VIN.match(vin):
            return self._error("CU-120")
        car = self.cars.get(vin)
        if car is None or car.mapping_type != "PRIMARY":
            return self._error("CU-104")
        if what == "telematicData":
            found = self._find(request.query.get("containerId", ""), gcid)
            if isinstance(found, Response):
                return found
            if found.state != "ACTIVE":
                return self._error("CU-105")
            return _json(200, {"telematicData": {k: car.entry(k, self.catalogue) for k in found.descriptors}})
        if what == "basicData":
            return Response(200, car.basic_data, JSON)
        if what == "smartMaintenanceTyreDiagnosis":
            return Response(200, car.tyre_diagnosis, JSON)
        if what == "image":
            return self._error("CU-126")
        if what == "chargingHistory":
            if not request.query.get("from") or not request.query.get("to"):
                return self._error("CU-401", "from and to are required.")
            return _json(200, {"data": []})
        return self._error("CU-400", f"No such operation: GET {request.path}")
