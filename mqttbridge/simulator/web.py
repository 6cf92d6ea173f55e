"""The simulator's HTTP plumbing: bytes in, a ``Request``; a ``Response`` out, bytes again.

It exists apart so both simulations (the legacy BMW one in ``server`` and the CarData one in
``cardata``) share one threaded HTTP server and the ``Request``/``Response`` they answer through,
without either knowing the other's API. The masking of the legacy API's secret form fields lives here
too, as both the request log (``server``) and the executions (``executions``) use it.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json;charset=UTF-8"
#: how often the serving loop looks for a stop request (seconds): ``stop`` waits at most this long
POLL_INTERVAL = 0.05
#: form and query fields whose values never reach the request log
MASKED_FIELDS = frozenset({"password", "bmwSkAnswer"})
MASK = "***"


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


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return Response(status, body, JSON_TYPE, dict(headers or {}))


def api_error(status: int, description: str, headers: dict[str, str] | None = None) -> Response:
    """The API's own error shape: ``{"error": {"code": N, "description": ...}}``."""
    return json_response(status, {"error": {"code": status, "description": description}}, headers)


def oauth_error(status: int, error: str, description: str) -> Response:
    """The token endpoint's OAuth error shape."""
    return json_response(status, {"error": error, "error_description": description})


def masked(fields: dict[str, str]) -> dict[str, str]:
    return {key: (MASK if key in MASKED_FIELDS else value) for key, value in fields.items()}


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
            response = api_error(400, "unreadable request body (bad Content-Length or chunk size)")
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


class RequestHandler(Protocol):
    """Anything that turns a ``Request`` into a ``Response`` (the legacy and the CarData simulations)."""

    def handle(self, request: Request) -> Response: ...


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    #: the default backlog of 5 drops connections when many clients (scale tests) connect at once
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulation: RequestHandler, family: socket.AddressFamily):
        self.address_family = family
        self.simulation: RequestHandler = simulation
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would do a reverse DNS lookup of the host; loopback needs none.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


#: the threaded HTTP server, for other simulations that bring their own ``RequestHandler``
SimHTTPServer = _HTTPServer
