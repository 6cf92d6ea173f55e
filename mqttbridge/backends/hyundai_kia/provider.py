"""The Hyundai/Kia/Genesis provider: its account keys, default budget, and what its cars offer (CONTRACT §7).

It imports no vendor library: a configuration is validated (and ``check-config`` says the extra is
missing) without ``hyundai-kia-connect-api`` installed; the backend needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mqttbridge.config import REQUIRED as _REQUIRED
from mqttbridge.config import AccountConfig, Key, account_schema
from mqttbridge.providers import ProviderSpec, VehicleOffers

#: the account words of ``region``; the backend maps them to the library's numbers (``mapping.REGIONS``)
REGIONS = ("europe", "canada", "usa", "china", "australia", "india", "new_zealand", "brazil", "europe_cci")
#: vendor-api-facts B4: US Hyundai allows 30 calls a day, EU users hit 5091 at 15-minute polls; every request
#: the library makes is counted (a read costs about 3 in the EU), and reads are spread so the day's budget lasts
DAILY_BUDGET = 100


@dataclass(frozen=True, kw_only=True)
class HyundaiKiaAccount(AccountConfig):
    brand: str
    region: str
    username: str
    password: str = field(repr=False)
    pin: str | None = field(default=None, repr=False)
    retries: int = 5

    def where(self) -> str:
        return f"{self.brand} region {self.region}"


SPEC = ProviderSpec(
    name="hyundai_kia",
    description="Hyundai, Kia and Genesis (hyundai-kia-connect-api)",
    account_schema=account_schema(
        HyundaiKiaAccount,
        {
            "brand": Key("str", default=_REQUIRED, choices=("kia", "hyundai", "genesis"), ignore_case=True),
            "region": Key("str", default=_REQUIRED, ignore_case=True, choices=REGIONS),
            "username": Key("str", default=_REQUIRED, nonempty=True),
            "password": Key("str", default=_REQUIRED, nonempty=True, secret=True),
            "pin": Key("str", nullable=True, secret=True),
            "retries": Key("int", default=5, minimum=1, maximum=10),
        },
        daily_budget=DAILY_BUDGET,
    ),
    backend="mqttbridge.backends.hyundai_kia.backend:HyundaiKiaBackend",
    default_budget=DAILY_BUDGET,
    extra="hyundai",
    offers=VehicleOffers(
        observed={
            "lock": "door_lock_state",
            "climate": "air_control_is_on",
            "charging": "charging_status",
            "charge_limit": "ev_charge_limits_ac",
        },
        charge_limits=("ev_charge_limits_ac", "ev_charge_limits_dc"),
        climate_running="air_control_is_on",
    ),
    replay="mqttbridge.backends.hyundai_kia.replay",
    fingerprint="mqttbridge.backends.hyundai_kia.fingerprint",
)
