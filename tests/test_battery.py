"""Forced-read rules: quiet hours (also across midnight) and the 12 V threshold."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

import pytest

from mqttbridge import providers
from mqttbridge.battery import ForcedReadPolicy


def policy(quiet: str | None = "22:00-06:00", minimum: int = 50) -> ForcedReadPolicy:
    return ForcedReadPolicy.from_poll(SimpleNamespace(quiet_hours=quiet, min_battery_12v=minimum, force_interval=None))


@pytest.mark.parametrize(
    "clock,quiet",
    [
        ("21:59", False),
        ("22:00", True),
        ("23:30", True),
        ("00:00", True),
        ("05:59", True),
        ("06:00", False),
        ("12:00", False),
    ],
)
def test_quiet_hours_across_midnight(clock: str, quiet: bool) -> None:
    now = datetime.fromisoformat(f"2026-11-22T{clock}:00+01:00")
    reason = policy().refusal(now, 80)
    assert (reason is not None) is quiet
    if quiet:
        assert "quiet hours (22:00-06:00)" in reason


def test_quiet_hours_within_a_day_and_none() -> None:
    day = policy("09:00-17:00")
    assert day.refusal(datetime.fromisoformat("2026-11-22T12:00:00"), 90) is not None
    assert day.refusal(datetime.fromisoformat("2026-11-22T18:00:00"), 90) is None
    assert policy(None).refusal(datetime.fromisoformat("2026-11-22T23:00:00"), 90) is None


@pytest.mark.parametrize(
    "level,refused", [(49, True), (49.5, True), (50, False), (90, False), (None, False), ("n/a", False)]
)
def test_12v_threshold(level, refused: bool) -> None:
    reason = policy(None).refusal(datetime.fromisoformat("2026-11-22T12:00:00"), level)
    assert (reason is not None) is refused
    if refused:
        assert "12 V battery" in reason and "min_battery_12v (50 %)" in reason


@pytest.mark.parametrize("unit,refused", [("%", True), ("V", False), (None, False)])
def test_only_a_percentage_is_compared_with_the_threshold(unit: str | None, refused: bool) -> None:
    """BMW CarData reports the 12 V battery in volts: 12.1 V is a healthy battery, not 12.1 % of one."""
    reason = policy(None).refusal(datetime.fromisoformat("2026-11-22T12:00:00"), 12.1, unit)
    assert (reason is not None) is refused


@pytest.mark.parametrize("provider,unit", [("bmw", "%"), ("hyundai_kia", "%"), ("bmw_cardata", "V")])
def test_each_provider_declares_the_unit_of_its_12v_battery(provider: str, unit: str) -> None:
    """The gateway passes this unit to the policy (the provider's declaration first, then the common field's)."""
    spec = providers.offers(provider).field("battery_12v")
    assert spec is not None and spec.unit == unit
