"""The scalar converters (``str``, ``int``, ``number``, ``bool``, ``topic``, ``url``, ``path``, ``file``): a
``Key``'s ``kind`` names one of them. Also how a value is described in a message, never showing a secret.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mqttbridge.config.model import valid_topic
from mqttbridge.config.schema import Key

if TYPE_CHECKING:
    from mqttbridge.config.walker import _Walker


class _Invalid(Exception):
    """Raised by a converter; the message is already safe to show (no secret in it)."""


def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return _kind_of(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _got(value: object, secret: bool) -> str:
    """`` (got …)`` for a message; for a secret only its type, never the value."""
    if secret:
        return "" if isinstance(value, str) else f" (got {_kind_of(value)})"
    return f" (got {_show(value)})"


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BOOL_WORDS = {
    **dict.fromkeys(("true", "yes", "on", "1"), True),
    **dict.fromkeys(("false", "no", "off", "0"), False),
}
# YAML 1.1 reads an unquoted on/off/yes/no as a boolean; a choice key gets the word back.
_YAML_BOOL_CHOICES = {True: ("on", "yes", "true"), False: ("off", "no", "false")}


def _to_str(key: Key, value: object, walker: _Walker) -> str:
    if isinstance(value, str):
        return value
    if key.choices and isinstance(value, bool):
        return next((w for w in _YAML_BOOL_CHOICES[value] if w in key.choices), _show(value))
    if key.choices and isinstance(value, int | float):
        return str(value)  # protocol: 5; anything else then fails the choice with its list
    hint = "; put it in quotes" if isinstance(value, bool | int | float) else ""
    raise _Invalid(f"must be a string{_got(value, key.secret)}{hint}")


def _to_int(key: Key, value: object, walker: _Walker) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value.strip())
    raise _Invalid(f"must be an integer{_got(value, key.secret)}")


def _to_number(key: Key, value: object, walker: _Walker) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
        number = float(value.strip())
    if number is None or not math.isfinite(number):
        raise _Invalid(f"must be a number{_got(value, key.secret)}")
    return number


def _to_bool(key: Key, value: object, walker: _Walker) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    raise _Invalid(f"must be true or false{_got(value, key.secret)}")


def _to_topic(key: Key, value: object, walker: _Walker) -> str:
    text = _to_str(key, value, walker)
    reason = valid_topic(text)
    if reason:
        raise _Invalid(f"not a valid MQTT topic: {reason}{_got(text, key.secret)}")
    return text


def _to_url(key: Key, value: object, walker: _Walker) -> str:
    text = _to_str(key, value, walker).strip()
    try:
        parts = urlsplit(text)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        usable = False
    if not usable:
        raise _Invalid(f"must be an http:// or https:// URL with a host{_got(text, key.secret)}")
    return text.rstrip("/")


def _to_path(key: Key, value: object, walker: _Walker) -> Path:
    text = _to_str(key, value, walker)
    if not text:
        raise _Invalid("must not be empty")
    path = Path(text).expanduser()
    return path if path.is_absolute() else walker.base_dir / path


def _to_file(key: Key, value: object, walker: _Walker) -> str:
    path = _to_path(key, value, walker)
    if not path.exists():
        raise _Invalid(f"file not found: {path}")
    if not path.is_file():
        raise _Invalid(f"not a file: {path}")
    return str(path)


_CONVERTERS: dict[str, Callable[[Key, object, _Walker], Any]] = {
    "str": _to_str,
    "int": _to_int,
    "number": _to_number,
    "bool": _to_bool,
    "topic": _to_topic,
    "url": _to_url,
    "path": _to_path,
    "file": _to_file,
}
