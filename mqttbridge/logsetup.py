"""Logging to stderr with every known secret masked, whatever the level or the logger."""

from __future__ import annotations

import logging
import re
import sys
import threading

_secrets: set[str] = set()
#: values that look like secrets but are public (the demo's documented password ``demo``): never masked
_public: set[str] = set()
_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None
MASK = "***"
#: the levels a user may choose: the configuration's ``log_level`` and every command's ``--log-level``
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: shorter strings are not masked at all: they would hit ordinary words (a PIN such as "1234" is still masked)
MIN_SECRET_LEN = 4
#: a secret at least this long is masked wherever it appears; a shorter one only as a whole word, so that a
#: password such as "demo" never masks part of "mqttbridge-demo-1"
WHOLE_WORD_BELOW = 16


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every log line from now on (passwords, keys, tokens as they are obtained)."""
    global _pattern
    if value and len(value) >= MIN_SECRET_LEN:
        with _lock:
            if value not in _public and value not in _secrets:
                _secrets.add(value)
                _pattern = None


def declare_public(*values: str) -> None:
    """Values that are documented and public (the demo's credentials): not masked even if registered."""
    global _pattern
    with _lock:
        _public.update(values)
        _secrets.difference_update(values)
        _pattern = None


def secret_pattern(secrets: set[str] | frozenset[str]) -> re.Pattern[str] | None:
    """One regular expression for all ``secrets``: long ones anywhere, short ones as whole words only."""
    if not secrets:
        return None
    parts = []
    for secret in sorted(secrets, key=len, reverse=True):
        escaped = re.escape(secret)
        if len(secret) < WHOLE_WORD_BELOW:
            escaped = rf"(?<![A-Za-z0-9_]){escaped}(?![A-Za-z0-9_])"
        parts.append(escaped)
    return re.compile("|".join(parts))


def mask_secrets(text: str, pattern: re.Pattern[str] | None, mask: str = MASK) -> str:
    return text if pattern is None else pattern.sub(mask, text)


def redact(text: str) -> str:
    global _pattern
    with _lock:
        if _pattern is None and _secrets:
            _pattern = secret_pattern(_secrets)
        pattern = _pattern
    return mask_secrets(text, pattern)


class RedactingFilter(logging.Filter):
    """Renders the record once and masks secrets in the result, arguments and traceback included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(text)
            record.exc_info = None
        record.msg = redact(message)
        record.args = None
        return True


def setup_logging(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # urllib3 logs request URLs at DEBUG; they hold no secrets here, but its retries are noise
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))
