"""The Hyundai/Kia/Genesis provider: its account keys, default budget, and what its cars offer (CONTRACT §7).

It imports no vendor library: a configuration is validated (and ``check-config`` says the extra is
missing) without ``hyundai-kia-connect-api`` installed; the backend needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mqttbridge.config import REQUIRED as _REQUIRED
from mqttbridge.config import AccountConfig, Key, account_schema
from mqttbridge.fields import FieldSpec, problem
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


#: the Home Assistant entities of the library's own attribute names (vendor-api-facts B2)
FIELDS: tuple[FieldSpec, ...] = (
    problem("tire_pressure_all_warning_is_on", "Tyre pressure"),
    problem("tire_pressure_front_left_warning_is_on", "Tyre pressure front left"),
    problem("tire_pressure_front_right_warning_is_on", "Tyre pressure front right"),
    problem("tire_pressure_rear_left_warning_is_on", "Tyre pressure rear left"),
    problem("tire_pressure_rear_right_warning_is_on", "Tyre pressure rear right"),
    problem("washer_fluid_warning_is_on", "Washer fluid"),
    problem("brake_fluid_warning_is_on", "Brake fluid"),
    problem("smart_key_battery_warning_is_on", "Smart key battery"),
    problem("fuel_level_is_low", "Fuel low"),
    FieldSpec("air_control_is_on", "Climate running", "binary_sensor", "bool", device_class="running"),
    FieldSpec("engine_is_running", "Engine", "binary_sensor", "bool", device_class="running"),
    FieldSpec("ev_charge_port_door_is_open", "Charge port", "binary_sensor", "bool", device_class="door"),
    FieldSpec(
        "air_temperature",
        "Climate target temperature",
        unit="°C",
        device_class="temperature",
        state_class="measurement",
        diagnostic=True,
    ),
    FieldSpec("ev_charging_power", "Charging power", unit="kW", device_class="power", state_class="measurement"),
    FieldSpec(
        "ev_battery_soh_percentage",
        "Battery health",
        unit="%",
        state_class="measurement",
        diagnostic=True,
        icon="mdi:battery-heart-variant",
    ),
    FieldSpec("ev_charge_limits_ac", "Charge limit AC", unit="%", state_class="measurement", diagnostic=True),
    FieldSpec("ev_charge_limits_dc", "Charge limit DC", unit="%", state_class="measurement", diagnostic=True),
    FieldSpec("total_driving_range", "Total range", unit="km", device_class="distance", state_class="measurement"),
)

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
        fields=FIELDS,
        charge_limits=("ev_charge_limits_ac", "ev_charge_limits_dc"),
        climate_running="air_control_is_on",
        climate_target="air_temperature",
    ),
    replay="mqttbridge.backends.hyundai_kia.replay",
    fingerprint="mqttbridge.backends.hyundai_kia.fingerprint",
)
