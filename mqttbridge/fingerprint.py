"""``mqttbridge fingerprint``: every raw vendor answer for each car, anonymised, for a bug report.

A wrong or missing value is usually a vendor answer nobody has seen before. This logs in to each
account (as ``mqttbridge vehicles`` does), reads each car once (as ``mqttbridge status`` does, no
wake-up, no command), keeps the HTTP bodies the vendor sent, and writes them to a folder that a user
can attach to an issue and a maintainer can feed to ``mqttbridge replay``.

What may identify the owner is replaced the same way in every file, so the files still fit together:
VINs by a fake VIN of the same shape (``WBY`` + ``FPRNT`` + a counter), positions by one fixed place,
names, number plates, e-mail addresses, account and vehicle ids and addresses by ``<kind>-<n>``,
tokens by ``token-<n>``. Every credential of the configuration and every token seen on the wire is
then masked wherever it still appears. Only answers about cars are written: login answers hold
tokens, and are left out.

Each provider brings ``mqttbridge.backends.<provider>.fingerprint.capture(account, store, session)``
which reads through a ``Recorder`` and yields ``Capture`` items.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from mqttbridge import __version__
from mqttbridge.errors import MqttBridgeError
from mqttbridge.logsetup import secret_pattern

log = logging.getLogger(__name__)

#: where every position is moved: a round point in the middle of Germany, obviously not a real parking spot
FIXED_LATITUDE = 50.0
FIXED_LONGITUDE = 10.0
MASK = "***"

# --- anonymising -----------------------------------------------------------------------------------

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
#: request and response headers whose values are credentials (collected, then masked wherever they appear)
SECRET_HEADERS = re.compile(r"auth|token|sid|stamp|device|session|cookie|pin|key|secret", re.IGNORECASE)
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


# --- recording ------------------------------------------------------------------------------------


@dataclass
class Exchange:
    """One HTTP answer as the vendor sent it, with the request it answered."""

    method: str
    url: str
    status: int
    content: bytes
    content_type: str
    secrets: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def json(self) -> Any:
        """The decoded body, or None when it is not JSON."""
        try:
            return json.loads(self.content.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError):
            return None


def _header_secrets(headers: Any) -> list[str]:
    found = []
    for name, value in dict(headers or {}).items():
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str) and SECRET_HEADERS.search(str(name)) and name.lower() != "content-length":
            found.append(value)
    return found


class Recorder:
    """A ``requests`` response hook that keeps every answer of the sessions it is attached to."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    def attach(self, session: requests.Session) -> requests.Session:
        session.hooks.setdefault("response", []).append(self._hook)
        return session

    def _hook(self, response: requests.Response, *_args: Any, **_kwargs: Any) -> requests.Response:
        request = response.request
        secrets = _header_secrets(getattr(request, "headers", None)) + _header_secrets(response.headers)
        self.exchanges.append(
            Exchange(
                method=str(getattr(request, "method", "GET") or "GET"),
                url=str(response.url or getattr(request, "url", "")),
                status=response.status_code,
                content=response.content or b"",
                content_type=response.headers.get("Content-Type", ""),
                secrets=secrets,
            )
        )
        return response

    @contextmanager
    def window(self) -> Iterator[list[Exchange]]:
        """The answers recorded while the ``with`` block runs (filled in when it ends)."""
        start = len(self.exchanges)
        got: list[Exchange] = []
        try:
            yield got
        finally:
            got.extend(self.exchanges[start:])


def pick(exchanges: list[Exchange], pattern: str) -> Exchange | None:
    """The last answer whose URL path matches ``pattern``: a successful one if there is any."""
    matching = [e for e in exchanges if re.search(pattern, e.path)]
    good = [e for e in matching if 200 <= e.status < 300]
    found = good or matching
    return found[-1] if found else None


@dataclass
class Capture:
    """One answer to write: ``parts`` is its path below the output folder, before anonymising."""

    parts: tuple[str, ...]
    exchange: Exchange
    kind: str
    vehicle: str | None = None
    #: the replay options this file needs (for ``status`` answers)
    replay: dict[str, str] | None = None


# --- writing ---------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    """A safe file or folder name (VIN aliases keep their capitals)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "answer"


@dataclass
class Result:
    """What a run wrote, for the summary and the index."""

    out: Path
    files: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [a for a in self.accounts if a.get("error")]


