"""The test-control fault rules of the legacy simulator (``POST /_sim/faults``) and what they serve.

A rule makes the next requests to an endpoint fail (or come late), or decides how the next remote
service executions end; this module checks a rule's JSON and builds the failure the real API gave.
"""

from __future__ import annotations

import http
import math
from dataclasses import dataclass
from typing import Any

from .web import Response, api_error, oauth_error

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


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


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


def is_whole_number(value: Any) -> bool:
    """An int that is not a bool (JSON ``true`` would pass ``isinstance(value, int)``); both simulators' checks."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
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
    if not is_whole_number(count) or count < 0:
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
    if http_status is not None and (not is_whole_number(http_status) or not 200 <= http_status <= 599):
        raise ValueError(f"http_status must be a whole number from 200 to 599, not {http_status!r}")
    retry_after = data.get("retry_after")
    if retry_after is not None and (not is_number(retry_after) or retry_after < 0):
        raise ValueError(f"retry_after must be a number of seconds >= 0 or null, not {retry_after!r}")
    body = data.get("body")
    if body is not None and not isinstance(body, str):
        raise ValueError("body must be a string (it is served as it is) or null")
    content_type = data.get("content_type", "text/plain")
    if not isinstance(content_type, str) or not content_type or "\n" in content_type:
        raise ValueError(f"content_type must be a media type such as text/plain, not {content_type!r}")
    delay = data.get("delay")
    if delay is not None and (not is_number(delay) or not 0 <= delay <= 3600):
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


def fault_response(rule: FaultRule, endpoint: str | None) -> Response:
    status = rule.http_status or 500
    headers: dict[str, str] = {}
    if rule.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(rule.retry_after))
    if rule.body is not None:
        return Response(status, rule.body.encode("utf-8"), rule.content_type, headers)
    if status == 410:
        return Response(status, GONE_PAGE.encode("utf-8"), "text/html;charset=UTF-8", headers)
    if status == 500:
        response = api_error(500, SERVER_PANIC, headers)
    elif endpoint == "token" and status == 401:
        response = oauth_error(401, "client disabled", "provided clients are disabled")
    elif endpoint == "token" and status == 400:
        response = oauth_error(400, "invalid_grant", "the authN circuit failed")
    elif status == 429:
        response = api_error(429, "Too many requests (simulated fault)", headers)
    else:
        response = api_error(status, f"{_phrase(status)} (simulated fault)", headers)
    response.headers.update(headers)
    return response
