"""Battery protection: when a forced (car-waking) read is allowed (CONTRACT section 8).

A forced read wakes the car's modem, and 150-200 of them in a day and a half flattened a new Kona's
12 V battery (vendor-api-facts B4). So: never in the quiet hours, never while the last known 12 V
level is below the threshold, and never on a schedule unless ``force_interval`` asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any


def parse_clock(text: str) -> time:
    """``HH:MM`` (local time: no zone) or ``HH:MM UTC`` (a time in UTC)."""
    clock, _, zone = text.partition(" ")
    hours, minutes = clock.split(":")
    return time(int(hours), int(minutes), tzinfo=UTC if zone == "UTC" else None)


@dataclass(frozen=True)
class ForcedReadPolicy:
    quiet_start: time | None
    quiet_end: time | None
    min_battery_12v: int
    force_interval: int | None

    @classmethod
    def from_poll(cls, poll: Any) -> ForcedReadPolicy:
        start = end = None
        if poll.quiet_hours:
            first, second = poll.quiet_hours.split("-")
            start, end = parse_clock(first), parse_clock(second)
        return cls(start, end, poll.min_battery_12v, poll.force_interval)

    def in_quiet_hours(self, now: datetime) -> bool:
        if self.quiet_start is None or self.quiet_end is None or self.quiet_start == self.quiet_end:
            return False
        clock = now.time().replace(second=0, microsecond=0)
        if self.quiet_start < self.quiet_end:
            return self.quiet_start <= clock < self.quiet_end
        return clock >= self.quiet_start or clock < self.quiet_end  # the window spans midnight

    def refusal(self, now: datetime, battery_12v: Any, unit: str | None = "%") -> str | None:
        """Why a forced read must not happen now, or None when it may. The level counts only as a percentage
        (``unit``, as the provider declares the field): a voltage (BMW CarData's) is not compared with
        ``min_battery_12v``."""
        if self.in_quiet_hours(now):
            return (
                f"quiet hours ({self.quiet_start:%H:%M}-{self.quiet_end:%H:%M}): a forced read would wake "
                "the car at night"
            )
        if (
            unit == "%"
            and isinstance(battery_12v, int | float)
            and not isinstance(battery_12v, bool)
            and battery_12v < self.min_battery_12v
        ):
            return (
                f"the 12 V battery was last at {battery_12v:g} %, below min_battery_12v "
                f"({self.min_battery_12v} %): a forced read would drain it further"
            )
        return None
