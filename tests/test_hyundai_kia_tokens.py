"""Tokens that survive a restart with every field the installed library's ``Token`` has.

From 4.27 the EU token carries the CCI tokens (``cci_access_token``, ``non_ccs_token``, ...); a file
without them makes the next start log in with the password. The token here is built from
``dataclasses.fields(Token)`` of whatever library is installed, so the test covers each release.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hyundai_kia_connect_api")
pytestmark = pytest.mark.filterwarnings("ignore:'ssl_version' option is deprecated:FutureWarning")

from hyundai_kia_connect_api import Token  # noqa: E402

from mqttbridge.backends.hyundai_kia.tokens import (  # noqa: E402
    CREDENTIAL_FIELDS,
    EXPIRED,
    stored_fields,
    token_from_json,
    token_to_json,
)
from mqttbridge.logsetup import redact  # noqa: E402

from . import test_hyundai_kia as base  # noqa: E402
from .test_hyundai_kia import PASSWORD, PIN, account  # noqa: E402

# the fake vendor and backend factory of the main Hyundai/Kia tests
vendor, eu, make = base.vendor, base.eu, base.make

VALID_UNTIL = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)


def _string_field(field: dataclasses.Field[Any]) -> bool:
    return "str" in str(field.type)


def rich_token(*_args: Any, **_kwargs: Any) -> Token:
    """A token with a distinct value in every field the installed library's Token has."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Token):
        if field.name in ("username", "password", "pin"):
            continue
        if field.name == "valid_until":
            values[field.name] = datetime.now(UTC) + timedelta(hours=2)
        elif field.name == "control_token_expiry":
            values[field.name] = 1_900_000_000.5
        elif _string_field(field):
            values[field.name] = f"{field.name}-value-0123456789abcdef"
    return Token(username="driver@example.com", password=PASSWORD, pin=PIN, **values)


def test_every_token_field_but_the_credentials_is_stored():
    names = {field.name for field in dataclasses.fields(Token)}
    assert set(stored_fields()) == names - CREDENTIAL_FIELDS
    assert {"access_token", "refresh_token", "device_id", "valid_until"} <= set(stored_fields())
    if "cci_access_token" in names:  # 4.27 and newer
        assert {"cci_access_token", "non_ccs_token", "non_ccs_refresh_token", "id_token"} <= set(stored_fields())


def test_json_round_trip_keeps_every_field_and_the_time():
    token = rich_token()
    token.valid_until = VALID_UNTIL
    data = token_to_json(token)
    assert data is not None
    text = json.dumps(data)  # JSON as it is, datetimes included
    assert PASSWORD not in text and PIN not in text and "driver@example.com" not in text
    assert data["valid_until"] == "2031-05-06T07:08:09+00:00"
    back = token_from_json(json.loads(text), account())
    assert back == token  # every field, the credentials from the account


def test_an_older_file_still_loads():
    """What the backend wrote before it kept every field: no list of datetime fields."""
    old = {
        "access_token": "Bearer old-access",
        "refresh_token": "old-refresh",
        "device_id": "dev",
        "stamp": None,
        "control_token": None,
        "control_token_expiry": 0,
        "valid_until": "2030-01-01T00:00:00+00:00",
    }
    token = token_from_json(old, account())
    assert token is not None
    assert (token.access_token, token.refresh_token, token.device_id) == ("Bearer old-access", "old-refresh", "dev")
    assert token.valid_until == datetime(2030, 1, 1, tzinfo=UTC)
    assert (token.password, token.pin) == (PASSWORD, PIN)


def test_unknown_fields_and_bad_times_do_not_break_loading():
    data = {
        "access_token": "a-token-0123456789",
        "from_a_newer_release": "x",
        "valid_until": "soon",
        "datetime_fields": ["valid_until"],
    }
    token = token_from_json(data, account())
    assert token is not None and token.valid_until == EXPIRED  # renewed at the first check
    assert token_from_json({"refresh_token": "r"}, account()) is None  # no access token: log in


def test_restart_with_a_new_style_token_needs_no_password_login(eu, make, tmp_path: Path):
    eu.login.side_effect = rich_token
    first = make()
    first.list_vehicles()
    assert eu.login.call_count == 1
    saved = first.manager.token
    path = tmp_path / "state" / "tokens" / "kia.json"
    text = path.read_text()
    assert PASSWORD not in text and PIN not in text

    second = make()
    assert next(v.vin for v in second.list_vehicles()) == "TESTVIN00000EV601"
    assert eu.login.call_count == 1  # the library's login was not called again
    assert not eu.vendor.hits("POST", r"/auth/api/v2/user/oauth2/token$")  # nor the refresh grant
    restored = second.manager.token
    for name in stored_fields():
        assert getattr(restored, name) == getattr(saved, name), name
    assert (restored.password, restored.pin) == (PASSWORD, PIN)


def test_every_token_string_is_masked(eu, make):
    eu.login.side_effect = rich_token
    make().list_vehicles()
    token = rich_token()
    for name in stored_fields():
        value = getattr(token, name)
        if isinstance(value, str):
            assert value not in redact(f"the vendor said {value}."), name
