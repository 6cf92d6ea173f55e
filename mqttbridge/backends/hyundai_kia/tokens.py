"""The library's ``Token`` kept in ``state_dir`` so a restart does not log in again.

Why every field: each library release may add fields the next refresh needs (4.27 added the EU
CCI tokens, ``cci_access_token``, ``non_ccs_token``, ...); a token saved without them makes the
next start log in with the password, which may ask for an OTP. So the fields come from
``dataclasses.fields(Token)`` of the installed library, less the credentials, which the account's
configuration supplies (they never land in the token file).
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime
from typing import Any

from hyundai_kia_connect_api import Token

from mqttbridge.logsetup import register_secret

log = logging.getLogger(__name__)

#: Token fields filled from the account, never written to disk
CREDENTIAL_FIELDS = frozenset({"username", "password", "pin"})
#: token string fields that are not secret: masking them would garble unrelated text in logs
PUBLIC_FIELDS = frozenset({"username"})
#: check_and_refresh_token treats a token valid until this as expired and renews it
EXPIRED = datetime.min.replace(tzinfo=UTC)
_SCALARS = (str, int, float, bool)


def stored_fields() -> tuple[str, ...]:
    """The installed library's Token fields that the token file keeps (all but the credentials)."""
    return tuple(field.name for field in dataclasses.fields(Token) if field.name not in CREDENTIAL_FIELDS)


def _is_datetime_field(field: dataclasses.Field[Any]) -> bool:
    return field.type is datetime or isinstance(field.default, datetime) or "datetime" in str(field.type)


def register_token(token: Token | None) -> None:
    """Mask every string the token holds, also without the ``Bearer`` prefix the EU API stores with some."""
    if token is None:
        return
    for field in dataclasses.fields(token):
        if field.name in PUBLIC_FIELDS:
            continue
        value = getattr(token, field.name, None)
        if isinstance(value, str) and value:
            register_secret(value)
            register_secret(value.split(" ", 1)[-1])


def token_to_json(token: Token | None) -> dict[str, Any] | None:
    """The Token as JSON: every stored field, datetimes as ISO 8601 (their names listed for the way back)."""
    if token is None:
        return None
    data: dict[str, Any] = {}
    datetimes: list[str] = []
    for name in stored_fields():
        value = getattr(token, name, None)
        if isinstance(value, datetime):
            if value.tzinfo is None:  # the library's default datetime.min is naive: UTC as it means
                value = value.replace(tzinfo=UTC)
            data[name] = value.isoformat()
            datetimes.append(name)
        elif value is None or isinstance(value, _SCALARS):
            data[name] = value
        else:
            log.debug("token field %s (%s) is not kept: no JSON form", name, type(value).__name__)
    data["datetime_fields"] = datetimes
    return data


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def token_from_json(data: dict[str, Any], account: Any) -> Token | None:
    """A Token again from ``token_to_json``'s output (or an older file) and the account's credentials.

    None when it holds no access token. Fields the installed library does not know (a file written
    by a newer release) are dropped; fields it knows but the file lacks keep their defaults.
    """
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        return None
    listed = data.get("datetime_fields")
    datetimes = set(listed) if isinstance(listed, list) else set()
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Token):
        if field.name in CREDENTIAL_FIELDS or field.name not in data:
            continue
        raw = data[field.name]
        if raw is None:
            continue  # the library's default (None, or 0 for control_token_expiry)
        if field.name in datetimes or _is_datetime_field(field):
            moment = _datetime(raw)
            if moment is None:
                log.debug("token field %s: %r is no time; treated as expired", field.name, raw)
            values[field.name] = moment if moment is not None else EXPIRED
        elif isinstance(raw, _SCALARS):
            values[field.name] = raw
    values.setdefault("valid_until", EXPIRED)  # unknown expiry: renewed at the first check
    values.update(username=account.username, password=account.password, pin=account.pin or "")
    return Token(**values)
