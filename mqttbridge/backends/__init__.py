"""Vendor backends behind one small interface, chosen by provider name from a registry."""

from __future__ import annotations

from mqttbridge.backends.base import Backend
from mqttbridge.backends.registry import create_backend, providers

__all__ = ["Backend", "create_backend", "providers"]
