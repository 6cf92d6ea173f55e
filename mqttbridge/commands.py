"""Commands: parsing ``<root>/<command>/set`` payloads, and the unlock rules.

Everything refused before the vendor is called is ``REJECTED`` with an ``error`` that says why (``Rejected``).
An accepted command is followed to its end by the execution state machine (``execution``).
"""

from __future__ import annotations

import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Any

from mqttbridge.charging_profile import ProfileError, check_profile
from mqttbridge.command_table import COMMANDS, PARAMS
from mqttbridge.model import CommandRequest

MAX_PAYLOAD = 4096
MAX_REQUEST_ID = 64
#: JSON nesting accepted on a command topic (a charging profile needs 4); deeper is junk, and would make
#: the parser recurse until ``RecursionError``
MAX_DEPTH = 8


class Rejected(Exception):
    """A command refused before the vendor is called; the message is the record's ``error``."""


class WrongCode(Rejected):
    """An unlock with a code that does not match: counted, so that guessing ends in a lockout."""


# --- parsing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedCommand:
    request: CommandRequest
    request_id: str
    code: str | None = None


def parse_command(command: str, payload: bytes) -> ParsedCommand:
    """The payload of ``<root>/<command>/set`` as a request; ``Rejected`` says what is wrong."""
    spec = COMMANDS.get(command)
    if spec is None:
        raise Rejected(f"unknown command {command!r}; known: {', '.join(sorted(COMMANDS))}")
    if len(payload) > MAX_PAYLOAD:
        raise Rejected(f"payload too long ({len(payload)} bytes, at most {MAX_PAYLOAD})")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise Rejected("payload is not UTF-8 text") from None
    if not text:
        raise Rejected(f"empty payload; send one of {', '.join(spec.words) or 'a JSON object'}")
    if text[0] not in '{["':
        word = text.upper()
        if word not in spec.words:
            expected = " or ".join(spec.words) if spec.words else "a JSON object"
            raise Rejected(f"unknown action {text[:40]!r} for {command}; expected {expected}")
        if spec.needs_params:
            raise Rejected(f"{command} needs at least one of {', '.join(sorted(spec.json_keys))}")
        return ParsedCommand(CommandRequest(command, word), request_id=_new_id())
    data = _load_json(text)
    if isinstance(data, str):
        return parse_command(command, data.encode())
    if not isinstance(data, dict):
        raise Rejected("a JSON payload must be an object")
    request_id = data.get("request_id", None)
    if request_id is not None and (
        not isinstance(request_id, str | int)
        or isinstance(request_id, bool)
        or not str(request_id)
        or len(str(request_id)) > MAX_REQUEST_ID
    ):
        raise Rejected(f"request_id must be a string of 1 to {MAX_REQUEST_ID} characters")
    request_id = str(request_id) if request_id is not None else _new_id()
    if spec.object_param is not None:
        profile = {k: v for k, v in data.items() if k != "request_id"}
        if not profile:
            raise Rejected(f"{command} needs a non-empty JSON object")
        try:
            check_profile(profile)
        except ProfileError as exc:
            raise Rejected(f"charging profile: {exc}") from None
        return ParsedCommand(
            CommandRequest(command, spec.default_action or "SET", {spec.object_param: profile}), request_id
        )
    unknown = set(data) - spec.json_keys - {"action", "request_id"}
    if unknown:
        raise Rejected(
            f"unknown key {sorted(unknown)[0]!r} for {command}; accepted: "
            f"{', '.join(sorted(spec.json_keys | {'action', 'request_id'}))}"
        )
    action = data.get("action", spec.default_action)
    if not isinstance(action, str) or action.upper() not in spec.words:
        raise Rejected(f'"action" must be one of {", ".join(spec.words)}')
    params: dict[str, Any] = {}
    code: str | None = None
    for key in sorted(spec.json_keys & set(data)):
        problem = PARAMS[key].check(data[key])
        if problem:
            raise Rejected(f"{key} {problem}")
        if key == "code":
            code = str(data[key])
        else:
            params[key] = data[key]
    if spec.needs_params and not params:
        raise Rejected(f"{command} needs at least one of {', '.join(sorted(spec.json_keys))}")
    return ParsedCommand(CommandRequest(command, action.upper(), params), request_id, code)


def _nesting(text: str) -> int:
    """The deepest nesting of objects and arrays in JSON text (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:20]} is too large")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _load_json(text: str) -> Any:
    """Strict JSON: no NaN or Infinity (the vendor would get them), no nesting deeper than ``MAX_DEPTH``."""
    if _nesting(text) > MAX_DEPTH:
        raise Rejected(f"the JSON payload is nested more than {MAX_DEPTH} levels deep")
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise Rejected(f"payload is not valid JSON ({exc.msg} at position {exc.pos})") from None
    except (ValueError, RecursionError) as exc:
        raise Rejected(f"payload is not valid JSON ({exc})") from None


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


def is_unlock(request: CommandRequest) -> bool:
    return request.command == "lock" and request.action == "UNLOCK"


def check_unlock(parsed: ParsedCommand, allow_unlock: bool, unlock_code: str | None) -> None:
    """The unlock rules: refused unless allowed, and with a code only the right one (``WrongCode``)."""
    if not is_unlock(parsed.request):
        return
    if not allow_unlock:
        raise Rejected("unlocking is not allowed for this vehicle (allow_unlock is false)")
    if unlock_code is not None:
        if parsed.code is None:
            raise Rejected('this vehicle needs an unlock code: send {"action": "UNLOCK", "code": "..."}')
        if not hmac.compare_digest(parsed.code.encode(), unlock_code.encode()):
            raise WrongCode("wrong unlock code")
