"""The BMW CarData provider: today's BMW, read-only, streamed, inside 50 REST calls a day (CONTRACT §9).

Light on purpose, like every ``provider`` module: the entry point loads it to validate a configuration;
the backend (``backend.CarDataBackend``) is imported only when such an account is bridged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mqttbridge.config import REQUIRED as _REQUIRED
from mqttbridge.config import AccountConfig, Key, account_schema
from mqttbridge.providers import ProviderSpec, VehicleOffers

from .fields import FIELDS

#: bmw-cardata-facts 2.8: 50 REST requests a day per BMW account, reset at 00:00 UTC (as projects assume)
DAILY_BUDGET = 50
#: bmw-cardata-facts 1.2, 2.1, 3.1: BMW's servers
AUTH_URL = "https://customer.bmwgroup.com"
API_URL = "https://api-cardata.bmwgroup.com"
STREAM_HOST = "customer.streaming-cardata.bmwgroup.com"
STREAM_PORT = 9000


@dataclass(frozen=True)
class StreamConfig:
    """``stream: {republish: <prefix>}``: each raw stream message also goes, unchanged and not retained, to
    ``<prefix>/<VIN>`` on the bridge's broker, so other tools can share the account's one stream slot.
    ``stream: {enabled: false}``: no stream connection at all, REST only (the demo without mosquitto)."""

    republish: str | None = None
    enabled: bool = True


@dataclass(frozen=True, kw_only=True)
class CarDataAccount(AccountConfig):
    client_id: str = field(repr=False)
    auth_url: str = AUTH_URL
    api_url: str = API_URL
    stream_host: str = STREAM_HOST
    stream_port: int = STREAM_PORT
    stream_tls: bool = True
    #: a CA file for the stream's TLS (the simulator's ``--stream-tls`` prints one); None: the system's CAs
    stream_ca: str | None = None
    stream: StreamConfig = field(default_factory=StreamConfig)
    timeout: float = 30.0
    retries: int = 3

    def where(self) -> str:
        return f"server {self.api_url}" if self.api_url != API_URL else "BMW CarData"


_STREAM = Key(
    "section",
    build=StreamConfig,
    fields={
        "republish": Key(
            "str",
            nullable=True,
            pattern=r"[^#+\s]+",
            pattern_hint="an MQTT topic prefix without wildcards or spaces",
        ),
        "enabled": Key("bool", default=True),
    },
)

SPEC = ProviderSpec(
    name="bmw_cardata",
    description="BMW CarData (today's BMW and MINI: read-only, streamed, 50 REST calls a day)",
    account_schema=account_schema(
        CarDataAccount,
        {
            # a UUID made in BMW's portal (bmw-cardata-facts 1.1); not a password, but it identifies the account
            "client_id": Key("str", default=_REQUIRED, nonempty=True, secret=True),
            "auth_url": Key("url", default=AUTH_URL),
            "api_url": Key("url", default=API_URL),
            "stream_host": Key("str", default=STREAM_HOST, nonempty=True),
            "stream_port": Key("int", default=STREAM_PORT, minimum=1, maximum=65535),
            "stream_tls": Key("bool", default=True),
            "stream_ca": Key("str", nullable=True),
            "stream": _STREAM,
            "timeout": Key("number", default=30.0, minimum=1, maximum=120),
            "retries": Key("int", default=3, minimum=1, maximum=10),
        },
        daily_budget=DAILY_BUDGET,
        # read-only: no command needs calls kept for it, so reads and refreshes may use all 50
        poll_defaults={"interval": 3600, "budget_reset": "00:00 UTC", "command_reserve": 0, "quiet_hours": None},
    ),
    backend="mqttbridge.backends.bmw_cardata.backend:CarDataBackend",
    default_budget=DAILY_BUDGET,
    read_only=True,
    offers=VehicleOffers(fields=FIELDS),
    replay="mqttbridge.backends.bmw_cardata.replay",
    simulator="mqttbridge.simulator.cardata:main",
    # the demo's car appears only once the user approved its login: not in plain `mqttbridge demo`
    demo="mqttbridge.backends.bmw_cardata.demo:demo_part",
    demo_by_default=False,
    fingerprint="mqttbridge.backends.bmw_cardata.fingerprint",
)
