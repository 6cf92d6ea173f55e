"""mqttbridge: cars to MQTT, with Home Assistant discovery."""

from __future__ import annotations

__version__ = "0.1.0"
