"""Recording the vendor's answers: a ``requests`` hook keeps every HTTP answer a provider's capture reads.

A provider's ``capture`` attaches a ``Recorder`` to its sessions, ``pick``s the answers worth keeping
and yields them as ``Capture`` items; the credentials seen in the headers travel with each answer so
they are masked wherever they appear in the files.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from mqttbridge.errors import MqttBridgeError

log = logging.getLogger(__name__)

#: request and response headers whose values are credentials (collected, then masked wherever they appear)
SECRET_HEADERS = re.compile(r"auth|token|sid|stamp|device|session|cookie|pin|key|secret", re.IGNORECASE)


@dataclass
class Exchange:
    """One HTTP answer as the vendor sent it, with the request it answered."""

    method: str
    url: str
    status: int
    content: bytes
    content_type: str
    secrets: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def json(self) -> Any:
        """The decoded body, or None when it is not JSON."""
        try:
            return json.loads(self.content.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError):
            return None


def _header_secrets(headers: Any) -> list[str]:
    found = []
    for name, value in dict(headers or {}).items():
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str) and SECRET_HEADERS.search(str(name)) and name.lower() != "content-length":
            found.append(value)
    return found


class Recorder:
    """A ``requests`` response hook that keeps every answer of the sessions it is attached to."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    def attach(self, session: requests.Session) -> requests.Session:
        session.hooks.setdefault("response", []).append(self._hook)
        return session

    def _hook(self, response: requests.Response, *_args: Any, **_kwargs: Any) -> requests.Response:
        request = response.request
        secrets = _header_secrets(getattr(request, "headers", None)) + _header_secrets(response.headers)
        self.exchanges.append(
            Exchange(
                method=str(getattr(request, "method", "GET") or "GET"),
                url=str(response.url or getattr(request, "url", "")),
                status=response.status_code,
                content=response.content or b"",
                content_type=response.headers.get("Content-Type", ""),
                secrets=secrets,
            )
        )
        return response

    @contextmanager
    def window(self) -> Iterator[list[Exchange]]:
        """The answers recorded while the ``with`` block runs (filled in when it ends)."""
        start = len(self.exchanges)
        got: list[Exchange] = []
        try:
            yield got
        finally:
            got.extend(self.exchanges[start:])

    def read(self, what: str, call: Callable[..., object], *args: Any, **kwargs: Any) -> list[Exchange]:
        """The answers recorded while ``call(*args, **kwargs)`` runs. A read that fails is logged and its answers
        are kept all the same: an error answer is worth capturing too."""
        with self.window() as got:
            try:
                call(*args, **kwargs)
            except MqttBridgeError as exc:
                log.warning("%s: %s (the answers are kept)", what, exc)
        return got


def pick(exchanges: list[Exchange], pattern: str) -> Exchange | None:
    """The last answer whose URL path matches ``pattern``: a successful one if there is any."""
    matching = [e for e in exchanges if re.search(pattern, e.path)]
    good = [e for e in matching if 200 <= e.status < 300]
    found = good or matching
    return found[-1] if found else None


@dataclass
class Capture:
    """One answer to write: ``parts`` is its path below the output folder, before anonymising."""

    parts: tuple[str, ...]
    exchange: Exchange
    kind: str
    vehicle: str | None = None
    #: the replay options this file needs (for ``status`` answers)
    replay: dict[str, str] | None = None
