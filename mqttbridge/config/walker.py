"""The generic validator: one ``_Walker`` walks the schema and the data together, collecting every
problem as ``<key path>: <message>`` (with ``${VAR}`` substitution and secrets read from ``<key>_file``);
then the checks across sections (vehicle root topics), and the walk that lists a built config's secrets.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mqttbridge.config.model import Config, VehicleConfig, valid_topic
from mqttbridge.config.schema import _INVALID, REQUIRED, Key
from mqttbridge.config.values import _CONVERTERS, _got, _Invalid, _number_text, _show
from mqttbridge.logsetup import MIN_SECRET_LEN, mask_secrets, secret_pattern

PathParts = tuple[str | int, ...]


def _fmt_path(path: PathParts) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


_TOKEN = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
_EXPRESSION = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


class _Walker:
    """One validation run: walks the schema and the data together, collecting problems."""

    def __init__(self, env: Mapping[str, str], base_dir: Path):
        self.env = env
        self.base_dir = base_dir
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.inline_secret = False  # a secret written in the file itself (for the chmod warning)
        self.secret_values: set[str] = set()  # redacted from every message as a last line of defence
        self.seen: dict[str, dict[Any, str]] = {}

    def error(self, path: PathParts, message: str) -> Any:
        self.problems.append(f"{_fmt_path(path)}: {message}")
        return _INVALID

    def redact(self, lines: list[str]) -> list[str]:
        """Hide any secret value that still reached a message, e.g. an env value also used for a port."""
        pattern = secret_pattern(self.secret_values)
        return [mask_secrets(line, pattern, "<redacted>") for line in lines]

    # -- dispatch ----------------------------------------------------------------------------------

    def value(self, key: Key, raw: object, path: PathParts) -> Any:
        """Validate one present value (possibly null) against ``key``."""
        if key.kind == "section":
            return self.section(key, raw, path)
        if key.kind == "list":
            return self.sequence(key, raw, path)
        if key.kind == "variant":
            return self.variant(key, raw, path)
        return self.scalar(key, raw, path)

    def section(self, key: Key, raw: object, path: PathParts) -> Any:
        assert key.fields is not None
        if key.toggle and isinstance(raw, bool):
            raw = {} if raw else None
        if raw is None and key.nullable:
            return None
        if not isinstance(raw, dict):
            return self.error(path, f"must be a mapping of keys{_got(raw, False)}")
        fields = key.fields
        from_file = self._check_keys(fields, raw, path)
        values: dict[str, Any] = {}
        later: list[str] = []
        for name, sub in fields.items():
            sub_path = (*path, name)
            if name in from_file:
                file_key = from_file[name]
                values[name] = self.secret_file(sub, raw[file_key], (*path, file_key))
            elif raw.get(name) is not None:
                values[name] = self.value(sub, raw[name], sub_path)
            elif sub.nullable and (name in raw or sub.default is None):
                values[name] = None  # an explicit null switches a key with a default off
            elif sub.default is REQUIRED:
                alternative = f"; or give {name}_file" if sub.secret else ""
                values[name] = self.error(sub_path, f"is required{alternative}")
            elif sub.default_from is not None:
                later.append(name)
            elif sub.kind == "section":
                values[name] = self.section(sub, {}, sub_path)
            elif sub.kind == "list":
                values[name] = tuple(sub.default or ())
            else:
                values[name] = sub.default
        for name in later:
            values[name] = fields[name].default_from(values, self.env)  # type: ignore[misc]
        for name, sub in fields.items():
            self._after(sub, values, name, (*path, name))
        if any(v is _INVALID for v in values.values()):
            return _INVALID
        return key.build(**values) if key.build else values

    def _after(self, key: Key, values: Mapping[str, Any], name: str, path: PathParts) -> None:
        """Checks that need the whole section: requires, unique, warn_if."""
        value = values[name]
        if value is None or value is _INVALID:
            return
        if key.requires and values.get(key.requires) is None:
            parent = _fmt_path(path[:-1])
            self.error(path, f"needs {parent + '.' if parent else ''}{key.requires} as well")
        if key.unique:
            seen = self.seen.setdefault(key.unique, {})
            if value in seen:
                self.error(path, f"duplicate {key.unique} {_show(value)} (also at {seen[value]})")
            else:
                seen[value] = _fmt_path(path)
        if key.warn_if and value == key.warn_if[0]:
            self.warnings.append(f"{_fmt_path(path)}: {key.warn_if[1]}")

    def _check_keys(self, fields: Mapping[str, Key], raw: Mapping[Any, Any], path: PathParts) -> dict[str, str]:
        """Report unknown keys; return {secret key: its ``_file`` key} for secrets given as files."""
        from_file: dict[str, str] = {}
        known = [*fields, *(f"{n}_file" for n, k in fields.items() if k.secret)]
        for name in raw:
            text = str(name)
            if text in fields:
                continue
            base = text.removesuffix("_file")
            if text.endswith("_file") and base in fields:
                if not fields[base].secret:
                    self.error((*path, text), f"unknown key: only secrets may be read from a file, {base} is not one")
                elif raw.get(base) is not None:
                    self.error((*path, base), f"give either {base} or {text}, not both")
                else:
                    from_file[base] = text
                continue
            close = difflib.get_close_matches(text, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(fields)}"
            self.error((*path, text), f"unknown key ({hint})")
        return from_file

    def sequence(self, key: Key, raw: object, path: PathParts) -> Any:
        assert key.item is not None
        if not isinstance(raw, list):
            return self.error(path, f"must be a list{_got(raw, False)}")
        if len(raw) < key.min_items:
            return self.error(path, "must not be empty")
        items = [self.value(key.item, item, (*path, index)) for index, item in enumerate(raw)]
        return _INVALID if any(i is _INVALID for i in items) else tuple(items)

    def variant(self, key: Key, raw: object, path: PathParts) -> Any:
        assert key.tag is not None and key.variants is not None
        if not isinstance(raw, dict):
            return self.error(path, f"must be a mapping of keys{_got(raw, False)}")
        tag_path = (*path, key.tag)
        known = tuple(key.variants)
        if raw.get(key.tag) is None:
            return self.error(tag_path, f"is required (one of {', '.join(known)})")
        chosen = self.scalar(Key("str", choices=known), raw[key.tag], tag_path)
        if chosen is _INVALID:
            return _INVALID
        return self.section(key.variants[chosen], raw, path)

    # -- scalars -----------------------------------------------------------------------------------

    def scalar(self, key: Key, raw: object, path: PathParts, *, substitute: bool = True) -> Any:
        value = raw
        if isinstance(value, str) and substitute:
            value = self.substitute(value, path, key.secret)
            if value is _INVALID:
                return _INVALID
        if key.secret and isinstance(value, str) and value:
            self.secret_values.add(value)
            if len(value) < MIN_SECRET_LEN:
                self.warnings.append(
                    f"{_fmt_path(path)}: shorter than {MIN_SECRET_LEN} characters, too short to be "
                    "masked in logs safely (it would hide parts of ordinary words); use a longer one"
                )
        if value is None or (value == "" and key.nullable):
            return None if key.nullable else self.error(path, "must not be null")
        try:
            return self._check(key, _CONVERTERS[key.kind](key, value, self))
        except _Invalid as exc:
            return self.error(path, str(exc))

    def _check(self, key: Key, value: Any) -> Any:
        got = _got(value, key.secret)
        if key.nonempty and value == "":
            raise _Invalid("must not be empty")
        if key.choices:
            wanted = str(value).lower() if key.ignore_case else value
            match = next((c for c in key.choices if (c.lower() if key.ignore_case else c) == wanted), None)
            if match is None:
                raise _Invalid(f"must be one of {', '.join(key.choices)}{got}")
            value = match
        low, high = key.minimum, key.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            if high is None:
                raise _Invalid(f"must be >= {_number_text(low)}{got}")  # type: ignore[arg-type]
            if low is None:
                raise _Invalid(f"must be <= {_number_text(high)}{got}")
            raise _Invalid(f"must be between {_number_text(low)} and {_number_text(high)}{got}")
        if key.pattern and not re.fullmatch(key.pattern, value):
            raise _Invalid(f"must be {key.pattern_hint or 'of the form ' + key.pattern}{got}")
        return value

    def substitute(self, text: str, path: PathParts, secret: bool) -> Any:
        """Expand ``${VAR}``, ``${VAR:-default}`` and ``$$``; note whether file text ended up in a secret."""
        out: list[str] = []
        literal = False
        failed = False
        position = 0
        for match in _TOKEN.finditer(text):
            out.append(text[position : match.start()])
            literal = literal or match.start() > position
            position = match.end()
            token = match.group(0)
            if token == "$$":
                out.append("$")
                literal = True
                continue
            if token == "${":
                self.error(path, "unterminated '${' (write '$$' for a literal '$')")
                return _INVALID
            expression = _EXPRESSION.fullmatch(match.group(1))
            if expression is None:
                shown = "" if secret else f" {token!r}"
                self.error(path, f"invalid variable reference{shown}: write ${{NAME}} or ${{NAME:-default}}")
                failed = True
                continue
            name, default = expression.group(1), expression.group(2)
            found = self.env.get(name)
            if found is None or (found == "" and default is not None):
                if default is None:
                    self.error(path, f"environment variable {name} is not set")
                    failed = True
                    continue
                found = default
                literal = literal or bool(default)
            if secret and found:
                self.secret_values.add(found)
            out.append(found)
        out.append(text[position:])
        literal = literal or position < len(text)
        if failed:
            return _INVALID
        if secret and literal:
            self.inline_secret = True
        return "".join(out)

    def secret_file(self, key: Key, raw: object, path: PathParts) -> Any:
        """A secret read from ``<key>_file``: the file's content, stripped, never shown."""
        file_path = self.scalar(Key("path"), raw, path)
        if file_path is _INVALID:
            return _INVALID
        try:
            content = file_path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            return self.error(path, f"cannot read {file_path}: not UTF-8 text")
        except OSError as exc:
            return self.error(path, f"cannot read {file_path}: {exc.strerror or type(exc).__name__}")
        return self.scalar(key, content.strip(), path, substitute=False)


