"""Every HTTP request the library makes, seen from the thread that made it.

Why here and not in the library's sessions: each region makes its requests differently (its own
session subclass, a retrying session, module-level ``requests.post`` in the EU CCI login and token
check), and all of them end in ``requests.Session.request``. One wrapper there, active only in a
thread that opened a ``metered()`` or ``probing()`` block, lets the backend

* count every vendor request, so the budget hears of the extra ones (a login, Canada's token check,
  a control token) and not only of the one call it planned;
* see the answers, so a rate-limit answer is recognised whichever exception the library made of it
  (a bare ``RequestException`` in US Kia, ``ServiceTemporaryUnavailable`` for US Hyundai's HATA limit);
* ask the library whether it would send a command at all (``probing``), with nothing sent.

In every other thread (and other backends) the wrapper only passes the call on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger(__name__)

#: characters of an answer kept for recognising limits (bodies of errors are short)
BODY_KEPT = 4000
_MARK = "_mqttbridge_hyundai_kia_meter"

_local = threading.local()
_install_lock = threading.Lock()


class ProbeReached(BaseException):
    """The library got as far as sending a request (in a probe, nothing is sent).

    A BaseException, so the library's own ``except Exception`` around a request does not swallow it."""


@dataclass(frozen=True)
class Exchange:
    """One request and what came back (``status`` None: no answer)."""

    method: str
    url: str
    status: int | None
    body: str = ""
    retry_after: str | None = None


@dataclass
class Meter:
    """The requests one thread made inside a ``metered()`` block."""

    requests: int = 0
    exchanges: list[Exchange] = field(default_factory=list)

    def record(self, method: str, url: str, response: Any) -> None:
        status = getattr(response, "status_code", None)
        try:
            body = response.text[:BODY_KEPT] if response is not None else ""
        except Exception:  # an undecodable body is no reason to fail the call
            body = ""
        headers = getattr(response, "headers", None) or {}
        retry_after = headers.get("Retry-After") if hasattr(headers, "get") else None
        self.exchanges.append(Exchange(str(method).upper(), str(url), status, body, retry_after))


@dataclass
class Probe:
    """A ``probing()`` block: whether the library tried to send (even if it swallowed ``ProbeReached``)."""

    reached: str | None = None


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        state = getattr(_local, "state", None)
        if state is None:
            return original(self, method, url, *args, **kwargs)
        if isinstance(state, Probe):
            state.reached = state.reached or f"{str(method).upper()} {url}"
            raise ProbeReached(state.reached)
        state.requests += 1
        response = original(self, method, url, *args, **kwargs)
        state.record(method, url, response)
        return response

    setattr(request, _MARK, True)
    request.__name__ = "request"
    request.__doc__ = getattr(original, "__doc__", None)
    return request


def install() -> None:
    """Wrap ``requests.Session.request`` once (again, when something replaced the wrapper since)."""
    with _install_lock:
        current = requests.Session.__dict__.get("request")
        if current is None or getattr(current, _MARK, False):
            return
        requests.Session.request = _wrap(current)  # type: ignore[method-assign]


@contextmanager
def metered() -> Iterator[Meter]:
    """Count and keep the requests this thread makes until the block ends (an outer block's meter is reused)."""
    install()
    outer = getattr(_local, "state", None)
    if isinstance(outer, Meter):
        yield outer
        return
    meter = Meter()
    _local.state = meter
    try:
        yield meter
    finally:
        _local.state = outer


@contextmanager
def probing() -> Iterator[Probe]:
    """Until the block ends, a request of this thread raises ``ProbeReached`` instead of being sent."""
    install()
    outer = getattr(_local, "state", None)
    probe = Probe()
    _local.state = probe
    try:
        yield probe
    finally:
        _local.state = outer
