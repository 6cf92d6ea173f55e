"""Anonymising the captured answers: what may identify the owner, replaced the same way in every file.

The fingerprint's files must fit together after anonymising (the same VIN by the same alias in each),
so one ``Anonymiser`` learns every private value first and applies it to all of them: JSON keys say
what a value is (``KEY_KINDS``), VINs and e-mail addresses are found in free text too, positions move
to one fixed place, and credentials are masked wherever they appear.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from mqttbridge.logsetup import secret_pattern

#: where every position is moved: a round point in the middle of Germany, obviously not a real parking spot
FIXED_LATITUDE = 50.0
FIXED_LONGITUDE = 10.0
MASK = "***"

#: JSON key (lower case) -> what its value is; keys are matched in any vendor's spelling
KEY_KINDS: dict[str, str] = {
    **dict.fromkeys(("lat", "latitude"), "latitude"),
    **dict.fromkeys(("lon", "lng", "long", "longitude"), "longitude"),
    "altitude": "altitude",
    **dict.fromkeys(("vin", "vehicleidentificationnumber", "vinnumber", "vinno"), "vin"),
    **dict.fromkeys(
        (
            "vehicleid",
            "vehicleidentifier",
            "vehiclekey",
            "vinkey",
            "regid",
            "masterid",
            "enrollmentid",
            "carid",
            "vehicle_id",
        ),
        "vehicle-id",
    ),
    **dict.fromkeys(
        (
            "name",
            "nickname",
            "nick_name",
            "ownername",
            "firstname",
            "lastname",
            "fullname",
            "drivername",
            "displayname",
            "username",
            "user_name",
        ),
        "name",
    ),
    **dict.fromkeys(
        (
            "licenseplate",
            "licenseplatenumber",
            "license_plate",
            "plate",
            "platenumber",
            "plateno",
            "registrationnumber",
            "regno",
            "registrationplate",
        ),
        "plate",
    ),
    **dict.fromkeys(("email", "emailaddress", "email_address", "mail", "loginid", "login"), "email"),
    **dict.fromkeys(
        (
            "accountid",
            "account_id",
            "userid",
            "user_id",
            "gcdmid",
            "customerid",
            "ownerid",
            "memberid",
            "usn",
            "idpuserid",
            "profileid",
        ),
        "account",
    ),
    **dict.fromkeys(
        (
            "access_token",
            "refresh_token",
            "id_token",
            "accesstoken",
            "refreshtoken",
            "idtoken",
            "token",
            "sid",
            "authorization",
            "controltoken",
            "control_token",
            "stamp",
            "devicetoken",
            "pushtoken",
            "deviceid",
            "device_id",
            "ccspdeviceid",
            "cookie",
            "password",
            "pin",
            "code_verifier",
            "client_secret",
            "api_key",
            "apikey",
        ),
        "token",
    ),
    **dict.fromkeys(
        (
            "street",
            "streetnumber",
            "housenumber",
            "streetname",
            "address",
            "formattedaddress",
            "addressline",
            "postalcode",
            "postcode",
            "zip",
            "zipcode",
            "city",
            "district",
            "phone",
            "phonenumber",
            "phonenumbers",
            "additionalinfo",
            "fax",
        ),
        "address",
    ),
}
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
#: a 17-character VIN (no I, O, Q), with at least one digit and one letter
VIN = re.compile(
    r"(?<![A-Za-z0-9])(?=[A-HJ-NPR-Z0-9]*\d)(?=[A-HJ-NPR-Z0-9]*[A-HJ-NPR-Z])[A-HJ-NPR-Z0-9]{17}"
    r"(?![A-Za-z0-9])"
)


class Anonymiser:
    """Replaces what identifies the owner, the same real value by the same alias in every file."""

    def __init__(self, secrets: Iterable[str | None] = ()):
        self._aliases: dict[tuple[str, str], str] = {}
        self._counters: dict[str, int] = {}
        self._secrets: set[str] = set()
        self._secret_pattern: re.Pattern[str] | None = None
        self._literal_pattern: re.Pattern[str] | None = None
        self._literals: dict[str, str] = {}
        #: the aliases handed out: anonymising an anonymised value again leaves it as it is
        self._given: set[str] = set()
        self._given_numbers: set[tuple[str, int]] = set()
        for secret in secrets:
            self.add_secret(secret)

    # --- what is known to be private ---

    def add_secret(self, value: str | None) -> None:
        """A credential: masked wherever it appears (a Bearer token also without its prefix)."""
        if not isinstance(value, str) or len(value.strip()) < 4:
            return
        for part in {value, value.split(" ", 1)[-1]}:
            if len(part) >= 4 and part not in self._secrets:
                self._secrets.add(part)
                self._secret_pattern = None

    def alias(self, kind: str, real: str) -> str:
        """The alias of ``real``; also replaced where it appears inside other strings (URLs, messages)."""
        if real in self._given:
            return real
        key = (kind, real)
        found = self._aliases.get(key)
        if found is None:
            count = self._counters[kind] = self._counters.get(kind, 0) + 1
            found = self._make_alias(kind, real, count)
            self._aliases[key] = found
            self._given.add(found)
            # names and addresses are free text that may also be a model or a town: replaced only as values
            if len(real) >= 4 and real != found and kind not in ("name", "address"):
                self._literals[real] = found
                self._literal_pattern = None
        return found

    @staticmethod
    def _make_alias(kind: str, real: str, count: int) -> str:
        if kind == "vin":
            if len(real) == 17:  # the same shape: the maker's code (WMI) kept, the car's part made up
                return f"{real[:3]}FPRNT{count:09d}"
            return f"VIN-{count}"
        if kind == "email":
            return f"user-{count}@example.invalid"
        return f"{kind}-{count}"

    # --- applying it ---

    def text(self, value: str) -> str:
        """A string with every known private value replaced (aliases first, then credentials masked)."""
        for match in set(VIN.findall(value)):
            self.alias("vin", match)
        for match in set(EMAIL.findall(value)):
            self.alias("email", match)
        if self._literals:
            if self._literal_pattern is None:
                ordered = sorted(self._literals, key=len, reverse=True)
                self._literal_pattern = re.compile("|".join(map(re.escape, ordered)))
            value = self._literal_pattern.sub(lambda m: self._literals[m.group(0)], value)
        if self._secrets:
            if self._secret_pattern is None:
                self._secret_pattern = secret_pattern(frozenset(self._secrets))
            if self._secret_pattern is not None:
                value = self._secret_pattern.sub(MASK, value)
        return value

    def _value(self, kind: str, value: Any) -> Any:
        if kind == "latitude":
            return FIXED_LATITUDE if isinstance(value, int | float) and not isinstance(value, bool) else value
        if kind == "longitude":
            return FIXED_LONGITUDE if isinstance(value, int | float) and not isinstance(value, bool) else value
        if kind == "altitude":
            return 0 if isinstance(value, int | float) and not isinstance(value, bool) else value
        if isinstance(value, list):
            return [self._value(kind, item) for item in value]
        if isinstance(value, str):
            if not value.strip() or value in self._given:
                return value
            if kind == "token":
                self.add_secret(value)
            elif EMAIL.fullmatch(value.strip()):
                kind = "email"
            elif kind == "email":
                kind = "account"
            return self.alias(kind, value)
        if isinstance(value, int) and not isinstance(value, bool) and kind in ("vehicle-id", "account"):
            if (kind, value) in self._given_numbers:
                return value
            number = int(self.alias(kind, str(value)).rsplit("-", 1)[-1])
            self._given_numbers.add((kind, number))
            return number
        return value  # numbers, booleans, nulls and objects under such keys carry no identity

    def scan(self, data: Any) -> None:
        """Learn the private values of ``data`` (before any file is written, so all files agree)."""
        self.clean(data)

    def clean(self, data: Any) -> Any:
        """A copy of ``data`` (decoded JSON) with every private value replaced."""
        if isinstance(data, dict):
            result: dict[str, Any] = {}
            for key, value in data.items():
                kind = KEY_KINDS.get(str(key).lower())
                if kind is not None and not isinstance(value, dict):
                    result[self.text(str(key))] = self._value(kind, value)
                else:
                    result[self.text(str(key))] = self.clean(value)
            return result
        if isinstance(data, list):
            return [self.clean(item) for item in data]
        if isinstance(data, str):
            return self.text(data)
        return data
