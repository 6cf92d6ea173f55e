"""The simulator's clock: real UTC time plus what tests added with ``POST /_sim/clock``.

One clock drives token lifetimes, the quota's 00:00 UTC reset and message timestamps, so a test can
jump an hour or two weeks ahead without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["SimClock", "iso_ms", "iso_s", "next_utc_midnight"]


class SimClock:
    """Epoch seconds from ``source`` (default: the wall clock) plus an offset that only grows."""

    def __init__(self, source: Callable[[], float] = time.time):
        self._source = source
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._source() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the simulated time forward; returns the new time."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
            return self._source() + self._offset

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)


def iso_ms(moment: float) -> str:
    """``2025-09-29T16:48:19.019Z``: the vendor's timestamps (REST values, stream envelope)."""
    stamp = datetime.fromtimestamp(moment, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def iso_s(moment: float) -> str:
    """``2025-10-01T10:12:39Z``: stream data entries often come without milliseconds."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_utc_midnight(moment: float) -> float:
    """The next 00:00 UTC after ``moment`` (the quota reset as [KVB] assumes it)."""
    day = datetime.fromtimestamp(moment, UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
