"""A tiny in-test stand-in for BMW CarData's OAuth and REST servers, on loopback, answering with the real
bodies of shared/fixtures/bmw_cardata; scripted answers and faults per test. Not the simulator: only what the
backend's unit tests need to see (PKCE checked, refresh tokens rotating, every REST request recorded)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mqttbridge.backends.bmw_cardata.backend import CarDataBackend
from mqttbridge.backends.bmw_cardata.tokens import Tokens
from mqttbridge.statestore import StateStore

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "bmw_cardata"
if not FIXTURES.exists():  # the worktree layout: /work/main/tests -> /work/shared
    FIXTURES = Path("/work/shared/fixtures/bmw_cardata")
GCID = "aa111192-d570-4d3d-8835-656ee00edcd7"
VIN1 = "WBY31AW090TEST001"
VIN2 = "WBY1Z21020TEST002"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def jwt(exp: float, tag: str) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'sub': GCID, 'exp': int(exp), 'jti': tag})}.sig"


class Clock:
    def __init__(self, start: float | None = None):
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, str]
    body: Any
    headers: dict[str, str]


@dataclass
class FakeCarData:
    clock: Clock = field(default_factory=Clock)
    requests: list[Seen] = field(default_factory=list)
    #: answers to device-code polls, consumed in order: (status, body) or "approve"; then pending (or tokens)
    device_script: list[Any] = field(default_factory=list)
    approved: bool = False
    codes: list[dict[str, Any]] = field(default_factory=list)
    refresh_valid: set[str] = field(default_factory=set)
    access_valid: set[str] = field(default_factory=set)
    refresh_answer: tuple[int, Any] | None = None
    issued: int = 0
    #: the next id tokens to hand out (else a JWT); the stream tests put a broker password here
    next_id_tokens: list[str] = field(default_factory=list)
    #: (path substring, status, body, headers) answered once each, before the normal answer
    faults: list[tuple[str, int, Any, dict[str, str]]] = field(default_factory=list)
    mappings: Any = field(default_factory=lambda: fixture("rest/mappings_two_primary.json"))
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    container_limit: int = 10
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- server ---

    def start(self) -> FakeCarData:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _answer(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                form = (
                    {k: v[0] for k, v in parse_qs(raw).items()}
                    if "urlencoded" in (self.headers.get("Content-Type") or "")
                    else {}
                )
                body = json.loads(raw) if raw and "json" in (self.headers.get("Content-Type") or "") else None
                seen = Seen(self.command, split.path, parse_qs(split.query), form, body, dict(self.headers.items()))
                with fake.lock:
                    fake.requests.append(seen)
                    status, answer, headers = fake.route(seen)
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def account(self, name: str = "bmw", **extra: Any) -> Any:
        values = {
            "name": name,
            "provider": "bmw_cardata",
            "client_id": "00000000-1111-2222-3333-444444444444",
            "auth_url": self.url,
            "api_url": self.url,
            "stream_host": "127.0.0.1",
            "stream_port": 1,
            "stream_tls": False,
            "stream_ca": None,
            "stream": SimpleNamespace(republish=None),
            "timeout": 5.0,
            "retries": 2,
            "poll": SimpleNamespace(interval=3600),
        }
        values.update(extra)
        return SimpleNamespace(**values)

    # --- views for tests ---

    def rest_calls(self) -> list[Seen]:
        return [r for r in self.requests if r.path.startswith("/customers")]

    def count(self, method: str, fragment: str) -> int:
        return sum(1 for r in self.requests if r.method == method and fragment in r.path)

    def issue(self) -> dict[str, Any]:
        self.issued += 1
        n = self.issued
        access, refresh = f"access-{n}-xxxxxxxx", f"refresh-{n}-xxxxxxxx"
        self.access_valid.add(access)
        self.refresh_valid.add(refresh)
        id_token = self.next_id_tokens.pop(0) if self.next_id_tokens else jwt(self.clock() + 3600, f"id-{n}")
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 3599,
            "refresh_token": refresh,
            "scope": "cardata:api:read openid cardata:streaming:read authenticate_user",
            "id_token": id_token,
            "gcid": GCID,
        }

    # --- routes ---

    def route(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        for fault in list(self.faults):
            if fault[0] in seen.path:
                self.faults.remove(fault)
                return fault[1], fault[2], fault[3]
        if seen.path == "/gcdm/oauth/device/code":
            return self.device_code(seen)
        if seen.path == "/gcdm/oauth/token":
            return self.token(seen)
        if seen.path.startswith("/customers"):
            auth = seen.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in self.access_valid:
                return 403, fixture("rest/error_403_cu127_invalid_token.json"), {}
            if seen.headers.get("x-version") != "v1":
                return 400, {"exveErrorId": "CU-400", "exveErrorMsg": "Bad request"}, {}
            return self.rest(seen)
        return 404, {}, {}

    def device_code(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        form = seen.form
        assert form["response_type"] == "device_code" and form["code_challenge_method"] == "S256"
        assert form["scope"] == "authenticate_user openid cardata:api:read cardata:streaming:read"
        n = len(self.codes) + 1
        code = {"user_code": f"CODE{n:04d}", "device_code": f"device-{n}", "challenge": form["code_challenge"]}
        self.codes.append(code)
        body = dict(fixture("auth/device_code_response_doc_example.json"))
        body.update(user_code=code["user_code"], device_code=code["device_code"])
        return 200, body, {}

    def token(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        form = seen.form
        if form.get("grant_type") == "refresh_token":
            if self.refresh_answer is not None:
                return self.refresh_answer[0], self.refresh_answer[1], {}
            if form.get("refresh_token") not in self.refresh_valid:
                return 400, fixture("auth/token_error_invalid_grant.json"), {}
            self.refresh_valid.discard(form["refresh_token"])  # rotation
            return 200, self.issue(), {}
        code = next(c for c in self.codes if c["device_code"] == form.get("device_code"))
        digest = hashlib.sha256(form["code_verifier"].encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != code["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE mismatch"}, {}
        if self.device_script:
            step = self.device_script.pop(0)
            if step == "approve":
                return 200, self.issue(), {}
            return step[0], step[1], {}
        if self.approved:
            return 200, self.issue(), {}
        return 403, fixture("auth/token_error_authorization_pending_doc.json"), {}

    def rest(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        path = seen.path
        if path == "/customers/vehicles/mappings":
            return 200, self.mappings, {}
        if path == "/customers/containers" and seen.method == "GET":
            listed = [{k: v for k, v in c.items() if k != "technicalDescriptors"} for c in self.containers.values()]
            return 200, {"containers": listed}, {}
        if path == "/customers/containers" and seen.method == "POST":
            if len([c for c in self.containers.values() if c["state"] == "ACTIVE"]) >= self.container_limit:
                return 403, {"exveErrorId": "CU-124", "exveErrorMsg": "Maximum number of containers"}, {}
            cid = f"C{len(self.containers) + 1:012d}"
            self.containers[cid] = {
                "containerId": cid,
                "name": seen.body["name"],
                "purpose": seen.body["purpose"],
                "state": "ACTIVE",
                "created": f"2026-11-29T00:00:{len(self.containers):02d}.000Z",
                "technicalDescriptors": seen.body["technicalDescriptors"],
            }
            return 201, self.containers[cid], {}
        if path.startswith("/customers/containers/") and seen.method == "DELETE":
            self.containers.pop(path.rsplit("/", 1)[1], None)
            return 204, b"", {}
        vin = path.split("/")[3] if path.startswith("/customers/vehicles/") else ""
        if path.endswith("/basicData"):
            name = "basic_data_bev_i4m50.json" if vin == VIN1 else "basic_data_ice_x1.json"
            return 200, fixture(f"rest/{name}"), {}
        if path.endswith("/telematicData"):
            cid = seen.query.get("containerId", [""])[0]
            if cid not in self.containers:
                return 403, fixture("constructed/error_403_cu105_container.json"), {}
            name = "telematic_data_bev_i4m50.json" if vin == VIN1 else "telematic_data_ice_x1_parked.json"
            return 200, fixture(f"rest/{name}"), {}
        return 404, {"exveErrorId": "CU-400"}, {}


def backend_for(fake: FakeCarData, store: StateStore) -> CarDataBackend:
    """A backend logged in to ``fake`` (its tokens saved once per store, as ``mqttbridge login`` leaves them)."""
    if store.read_json("tokens/bmw.json") is None:
        helper = CarDataBackend(fake.account(), store, clock=fake.clock)
        helper.auth._save(Tokens.from_answer(fake.issue(), fake.clock()))
        helper.close()
    return CarDataBackend(fake.account(), store, clock=fake.clock, sleep=lambda _s: None)