def _collect_secrets(key: Key, obj: Any, out: set[str]) -> None:
    """Walk a built config along the schema, gathering every secret value."""
    if obj is None:
        return
    if key.kind == "variant" and key.variants is not None and key.tag is not None:
        chosen = key.variants.get(getattr(obj, key.tag, ""))
        if chosen is not None:
            _collect_secrets(chosen, obj, out)
    elif key.kind == "list" and key.item is not None:
        for item in obj:
            _collect_secrets(key.item, item, out)
    elif key.kind == "section" and key.fields is not None:
        for name, sub in key.fields.items():
            value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
            if sub.secret:
                if isinstance(value, str) and value:
                    out.add(value)
            else:
                _collect_secrets(sub, value, out)


def _check_roots(config: Config) -> list[str]:
    """Vehicle roots must be valid, distinct, and outside ``<base_topic>/bridge``."""
    problems: list[str] = []
    bridge = f"{config.mqtt.base_topic}/bridge"
    owners: dict[str, tuple[str, VehicleConfig]] = {}
    for a_index, account in enumerate(config.accounts):
        for v_index, vehicle in enumerate(account.vehicles):
            where = f"accounts[{a_index}].vehicles[{v_index}]"
            root = config.root_topic(vehicle)
            this = f"vehicle {vehicle.name} ({vehicle.vin})"
            reason = valid_topic(root)
            if reason:
                problems.append(f"{where}: root topic {root!r} of {this} is not a valid topic: {reason}")
            elif root == bridge or root.startswith(bridge + "/"):
                problems.append(
                    f"{where}: root topic {root!r} of {this} collides with the bridge's own topics under "
                    f"{bridge!r}; give the vehicle another name or topic"
                )
            elif root in owners:
                other_where, other = owners[root]
                problems.append(
                    f"{where}: root topic {root!r} of {this} is already the root of vehicle {other.name} "
                    f"({other.vin}) at {other_where}; give one of them another name or topic"
                )
            else:
                owners[root] = (where, vehicle)
    return problems
