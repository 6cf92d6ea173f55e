"""Each region's answer to "too many requests", recognised in the vendor's own words.

Why not from the library's exceptions: only the EU-style regions raise ``RateLimitingError``
(resCode 5091). US Kia turns every error answer into a bare ``requests.RequestException``; US
Hyundai's daily limit (HATA errorCode 502, errorSubCode HT_534) became ``ServiceTemporaryUnavailable``
in newer releases and ``APIError`` before; Canada raises ``APIError`` with the text. So the backend
looks at the answers the call received (``metering``) and, when the call failed, says
``RateLimitedError`` if one of them was a limit answer: the poller then backs off until the reset
(CONTRACT section 8) instead of retrying into a longer lock-out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from mqttbridge.backends.hyundai_kia.metering import Exchange
from mqttbridge.errors import RateLimitedError

log = logging.getLogger(__name__)

#: HTTP statuses that are a limit answer by themselves (509: the EU API's status for resCode 5091)
LIMIT_STATUSES: dict[int, str | None] = {429: None, 509: "5091"}
#: (JSON key, value) pairs that are a limit answer, with the vendor code they report
LIMIT_CODES: dict[tuple[str, str], str] = {
    ("resCode", "5091"): "5091",  # EU, Australia, New Zealand, China, India, Brazil (CCS2)
    ("errorSubCode", "HT_534"): "HT_534",  # US Hyundai / Genesis (HATA, errorCode 502)
}
#: words in an error message that mean a request limit (lower case; US Kia and Canada have no known
#: capture of their limit answer, so their messages are read for these)
LIMIT_PHRASES: tuple[str, ...] = (
    "exceeds number of requests",
    "exceeded the daily remote service request limit",
    "maximum number of daily",
    "request limit",
    "too many requests",
    "rate limit",
)
#: where the regions put an error's text
_TEXT_KEYS = ("resMsg", "errorMessage", "errorSubMessage", "errorDesc", "message", "error", "retMsg")
_CODE_KEYS = ("resCode", "errorSubCode", "errorCode")


@dataclass(frozen=True)
class LimitAnswer:
    """A limit answer: what to put into ``RateLimitedError``."""

    http_status: int | None
    vendor_code: str | None
    retry_after: float | None
    url: str

    def describe(self) -> str:
        parts = [f"HTTP {self.http_status}" if self.http_status else "", self.vendor_code or ""]
        return " ".join(part for part in parts if part) or "a limit answer"


def _retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` in seconds, from its number or HTTP-date form; None if absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def _objects(value: Any) -> Iterable[dict[str, Any]]:
    """Every JSON object in an answer, the outer one first (errors sit at various depths)."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


def _phrase(text: str) -> bool:
    lowered = text.lower()
    return any(phrase in lowered for phrase in LIMIT_PHRASES)


def _code_in(body: Any) -> tuple[bool, str | None]:
    """Whether a JSON body is a limit answer, and the vendor code it names."""
    for item in _objects(body):
        for (key, value), code in LIMIT_CODES.items():
            if str(item.get(key, "")) == value:
                return True, code
        for key in _TEXT_KEYS:
            text = item.get(key)
            if isinstance(text, str) and _phrase(text):
                named = next((str(item[k]) for k in _CODE_KEYS if item.get(k) not in (None, "")), None)
                return True, named
    return False, None


def limit_answer(exchanges: Iterable[Exchange], now: datetime | None = None) -> LimitAnswer | None:
    """The last limit answer among a call's exchanges, or None."""
    found: LimitAnswer | None = None
    moment = now or datetime.now(UTC)
    for exchange in exchanges:
        limited, code = False, None
        try:
            body: Any = json.loads(exchange.body) if exchange.body else None
        except ValueError:
            body = None
        if body is not None:
            limited, code = _code_in(body)
        elif exchange.body and _phrase(exchange.body):
            limited = True
        if exchange.status in LIMIT_STATUSES:
            limited = True
            code = code or LIMIT_STATUSES[exchange.status]
        if limited:
            found = LimitAnswer(exchange.status, code, _retry_after(exchange.retry_after, moment), exchange.url)
    return found


def rate_limited(answer: LimitAnswer, what: str) -> RateLimitedError:
    """The limit answer as ours: the budget then blocks the account until the reset (or Retry-After)."""
    return RateLimitedError(
        f"{what}: the vendor's request limit is exceeded ({answer.describe()}); no calls until it resets",
        retry_after=answer.retry_after,
        http_status=answer.http_status,
        vendor_code=answer.vendor_code,
    )
