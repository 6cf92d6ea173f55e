"""Provider name -> backend class. Modules load on first use, so an optional backend's library
(``hyundai-kia-connect-api``) is only needed by those who configure it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mqttbridge.errors import MqttBridgeError

if TYPE_CHECKING:
    from mqttbridge.backends.base import Backend
    from mqttbridge.statestore import StateStore

_REGISTRY: dict[str, str] = {
    "bmw_legacy": "mqttbridge.backends.bmw_legacy:BmwLegacyBackend",
    "hyundai_kia": "mqttbridge.backends.hyundai_kia:HyundaiKiaBackend",
}


def providers() -> list[str]:
    return sorted(_REGISTRY)


def backend_class(provider: str) -> type[Backend]:
    try:
        target = _REGISTRY[provider]
    except KeyError:
        raise MqttBridgeError(
            f"unknown provider {provider!r}; known: {', '.join(providers())}"
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MqttBridgeError(
            f"the {provider} backend needs a library that is not installed ({exc.name}); "
            f"install it with: pip install 'mqttbridge[{provider.split('_')[0]}]'"
        ) from None
    return getattr(module, class_name)


def create_backend(account: Any, store: StateStore, **kwargs: Any) -> Backend:
    return backend_class(account.provider)(account, store, **kwargs)
