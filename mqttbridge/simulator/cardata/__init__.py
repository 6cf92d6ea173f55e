"""The BMW CarData simulator (CONTRACT section 9): OAuth device flow, REST with quota, MQTT stream.

Faithful to ``../shared/docs/bmw-cardata-facts.md`` section 8 where a stock Mosquitto allows it; the
differences are listed in the module docstrings of ``stream`` and ``simulator``.
"""

from __future__ import annotations

from .simulator import CarDataSimulator, main
from .stream import StreamError

__all__ = ["CarDataSimulator", "StreamError", "main"]
