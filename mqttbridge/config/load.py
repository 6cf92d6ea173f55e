"""The entry points: ``load_config`` reads a YAML file (reporting duplicate keys, which PyYAML drops
silently), ``parse_config`` validates parsed data against ``SCHEMA`` and builds the ``Config``.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import yaml

from mqttbridge.config.model import Config
from mqttbridge.config.schema import _INVALID, SCHEMA
from mqttbridge.config.values import _kind_of
from mqttbridge.config.walker import PathParts, _check_roots, _fmt_path, _Walker
from mqttbridge.errors import ConfigError

logger = logging.getLogger(__name__)


def parse_config(data: object, *, env: Mapping[str, str], base_dir: Path, source: Path | None = None) -> Config:
    """Validate already-parsed YAML ``data``; relative paths are taken from ``base_dir``."""
    name = str(source) if source is not None else "configuration"
    if data is None:
        raise ConfigError([f"{name}: the file is empty; see config.yaml.example"])
    if not isinstance(data, dict):
        raise ConfigError([f"{name}: the top level must be a mapping of keys (got {_kind_of(data)})"])
    walker = _Walker(env, Path(base_dir))
    values = walker.section(SCHEMA, data, ())
    if walker.problems or values is _INVALID:
        raise ConfigError(walker.redact(walker.problems or ["configuration: invalid"]))
    config = Config(**values, source=source)
    problems = _check_roots(config)
    if problems:
        raise ConfigError(problems)
    warnings = walker.redact(walker.warnings)
    if source is not None and walker.inline_secret:
        try:
            mode = source.stat().st_mode
        except OSError:
            mode = 0
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(
                f"{source}: holds secrets inline and is readable by group or others "
                f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {source}"
            )
    for warning in warnings:
        logger.debug("config warning: %s", warning)
    return Config(**values, source=source, warnings=tuple(warnings))


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate the YAML file at ``path``; ``env`` defaults to ``os.environ``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or type(exc).__name__}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: cannot read: not UTF-8 text (bad byte at offset {exc.start})"]) from None
    data = _parse_yaml(text, path)
    source = path.absolute()
    config = parse_config(data, env=os.environ if env is None else env, base_dir=source.parent, source=source)
    logger.debug("loaded configuration from %s", source)
    return config


def _parse_yaml(text: str, path: Path) -> object:
    """``yaml.safe_load`` plus a duplicate-key check; errors give line and column, never the line's text."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        duplicates: list[str] = []
        _find_duplicate_keys(node, (), set(), duplicates)
        if duplicates:
            raise ConfigError(duplicates)
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        message = f"{path}: YAML syntax error{where}: {exc.problem or exc.context or 'invalid YAML'}"
        if exc.context and exc.problem:
            context_mark = exc.context_mark
            started = ""
            if context_mark:
                started = f" at line {context_mark.line + 1}, column {context_mark.column + 1}"
            message += f" ({exc.context}{started})"
        raise ConfigError([message]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: YAML error: {exc}"]) from None


def _find_duplicate_keys(node: yaml.Node | None, path: PathParts, visited: set[int], out: list[str]) -> None:
    """PyYAML keeps the last of two equal keys silently; a duplicated section must not vanish."""
    if node is None or id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                _find_duplicate_keys(value_node, path, visited, out)
                continue
            name = key_node.value
            line = key_node.start_mark.line + 1
            if name in first_line:
                first = first_line[name]
                out.append(f"{_fmt_path((*path, name))}: duplicate key (line {line}, first at line {first})")
            else:
                first_line[name] = line
            _find_duplicate_keys(value_node, (*path, name), visited, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _find_duplicate_keys(item, (*path, index), visited, out)
