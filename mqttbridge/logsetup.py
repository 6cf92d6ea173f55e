"""Logging to stderr with every known secret masked, whatever the level or the logger."""

from __future__ import annotations

import logging
import sys
import threading

_secrets: set[str] = set()
_lock = threading.Lock()
MASK = "***"
#: shorter strings would mask ordinary words (a PIN such as "1234" is still masked: 4 is the floor)
_MIN_SECRET_LEN = 4


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every log line from now on (passwords, keys, tokens as they are obtained)."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


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
