"""Commands that arrive for a vehicle in the gap of a take-over: its owner died, but not yet certainly (CONTRACT
§10). Nobody may act on them then: the dying instance might still, the new owner not yet. They are kept here
and answered when the new owner takes the vehicle: ``REJECTED`` ("send it again") unless the previous owner acted
on them after all, which its retained record of that command would show (in a cluster an instance publishes a
command's record before it calls the vendor, so no new record means nothing was sent). A command is so never
executed twice, and never left without an answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from mqttbridge.mqtt import Incoming

#: at most this many kept per vehicle (a burst of taps in the gap): the oldest go unanswered beyond it
MAX_PER_VEHICLE = 20


@dataclass(frozen=True)
class Parked:
    msg: Incoming
    command: str
    at: float
    #: the retained record of this command when it arrived: a different one at the take-over means it was acted on
    record_then: bytes | None


class ParkedCommands:
    def __init__(self, keep_s: float):
        #: how long one is kept: a previous owner that was only slow and lives on answers it itself
        self.keep_s = keep_s
        self._by_vin: dict[str, list[Parked]] = {}
        self._lock = threading.Lock()

    def park(self, vin: str, msg: Incoming, command: str, now: float, record_then: bytes | None) -> None:
        with self._lock:
            kept = self._by_vin.setdefault(vin, [])
            kept.append(Parked(msg, command, now, record_then))
            del kept[:-MAX_PER_VEHICLE]

    def take(self, vin: str, now: float) -> list[Parked]:
        """What is still kept for ``vin`` (it is being taken over now); forgets it."""
        with self._lock:
            kept = self._by_vin.pop(vin, [])
        return [p for p in kept if now - p.at <= self.keep_s]

    def prune(self, now: float) -> None:
        with self._lock:
            for vin in list(self._by_vin):
                self._by_vin[vin] = [p for p in self._by_vin[vin] if now - p.at <= self.keep_s]
                if not self._by_vin[vin]:
                    del self._by_vin[vin]
