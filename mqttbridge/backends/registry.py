"""Provider name -> backend, through the installed providers' specs (``mqttbridge.providers``). A backend's
module loads on first use, so an optional library is only needed by those who configure its provider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mqttbridge import providers as _providers

if TYPE_CHECKING:
    from mqttbridge.backends.base import Backend
    from mqttbridge.statestore import StateStore


def providers() -> list[str]:
    return sorted(_providers.available())


def backend_class(provider: str) -> type[Backend]:
    return _providers.get(provider).backend_class()


def create_backend(account: Any, store: StateStore, **kwargs: Any) -> Backend:
    return backend_class(account.provider)(account, store, **kwargs)
