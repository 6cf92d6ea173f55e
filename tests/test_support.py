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


@pytest.mark.parametrize(
    "name,expected",
    [
        ("doorDriverFront", "door_driver_front"),
        ("updateReason", "update_reason"),
        ("internalDataTimeUTC", "internal_data_time_utc"),
        ("DCS_CCH_Activation", "dcs_cch_activation"),
        ("remainingRangeFuelMls", "remaining_range_fuel_mls"),
        ("chargingLevelHv", "charging_level_hv"),
        ("socmax", "socmax"),
        ("a4a", "a4a"),
    ],
)
def test_snake_case(name: str, expected: str) -> None:
    assert snake_case(name) == expected


@pytest.mark.parametrize(
    "value,expected",
    [
        (18.0, 18),
        (8.9, 8.9),
        (3, 3),
        ("12.5", 12.5),
        (True, None),
        (None, None),
        ("x", None),
        (float("nan"), None),
    ],
)
def test_number(value, expected) -> None:
    result = number(value)
    assert result == expected and type(result) is type(expected)


def test_flatten_and_snake_keys() -> None:
    assert flatten({"position": {"lat": 1.0, "status": "OK"}, "cbsData": [{"cbsType": "OIL"}]}) == {
        "position_lat": 1,
        "position_status": "OK",
        "cbs_data": [{"cbs_type": "OIL"}],
    }
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


def test_short_secrets_are_masked_as_whole_words_only() -> None:
    from mqttbridge.logsetup import redact

    register_secret("k9x")  # too short: never masked (check-config warns about it)
    register_secret("pw42")
    register_secret("a-long-api-secret-value")
    assert redact("k9x and pw42: logged in") == "k9x and ***: logged in"
    assert redact("upw42 pw42x pw42_y pw42") == "upw42 pw42x pw42_y ***"  # never part of a word
    assert redact("token=xa-long-api-secret-valuex") == "token=x***x"  # a long one wherever it is


def test_the_demos_public_password_is_not_a_secret() -> None:
    from mqttbridge.logsetup import declare_public, redact

    register_secret("demo")
    declare_public("demo")
    register_secret("demo")  # registered again by the backend: still public
    assert redact("mqttbridge-demo-1: demo logged in") == "mqttbridge-demo-1: demo logged in"


def test_check_config_with_a_one_letter_key_is_not_garbled(tmp_path: Path, capsys) -> None:
    from mqttbridge.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(
        "mqtt:\n  hots: x\naccounts:\n- {name: a, provider: bmw_legacy, username: u, password: k,\n"
        "   api_key: k, api_secret: k}\n"
    )
    config.chmod(0o600)
    assert main(["check-config", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert "mqtt.hots: unknown key (did you mean 'host'?)" in err
    config.write_text(
        "accounts:\n- {name: a, provider: bmw_legacy, username: u, password: k,\n"
        "   api_key: key-123456, api_secret: secret-123456}\n"
    )
    assert main(["check-config", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "accounts[0].password: shorter than 4 characters" in out


def test_check_config_says_when_a_providers_extra_is_missing(tmp_path: Path, capsys, monkeypatch) -> None:
    import importlib

    from mqttbridge.cli import main

    real = importlib.import_module

    def without_the_library(name: str, *args):
        if name == "mqttbridge.backends.hyundai_kia.backend":
            raise ModuleNotFoundError("No module named 'hyundai_kia_connect_api'", name="hyundai_kia_connect_api")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_the_library)
    config = tmp_path / "c.yaml"
    config.write_text(
        "accounts:\n- {name: kia, provider: hyundai_kia, brand: kia, region: europe, username: u,\n"
        "   password: pw-long-enough}\n"
    )
    config.chmod(0o600)
    assert main(["check-config", "-c", str(config)]) == 2
    captured = capsys.readouterr()
    assert "valid" not in captured.out
    assert "accounts[0].provider:" in captured.err and "pip install 'mqttbridge[hyundai]'" in captured.err
