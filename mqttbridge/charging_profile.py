"""The shape of a charging profile sent to ``<root>/charging_profile/set`` (CONTRACT section 5).

The vendor replaces the car's whole weekly planner with what it is sent and accepts almost anything
(even ``{"weeklyPlanner": {}}``), so a typo or junk would silently wipe the owner's departure timers.
The profile is therefore checked here against the planner's real shape, as the captured
``chargingprofile`` answers show it (``../shared/fixtures/bmw_legacy/*/charging_profile.json``): what
``<root>/charging_profile`` publishes can be edited and sent back as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

#: a departure or window time in the car's local time
_CLOCK = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d")
WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
CHARGING_MODES = ("IMMEDIATE_CHARGING", "DELAYED_CHARGING")
CHARGING_PREFERENCES = ("NO_PRESELECTION", "CHARGING_WINDOW")

Check = Callable[[Any, str], None]


class ProfileError(ValueError):
    """What is wrong with a profile, with the path of the offending key."""


def _bool(value: Any, path: str) -> None:
    if not isinstance(value, bool):
        raise ProfileError(f"{path} must be true or false")


def _clock(value: Any, path: str) -> None:
    if not isinstance(value, str) or not _CLOCK.fullmatch(value):
        raise ProfileError(f"{path} must be a time HH:MM (00:00 to 23:59)")


def _one_of(words: tuple[str, ...]) -> Check:
    def check(value: Any, path: str) -> None:
        if value not in words:
            raise ProfileError(f"{path} must be one of {', '.join(words)}")

    return check


def _weekdays(value: Any, path: str) -> None:
    if not isinstance(value, list) or any(day not in WEEKDAYS for day in value):
        raise ProfileError(f"{path} must be a list of {', '.join(WEEKDAYS)}")
    if len(set(value)) != len(value):
        raise ProfileError(f"{path} names a day twice")


def _object(keys: dict[str, Check]) -> Check:
    """An object whose keys are all optional (the vendor's answers leave some out) but never unknown."""

    def check(value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise ProfileError(f"{path} must be a JSON object")
        for key, item in value.items():
            inner = keys.get(key)
            if inner is None:
                raise ProfileError(f"{path}: unknown key {key!r}; accepted: {', '.join(keys)}")
            inner(item, f"{path}.{key}")

    return check


_TIMER = _object({"departureTime": _clock, "timerEnabled": _bool, "weekdays": _weekdays})
_WINDOW = _object({"enabled": _bool, "startTime": _clock, "endTime": _clock})
_COMMON: dict[str, Check] = {
    "climatizationEnabled": _bool,
    "chargingMode": _one_of(CHARGING_MODES),
    "chargingPreferences": _one_of(CHARGING_PREFERENCES),
    "preferredChargingWindow": _WINDOW,
}
_WEEKLY_PLANNER = _object({**_COMMON, "timer1": _TIMER, "timer2": _TIMER, "timer3": _TIMER, "overrideTimer": _TIMER})
#: the older cars' planner: two timers, without weekdays
_TWO_TIMES_TIMER = _object(
    {
        **_COMMON,
        "timer1": _object({"departureTime": _clock, "timerEnabled": _bool}),
        "timer2": _object({"departureTime": _clock, "timerEnabled": _bool}),
    }
)
_PLANNERS: dict[str, Check] = {"weeklyPlanner": _WEEKLY_PLANNER, "twoTimesTimer": _TWO_TIMES_TIMER}


def check_profile(profile: dict[str, Any]) -> None:
    """Raise ``ProfileError`` unless ``profile`` is a weekly planner: wrapped as the vendor sends it
    (``{"weeklyPlanner": {...}}`` or ``{"twoTimesTimer": {...}}``) or its bare content."""
    wrapped = [key for key in profile if key in _PLANNERS]
    if not wrapped:
        _WEEKLY_PLANNER(profile, "weeklyPlanner")
        return
    if len(profile) != 1:
        others = sorted(k for k in profile if k != wrapped[0])
        raise ProfileError(f"{wrapped[0]} must be the only key of the profile (also given: {', '.join(others)})")
    _PLANNERS[wrapped[0]](profile[wrapped[0]], wrapped[0])
