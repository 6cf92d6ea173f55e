"""Providers: each vendor API is a package that exports one ``ProviderSpec``, found through the entry-point
group ``mqttbridge.providers`` (the built-in ones too), so a provider can live in a pip package of its own
and the core never names one.

A spec says everything the core needs to know of its provider: the account configuration schema
(validated by the same engine as the rest of the file, so errors keep their key paths), the default
call budget, the backend class (imported on first use: an optional library is needed only by those who
configure that provider), what its vehicles offer beyond the contract's common fields, and its share of
``mqttbridge demo`` (``DemoPart``).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from mqttbridge.errors import MqttBridgeError
from mqttbridge.fields import FIELDS, FieldSpec

if TYPE_CHECKING:
    from mqttbridge.backends.base import Backend
    from mqttbridge.config import Key

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mqttbridge.providers"


@dataclass(frozen=True)
class VehicleOffers:
    """What a provider's vehicles have beyond CONTRACT section 4's common fields, for the core to use
    without knowing the vendor's field names."""

    #: Home Assistant entities of the provider's own fields (the common ones are the core's)
    fields: tuple[FieldSpec, ...] = ()
    #: command -> the field that shows whether the car acted, read after a command timed out
    observed: Mapping[str, str] = field(default_factory=dict)
    #: the fields holding the AC and DC charge limits (``charge_limit`` sets both: one slider keeps the other)
    charge_limits: tuple[str, str] | None = None
    #: the field that says whether climate is running (a climate entity's mode), and its target temperature
    climate_running: str | None = None
    climate_target: str | None = None

    def field(self, name: str) -> FieldSpec | None:
        """The provider's own declaration first, then the common field's: a common field may differ by vendor
        (CarData's 12 V battery is in volts, the others' in percent)."""
        return next((spec for spec in self.fields if spec.name == name), None) or FIELDS.get(name)


@dataclass
class DemoPart:
    """One provider's share of ``mqttbridge demo``, running: what ``ProviderSpec.demo`` returns.

    The demo bridges ``account`` (an account section, as in a configuration file) beside the other parts',
    prints ``lines`` (what runs) before the line to watch it with and ``hints`` (what to try) after it, and
    calls ``stop`` when it stops (also when another part failed to start): it leaves nothing running.
    """

    #: the account section pointing the bridge at this part's simulator (a name of its own)
    account: dict[str, Any]
    #: the topic names of its cars (``<base>/<name>/...``)
    names: list[str]
    lines: list[str]
    stop: Callable[[], None]
    hints: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    #: the account section's schema: ``mqttbridge.config.account_schema(...)``
    account_schema: Key
    #: ``module:Class`` of the backend, imported when an account of this provider is bridged
    backend: str
    #: default of ``poll.daily_budget`` (CONTRACT section 8); None: no budget
    default_budget: int | None = None
    #: the pip extra that brings the backend's library, for the install hint
    extra: str | None = None
    offers: VehicleOffers = field(default_factory=VehicleOffers)
    #: the module that reads one captured status answer (``mqttbridge replay``: ``replay_answer``)
    replay: str | None = None
    #: the module that saves an account's raw answers (``mqttbridge fingerprint``: ``capture``)
    fingerprint: str | None = None
    #: one line for ``--help`` texts and error messages
    description: str = ""
    #: the vendor takes no commands (BMW CarData): a command the car lacks is refused as "read-only provider"
    read_only: bool = False
    #: ``module:function`` running this vendor's simulator for ``mqttbridge simulate --provider`` (args -> exit code)
    simulator: str | None = None
    #: ``module:function(base_topic, host, port) -> DemoPart`` starting this provider's share of ``mqttbridge demo``
    #: (a simulator and the account bridging it), imported on first use; ``host:port`` is the demo's broker
    demo: str | None = None
    #: whether plain ``mqttbridge demo`` (no ``--provider``) shows it
    demo_by_default: bool = False

    def load(self, target: str | None, what: str) -> Any:
        """The object ``module:name`` names; a missing library becomes an install hint."""
        if target is None:
            raise MqttBridgeError(f"the {self.name} provider has no {what}")
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = f"pip install 'mqttbridge[{self.extra}]'" if self.extra else "its package"
            raise MqttBridgeError(
                f"the {self.name} backend needs a library that is not installed ({exc.name}); install it with: {hint}"
            ) from None
        return getattr(module, attribute)

    def backend_class(self) -> type[Backend]:
        cls: type[Backend] = self.load(self.backend, "backend")
        return cls


_lock = threading.Lock()
_loaded: dict[str, ProviderSpec] | None = None


def available() -> dict[str, ProviderSpec]:
    """Every installed provider, by name (loaded once; a broken one is logged and left out)."""
    global _loaded
    with _lock:
        if _loaded is None:
            found: dict[str, ProviderSpec] = {}
            for point in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    spec = point.load()
                except Exception:  # one broken plug-in must not take the others down
                    log.exception("the provider %s (%s) cannot be loaded", point.name, point.value)
                    continue
                if not isinstance(spec, ProviderSpec) or spec.name != point.name:
                    log.error(
                        "the entry point %s (%s) is not a ProviderSpec named %s", point.name, point.value, point.name
                    )
                    continue
                found[spec.name] = spec
            _loaded = found
        return dict(_loaded)


def get(name: str) -> ProviderSpec:
    specs = available()
    try:
        return specs[name]
    except KeyError:
        known = ", ".join(sorted(specs)) or "none (is mqttbridge installed? pip install -e .)"
        raise MqttBridgeError(f"unknown provider {name!r}; known: {known}") from None


def offers(name: str) -> VehicleOffers:
    """What the vehicles of provider ``name`` offer (nothing beyond the common fields if it is unknown)."""
    spec = available().get(name)
    return spec.offers if spec is not None else VehicleOffers()


class AccountSchemas(Mapping[str, "Key"]):
    """provider name -> account schema, read from the installed providers when first needed (the config
    module's variant table: it must not load plug-ins at import time)."""

    def _specs(self) -> dict[str, ProviderSpec]:
        return available()

    def __getitem__(self, name: str) -> Key:
        return self._specs()[name].account_schema

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._specs()))

    def __len__(self) -> int:
        return len(self._specs())
