"""``/_sim/faults`` for the CarData simulator: CONTRACT section 6's rules with section 9's endpoints.

A rule may name the vendor error to answer with (``"error": "CU-429"`` or ``"access_denied"``), so a
test gets BMW's real body and status, not a generic one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mqttbridge.simulator.faults import is_whole_number

from .bodies import API_STATUS, OAUTH_STATUS, Bodies

__all__ = ["ENDPOINTS", "Fault", "FaultBook", "parse_fault"]

ENDPOINTS = ("device_code", "token", "mappings", "containers", "telematicData", "basicData", "stream")
_OAUTH_ENDPOINTS = ("device_code", "token")


@dataclass
class Fault:
    endpoint: str
    count: int
    http_status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    disconnect: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "count": self.count,
            "http_status": self.http_status,
            "error": self.error,
            "retry_after": self.retry_after,
            "disconnect": self.disconnect,
        }


def parse_fault(data: Any) -> Fault:
    """Validate a ``POST /_sim/faults`` body; ``ValueError`` says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError('a fault rule is a JSON object such as {"endpoint": "telematicData", "http_status": 500}')
    unknown = sorted(set(data) - {"endpoint", "http_status", "count", "error", "retry_after", "disconnect"})
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}")
    endpoint = data.get("endpoint")
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint must be one of {', '.join(ENDPOINTS)}, not {endpoint!r}")
    count = data.get("count", 1)
    if not is_whole_number(count) or count < 0:
        raise ValueError(f"count must be a whole number >= 0, not {count!r}")
    disconnect = data.get("disconnect", False)
    if not isinstance(disconnect, bool) or (disconnect and endpoint != "stream"):
        raise ValueError("disconnect is true or false, and only for endpoint stream")
    if endpoint == "stream" and not disconnect and count > 0:
        raise ValueError('the stream takes {"endpoint": "stream", "disconnect": true}')
    status = data.get("http_status")
    if status is not None and (not is_whole_number(status) or not 400 <= status <= 599):
        raise ValueError(f"http_status must be a whole number from 400 to 599, not {status!r}")
    error = data.get("error")
    if error is not None:
        known = OAUTH_STATUS if endpoint in _OAUTH_ENDPOINTS else API_STATUS
        if not isinstance(error, str) or error not in known:
            raise ValueError(f"error for {endpoint} must be one of {', '.join(known)}, not {error!r}")
    retry_after = data.get("retry_after")
    if retry_after is not None and (
        not isinstance(retry_after, int | float) or isinstance(retry_after, bool) or retry_after < 0
    ):
        raise ValueError(f"retry_after must be a number of seconds >= 0, not {retry_after!r}")
    if count > 0 and not disconnect and status is None and error is None:
        raise ValueError("give http_status or error (or count 0 to clear the rule)")
    return Fault(endpoint, count, status, error, retry_after, disconnect)


class FaultBook:
    """The active rules, one per endpoint (a new rule replaces the old one)."""

    def __init__(self, bodies: Bodies):
        self._bodies = bodies
        self.rules: dict[str, Fault] = {}

    def add(self, rule: Fault) -> None:
        if rule.count > 0 and not rule.disconnect:
            self.rules[rule.endpoint] = rule
        else:
            self.rules.pop(rule.endpoint, None)

    def take(self, endpoint: str) -> tuple[int, bytes, dict[str, str]] | None:
        """Use up one request of the endpoint's rule: (status, body, headers), or None."""
        rule = self.rules.get(endpoint)
        if rule is None:
            return None
        rule.count -= 1
        if rule.count <= 0:
            del self.rules[endpoint]
        headers = {"Retry-After": str(math.ceil(rule.retry_after))} if rule.retry_after is not None else {}
        if endpoint in _OAUTH_ENDPOINTS:
            error = rule.error or ("gateway_fault" if (rule.http_status or 500) >= 500 else "invalid_request")
            status, body = self._bodies.oauth(error)
        else:
            status = rule.http_status or 500
            error = rule.error or ("CU-503" if status == 503 else "CU-500" if status >= 500 else "CU-400")
            status, body = self._bodies.api(error)
        return rule.http_status or status, body, headers
