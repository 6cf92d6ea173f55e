"""Normalisation helpers, the state store and log redaction."""

from __future__ import annotations

import io
import logging
import stat
from pathlib import Path

import pytest

from mqttbridge.logsetup import RedactingFilter, register_secret
from mqttbridge.normalize import flatten, number, snake_case, snake_keys
from mqttbridge.statestore import StateStore


@pytest.mark.parametrize("name,expected", [
    ("doorDriverFront", "door_driver_front"),
    ("updateReason", "update_reason"),
    ("internalDataTimeUTC", "internal_data_time_utc"),
    ("DCS_CCH_Activation", "dcs_cch_activation"),
    ("remainingRangeFuelMls", "remaining_range_fuel_mls"),
    ("chargingLevelHv", "charging_level_hv"),
    ("socmax", "socmax"),
    ("a4a", "a4a"),
])
def test_snake_case(name: str, expected: str) -> None:
    assert snake_case(name) == expected


@pytest.mark.parametrize("value,expected", [
    (18.0, 18), (8.9, 8.9), (3, 3), ("12.5", 12.5), (True, None), (None, None), ("x", None),
    (float("nan"), None),
])
def test_number(value, expected) -> None:
    result = number(value)
    assert result == expected and type(result) is type(expected)


def test_flatten_and_snake_keys() -> None:
    assert flatten({"position": {"lat": 1.0, "status": "OK"}, "cbsData": [{"cbsType": "OIL"}]}) == {
        "position_lat": 1, "position_status": "OK", "cbs_data": [{"cbs_type": "OIL"}]}
    assert snake_keys({"aB": [{"cD": 2.0}]}) == {"a_b": [{"c_d": 2}]}


def test_state_store_atomic_private_files(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    assert store.write_json("tokens/a.json", {"k": 1})
    assert store.read_json("tokens/a.json") == {"k": 1}
    assert stat.S_IMODE((tmp_path / "state" / "tokens" / "a.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert [p.name for p in (tmp_path / "state" / "tokens").iterdir()] == ["a.json"]  # no temp left
    assert store.read_json("tokens/missing.json") is None


def test_state_store_unwritable_folder_is_not_fatal(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = StateStore(blocker)  # a file where the folder should be
    with caplog.at_level(logging.WARNING):
        assert store.write_json("a.json", {}) is False
    assert "cannot write" in caplog.text


def test_secrets_are_masked_in_messages_arguments_and_tracebacks() -> None:
    register_secret("hunter2-secret")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("password is %s", "hunter2-secret")
        try:
            raise ValueError("token hunter2-secret rejected")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "hunter2-secret" not in text
    assert "password is ***" in text and "ValueError: token *** rejected" in text
