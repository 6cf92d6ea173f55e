"""The legacy BMW ConnectedDrive provider: its account keys, and what its cars offer (CONTRACT sections 2, 6).

Light on purpose: the entry point loads this module to validate a configuration, and the backend
(``mqttbridge.backends.bmw_legacy:BmwLegacyBackend``) only when such an account is bridged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mqttbridge.config import REQUIRED as _REQUIRED
from mqttbridge.config import AccountConfig, Key, account_schema
from mqttbridge.providers import ProviderSpec, VehicleOffers

#: vendor-api-facts A2: the three servers, picked by ``region`` unless ``base_url`` names another
REGIONS = ("rest_of_world", "north_america", "china")


@dataclass(frozen=True, kw_only=True)
class BmwLegacyAccount(AccountConfig):
    username: str
    password: str = field(repr=False)
    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    region: str = "rest_of_world"
    base_url: str | None = None
    token_endpoint: str = "webapi"
    security_answer: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    retries: int = 5

    def where(self) -> str:
        return f"server {self.base_url}" if self.base_url else f"region {self.region}"


SPEC = ProviderSpec(
    name="bmw_legacy",
    description="the legacy BMW ConnectedDrive API (and its simulator)",
    account_schema=account_schema(
        BmwLegacyAccount,
        {
            "region": Key("str", default="rest_of_world", choices=REGIONS),
            "base_url": Key("url", nullable=True),
            "username": Key("str", default=_REQUIRED, nonempty=True),
            "password": Key("str", default=_REQUIRED, nonempty=True, secret=True),
            "api_key": Key("str", default=_REQUIRED, nonempty=True, secret=True),
            "api_secret": Key("str", default=_REQUIRED, nonempty=True, secret=True),
            "token_endpoint": Key("str", default="webapi", choices=("webapi", "gcdm")),
            "security_answer": Key("str", nullable=True, secret=True),
            "timeout": Key("number", default=30.0, minimum=1, maximum=120),
            "retries": Key("int", default=5, minimum=1, maximum=10),
        },
    ),
    backend="mqttbridge.backends.bmw_legacy:BmwLegacyBackend",
    default_budget=None,  # no known daily limit (it still honours HTTP 429)
    offers=VehicleOffers(observed={"lock": "door_lock_state", "charging": "charging_status"}),
    replay="mqttbridge.backends.bmw_legacy.replay",
    simulator="mqttbridge.cli.tools:simulate_legacy",
    demo="mqttbridge.backends.bmw_legacy.demo:demo_part",
    demo_by_default=True,
    fingerprint="mqttbridge.backends.bmw_legacy.fingerprint",
)