class Writer:
    """Anonymises answers and writes them below ``out``; never overwrites what it wrote itself."""

    def __init__(self, out: Path, anonymiser: Anonymiser):
        self.out = out
        self.anonymiser = anonymiser
        self._written: set[Path] = set()

    def _target(self, parts: tuple[str, ...], suffix: str) -> Path:
        clean = [_slug(self.anonymiser.text(part)) for part in parts]
        path = self.out.joinpath(*clean).with_suffix(suffix)
        stem, n = path.stem, 1
        while path in self._written:
            n += 1
            path = path.with_name(f"{stem}-{n}{suffix}")
        self._written.add(path)
        return path

    def write(self, capture: Capture, account: Any) -> dict[str, Any]:
        exchange = capture.exchange
        for secret in exchange.secrets:
            self.anonymiser.add_secret(secret)
        body = exchange.json()
        if body is not None:
            text = json.dumps(self.anonymiser.clean(body), indent=2, ensure_ascii=False) + "\n"
            path = self._target(capture.parts, ".json")
        else:
            text = self.anonymiser.text(exchange.content.decode("utf-8", errors="replace"))
            path = self._target(capture.parts, ".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        relative = path.relative_to(self.out).as_posix()
        entry: dict[str, Any] = {
            "file": relative,
            "account": account.name,
            "provider": account.provider,
            "kind": capture.kind,
            "vehicle": self.anonymiser.text(capture.vehicle) if capture.vehicle else None,
            "request": f"{exchange.method} {self.anonymiser.text(exchange.path)}",
            "http_status": exchange.status,
        }
        if capture.replay is not None and body is not None:
            options = "".join(f" --{name} {value}" for name, value in capture.replay.items() if value)
            entry["replay"] = f"mqttbridge replay --provider {account.provider}{options} {relative}"
            entry.update({name: value for name, value in capture.replay.items() if value})
        log.debug("wrote %s", relative)
        return entry


# --- the run ---------------------------------------------------------------------------------------


def default_out(now: date | None = None, cwd: Path | None = None) -> Path:
    """``./mqttbridge-fingerprint-<date>``, with ``-2``, ``-3`` ... when that exists already."""
    base = (cwd or Path.cwd()) / f"mqttbridge-fingerprint-{(now or date.today()).isoformat()}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _capturer(provider: str) -> Any:
    """The provider's capture module (``ProviderSpec.fingerprint``)."""
    from mqttbridge.providers import available

    spec = available().get(provider)
    module_name = spec.fingerprint if spec is not None else None
    if module_name is None:
        raise MqttBridgeError(f"fingerprint cannot capture {provider} accounts yet")
    return importlib.import_module(module_name)


def _account_secrets(account: Any) -> list[str]:
    names = ("password", "api_key", "api_secret", "pin", "unlock_code", "security_answer", "client_id", "username")
    found = [getattr(account, name, None) for name in names]
    found.extend(getattr(vehicle, "unlock_code", None) for vehicle in getattr(account, "vehicles", ()) or ())
    return [value for value in found if isinstance(value, str) and value]


def run(config: Any, out: Path, *, store: Any = None) -> Result:
    """Capture every account of ``config`` into ``out`` (created); one account's failure spares the others."""
    from mqttbridge.statestore import StateStore

    secrets = list(config.secrets()) if hasattr(config, "secrets") else []
    for account in config.accounts:
        secrets.extend(_account_secrets(account))
    anonymiser = Anonymiser(secrets)
    for account in config.accounts:  # the login name is an e-mail address or an account id: aliased
        if isinstance(account.username, str) and account.username:
            anonymiser.alias("email" if "@" in account.username else "account", account.username)
    out.mkdir(parents=True, exist_ok=True)
    writer = Writer(out, anonymiser)
    result = Result(out=out)
    store = store or StateStore(config.state_dir)
    for account in config.accounts:
        summary: dict[str, Any] = {
            "account": account.name,
            "provider": account.provider,
            "region": getattr(account, "region", None),
            "brand": getattr(account, "brand", None),
        }
        result.accounts.append(summary)
        captures: list[Capture] = []
        try:
            module = _capturer(account.provider)
            for item in module.capture(account, store, anonymiser):
                if isinstance(item, Capture):
                    captures.append(item)
                elif isinstance(item, dict):  # what the provider found out about a car
                    summary.setdefault("vehicles", []).append(anonymiser.clean(item))
        except MqttBridgeError as exc:
            from mqttbridge.logsetup import redact

            summary["error"] = anonymiser.text(redact(str(exc)))
            log.error("%s: %s", account.name, summary["error"])
        for capture in captures:  # whatever was read before a failure is still worth having
            anonymiser.scan(capture.exchange.json())
            for secret in capture.exchange.secrets:
                anonymiser.add_secret(secret)
        for capture in captures:
            result.files.append(writer.write(capture, account))
    _write_index(result, anonymiser)
    return result


def _write_index(result: Result, anonymiser: Anonymiser) -> None:
    index = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "mqttbridge": __version__,
        "libraries": _library_versions(),
        "anonymised": {
            "positions": [FIXED_LATITUDE, FIXED_LONGITUDE],
            "replaced": "VINs, vehicle and account ids, names, number plates, e-mail addresses, addresses, tokens",
        },
        "accounts": result.accounts,
        "files": result.files,
    }
    text = json.dumps(anonymiser.clean(index), indent=2, ensure_ascii=False) + "\n"
    (result.out / "index.json").write_text(text, encoding="utf-8")
    (result.out / "README.txt").write_text(anonymiser.text(_readme(result)), encoding="utf-8")


def _library_versions() -> dict[str, str]:
    import importlib.metadata

    versions = {}
    for name in ("hyundai_kia_connect_api", "requests"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _readme(result: Result) -> str:
    lines = [
        f"mqttbridge {__version__} fingerprint, {datetime.now(UTC).isoformat(timespec='seconds')}",
        "",
        "Raw answers of the vendors' servers, one file per answer, anonymised: VINs, vehicle and account",
        "ids, names, number plates, e-mail addresses, addresses and tokens are replaced (the same value by",
        f"the same alias in every file), every position is moved to {FIXED_LATITUDE}, {FIXED_LONGITUDE}.",
        "Please look through the files before you attach them (zip the folder) to a bug report.",
        "",
        "index.json lists each file with the account, provider, region, brand and request it answered.",
        "Each status answer replays without any network, printing what `mqttbridge status` prints:",
        "",
    ]
    replays = [entry["replay"] for entry in result.files if entry.get("replay")]
    lines.extend(f"  {command}" for command in replays)
    if not replays:
        lines.append("  (no status answer was captured)")
    if result.failed:
        lines += ["", "Accounts that failed:"]
        lines.extend(f"  {a['account']}: {a['error']}" for a in result.failed)
    lines += ["", "(run the commands in this folder)", ""]
    return "\n".join(lines)
