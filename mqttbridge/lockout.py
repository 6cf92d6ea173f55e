"""Unlock lockout: wrong unlock codes are counted per vehicle, and after ``attempts`` of them within
``window`` the vehicle's UNLOCK commands are refused for ``duration``, even with the right code.

Without it, an unlock code of four digits is found by anyone who may publish to the broker in at
most 10,000 tries. The state is kept in ``state_dir`` so that restarting the bridge (or making it
crash) does not reset the count or end a lockout.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from mqttbridge.statestore import StateStore

log = logging.getLogger(__name__)

LOCKOUT_FILE = "unlock_lockout.json"


@dataclass
class _VehicleState:
    failures: list[float] = field(default_factory=list)
    until: float | None = None


def clock_text(moment: float) -> str:
    """A wall time as the local ``HH:MM`` a user reads in the refusal."""
    return datetime.fromtimestamp(moment).astimezone().strftime("%H:%M")


class UnlockLockout:
    def __init__(
        self, store: StateStore, *, attempts: int, window: float, duration: float, now: Callable[[], float] = time.time
    ):
        self.store = store
        self.attempts = attempts
        self.window = window
        self.duration = duration
        self.now = now
        self._lock = threading.Lock()
        self._state: dict[str, _VehicleState] = {}

    def load(self) -> None:
        """The previous run's counts and lockouts; a corrupt file is set aside by the store and reported."""
        data = self.store.read_json(LOCKOUT_FILE)
        if data is None:
            return
        vehicles = data.get("vehicles") if isinstance(data, dict) else None
        if not isinstance(vehicles, dict):
            log.warning("%s is not a lockout file; starting without it", self.store.path(LOCKOUT_FILE))
            return
        with self._lock:
            for vin, item in vehicles.items():
                try:
                    failures = [float(t) for t in item.get("failures", [])]
                    until = item.get("until")
                    until = None if until is None else float(until)
                except (AttributeError, TypeError, ValueError):
                    log.warning("%s: dropped the entry of %s: unreadable", LOCKOUT_FILE, vin)
                    continue
                if any(not math.isfinite(t) for t in [*failures, until or 0.0]):
                    log.warning("%s: dropped the entry of %s: unreadable", LOCKOUT_FILE, vin)
                    continue
                self._state[str(vin)] = _VehicleState(failures, until)
        for vin, until in self.locked().items():
            log.warning(
                "unlocking %s stays locked out until %s (after wrong codes before the restart)", vin, clock_text(until)
            )

    def locked(self) -> dict[str, float]:
        """Vehicles locked out now, with the end of their lockout."""
        now = self.now()
        with self._lock:
            return {vin: s.until for vin, s in self._state.items() if s.until is not None and s.until > now}

    def refusal(self, vin: str) -> str | None:
        """Why an UNLOCK of ``vin`` is refused now, whatever its code; None when it is not locked out."""
        with self._lock:
            state = self._state.get(vin)
            until = state.until if state else None
        if until is None or until <= self.now():
            return None
        return f"locked out after {self.attempts} wrong codes until {clock_text(until)}"

    def wrong_code(self, vin: str) -> float | None:
        """Count a wrong code; the end of the lockout when this one started it, else None."""
        now = self.now()
        with self._lock:
            state = self._state.setdefault(vin, _VehicleState())
            state.failures = [t for t in state.failures if now - t < self.window] + [now]
            started = None
            if len(state.failures) >= self.attempts:
                state.until = started = now + self.duration
                state.failures = []
            self._save()
        return started

    def right_code(self, vin: str) -> None:
        """A right code outside a lockout forgets the wrong ones before it."""
        with self._lock:
            state = self._state.get(vin)
            if state is None or not state.failures:
                return
            state.failures = []
            self._save()

    def _save(self) -> None:
        now = self.now()
        data = {
            vin: {"failures": s.failures, "until": s.until}
            for vin, s in self._state.items()
            if s.failures or (s.until is not None and s.until > now)
        }
        self.store.write_json(LOCKOUT_FILE, {"format": 1, "vehicles": data})
