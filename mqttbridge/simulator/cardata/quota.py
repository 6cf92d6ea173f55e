"""The REST quota: 50 requests per account (GCID) and UTC day, rejected requests included.

BMW answers the 51st request of the window with HTTP 403 ``CU-429``. The window resets at 00:00 UTC
of the simulator's clock ([KVB]'s reading; whether it is rolling is an open question).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .clock import SimClock, iso_ms, next_utc_midnight

logger = logging.getLogger(__name__)

__all__ = ["DAILY_LIMIT", "Quota"]

DAILY_LIMIT = 50


@dataclass
class _Window:
    resets_at: float
    used: int = 0


class Quota:
    """Counts REST requests per GCID; ``count`` says whether this one is still inside the limit."""

    def __init__(self, clock: SimClock, limit: int = DAILY_LIMIT):
        self._clock = clock
        self.limit = limit
        self._windows: dict[str, _Window] = {}

    def _window(self, gcid: str) -> _Window:
        now = self._clock.now()
        window = self._windows.get(gcid)
        if window is None or now >= window.resets_at:
            window = self._windows[gcid] = _Window(next_utc_midnight(now))
        return window

    def count(self, gcid: str) -> bool:
        """Count one request; False from the 51st of the window on."""
        window = self._window(gcid)
        window.used += 1
        if window.used == self.limit + 1:
            logger.info("account %s… used up its %d requests until %s", gcid[:8], self.limit, iso_ms(window.resets_at))
        return window.used <= self.limit

    def state(self, gcid: str | None) -> dict[str, object]:
        """``{"used", "limit", "resets_at"}`` of one account (or, with None, the busiest one)."""
        if gcid is None:
            gcid = max(self._windows, key=lambda g: self._window(g).used, default="")
        window = self._window(gcid)
        return {"used": window.used, "limit": self.limit, "resets_at": iso_ms(window.resets_at)}
