"""The legacy BMW provider's share of ``mqttbridge demo``: its simulator's four demo cars and the account bridging them.

Here, not in the core's ``mqttbridge.demo``, because the core never names a provider: the spec points at
``demo_part`` (``ProviderSpec.demo``), and plain ``mqttbridge demo`` shows it (``demo_by_default``).
"""

from __future__ import annotations

from mqttbridge.logsetup import declare_public
from mqttbridge.providers import DemoPart

#: the simulator's public password (CONTRACT section 6); the demo uses it for the API key and secret too
DEMO_PASSWORD = "demo"

#: topic names for the four demo cars, in demo_vehicles() order
DEMO_NAMES = ("i3", "i3_rex", "530e", "x1")


def demo_part(base_topic: str, host: str, port: int) -> DemoPart:
    """The legacy simulator with its demo cars, running, and the ``demo`` account that bridges them."""
    from mqttbridge.simulator import SimulatorServer, demo_vehicles

    # the simulator's documented credentials are public: masking them would garble ordinary words
    declare_public(DEMO_PASSWORD)
    cars = demo_vehicles()
    simulator = SimulatorServer(cars, execution_step=2.0)
    simulator.start()
    account = {
        "name": "demo",
        "provider": "bmw_legacy",
        "base_url": simulator.url,
        "username": "demo@example.com",
        "password": DEMO_PASSWORD,
        "api_key": DEMO_PASSWORD,
        "api_secret": DEMO_PASSWORD,
        "retries": 2,
        "poll": {"interval": 60},
        "commands": {"poll_interval": 1, "timeout": 60, "refresh_delay": 0},
        "vehicles": [
            {"vin": car.vin, "name": name, "allow_unlock": True} for car, name in zip(cars, DEMO_NAMES, strict=True)
        ],
    }
    return DemoPart(
        account=account,
        names=list(DEMO_NAMES),
        lines=[f"simulator: {simulator.url} ({len(cars)} demo cars: {', '.join(DEMO_NAMES)})"],
        hints=[f"lock a car:  mosquitto_pub -h {host} -p {port} -t {base_topic}/x1/lock/set -m LOCK"],
        stop=simulator.stop,
    )
