"""BMW CarData's share of ``mqttbridge demo --provider bmw_cardata``: its simulator with one car, and the account
bridging it.

Here because each provider owns its demo (``ProviderSpec.demo``). Not in plain ``mqttbridge demo``
(``demo_by_default=False``): as with BMW, the car appears only once the user approved the device-code login,
which the simulator's verification page does from a browser. The simulator's stream runs on a private
``mosquitto`` when one is installed; without it the account reads by REST only (``stream.enabled: false``),
so the demo never reaches for BMW's own stream server.
"""

from __future__ import annotations

import logging

from mqttbridge.providers import DemoPart
from mqttbridge.simulator.cardata import CarDataSimulator, StreamError

log = logging.getLogger(__name__)

#: the demo's account and its car's topic name
ACCOUNT = "cardata"
CAR = "i4"
#: the simulator takes any client id (BMW's is a UUID made in its portal; masked in the logs like one)
CLIENT_ID = "de70de70-0000-4000-8000-00000000ca4d"
#: ``poll.interval``: the schema's minimum. The account's budget (50 calls a day, the simulator's quota, reset at
#: 00:00 UTC) stretches it so that the day's reads last until the reset: in practice a read every quarter of an
#: hour or so, more often just before midnight UTC, never a refused call. A refresh reads at once.
POLL_INTERVAL = 60
#: a key the hint's stream message changes (the car's state of charge, CONTRACT section 9)
SOC = "vehicle.drivetrain.batteryManagement.header"


def demo_part(base_topic: str, host: str, port: int) -> DemoPart:
    """The CarData simulator with one car, running (with its stream when it can), and the account bridging it."""
    simulator, stream_off = _simulator()
    try:
        (vin,) = simulator.vins
        account = simulator.account(
            ACCOUNT, CLIENT_ID, poll={"interval": POLL_INTERVAL}, vehicles=[{"vin": vin, "name": CAR}]
        )
        if stream_off is not None:
            account["stream"] = {"enabled": False}
        car = f"{base_topic}/{CAR}"
        refresh = f"mosquitto_pub -h {host} -p {port} -t {car}/refresh/set -m PRESS"
        lines = [f"CarData simulator: {simulator.url} (1 car: {CAR}, a BMW {simulator.simulation.cars[vin].model})"]
        if stream_off is None:
            lines[0] += f", its stream on mqtt://{simulator.host}:{simulator.stream_port}"
        else:
            lines.append(f"CarData stream off ({stream_off}): REST only, a refresh reads the car: {refresh}")
        hints = [
            f"CarData: {car} appears once you approve its login. The code and the link are on",
            f"  {base_topic}/bridge/accounts/{ACCOUNT}/login (open its verification_uri_complete in a browser)"
            f' and in Home Assistant\'s "{ACCOUNT} login" sensor',
        ]
        if stream_off is None:
            message = f'{{"data": {{"{SOC}": {{"value": 55, "unit": "%"}}}}}}'
            hints.append(f"a stream message:  curl -X POST {simulator.url}/_sim/cardata/{vin}/stream -d '{message}'")
        return DemoPart(account=account, names=[CAR], lines=lines, hints=hints, stop=simulator.stop)
    except BaseException:
        simulator.stop()
        raise


def _simulator() -> tuple[CarDataSimulator, str | None]:
    """The simulator started with its stream, or without it and why (no mosquitto or no dynamic-security
    plug-in: the simulator looks for ``mosquitto`` on PATH, then in /usr/sbin and /usr/local/sbin)."""
    try:
        return _started(CarDataSimulator(vehicles=1, fixtures=False)), None
    except StreamError as exc:
        log.info("the CarData demo runs without its stream: %s", exc)
        why = str(exc)
    return _started(CarDataSimulator(vehicles=1, stream=False, fixtures=False)), why


def _started(simulator: CarDataSimulator) -> CarDataSimulator:
    try:
        return simulator.start()
    except BaseException:  # its HTTP socket, its mosquitto and its folder go too
        simulator.stop()
        raise
