"""Turning vendor JSON into the contract's published form: snake_case names, JSON numbers, ISO times."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

log = logging.getLogger(__name__)

_SPLIT_LOWER_UPPER = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT_ACRONYM = re.compile(r"(?<=[A-Z])(?=[A-Z][a-z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def snake_case(name: str) -> str:
    """``doorDriverFront`` -> ``door_driver_front``; ``internalDataTimeUTC`` -> ``internal_data_time_utc``."""
    text = _SPLIT_ACRONYM.sub("_", _SPLIT_LOWER_UPPER.sub("_", name))
    return _NON_WORD.sub("_", text.lower()).strip("_")


def number(value: Any) -> int | float | None:
    """A JSON number, with integral floats (``18.0`` in some captures) as ints; else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                return None
        else:
            return None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        if value.is_integer():
            return int(value)
    return value


def snake_keys(value: Any) -> Any:
    """Recursively rename dict keys to snake_case; numbers normalised; lists kept as lists."""
    if isinstance(value, dict):
        return {snake_case(str(k)): snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snake_keys(v) for v in value]
    if isinstance(value, float):
        return number(value)
    return value


def flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects become ``parent_child`` keys; lists stay whole (published as JSON)."""
    flat: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}_{snake_case(str(key))}" if prefix else snake_case(str(key))
        if isinstance(item, dict):
            flat.update(flatten(item, name))
        else:
            flat[name] = snake_keys(item)
    return flat


_TS = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2})?$"
)


def parse_timestamp(value: Any, *, default_tz: timezone = UTC) -> datetime | None:
    """Parse the vendor's times: ``+0100`` without a colon, ``Z``, or no zone (taken as ``default_tz``)."""
    if not isinstance(value, str):
        return None
    match = _TS.match(value.strip())
    if not match:
        return None
    zone = match["zone"]
    text = f"{match['date']}T{match['time']}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if zone is None:
        return parsed.replace(tzinfo=default_tz)
    if zone == "Z":
        return parsed.replace(tzinfo=UTC)
    sign = 1 if zone[0] == "+" else -1
    digits = zone[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    if offset >= timedelta(hours=24):
        return None
    return parsed.replace(tzinfo=timezone(sign * offset))


def iso(value: datetime) -> str:
    """ISO 8601 with a UTC offset, to the second (the contract's timestamp form)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat(timespec="seconds")
