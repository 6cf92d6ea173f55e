"""``mqttbridge demo`` gathering the providers' demo parts (``ProviderSpec.demo``): the default, ``--provider``,
a part that fails to start (it must leave nothing running and no folder behind), and BMW CarData's part with and
without its stream.

In-process and without the bridge's broker (``check_broker`` and the logging set-up are stubbed): the demo as a
process, against a real mosquitto, is tested in ``test_integration``, ``test_purge`` and ``test_demo_cardata``.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mqttbridge import demo, providers
from mqttbridge.backends.bmw_cardata import demo as cardata_demo
from mqttbridge.backends.bmw_cardata.backend import CarDataBackend
from mqttbridge.backends.bmw_cardata.fields import CONTAINER_KEYS
from mqttbridge.backends.bmw_legacy.demo import DEMO_NAMES
from mqttbridge.cli import main
from mqttbridge.config import parse_config
from mqttbridge.simulator import SimulatorServer
from mqttbridge.simulator.cardata import CarDataSimulator, StreamError
from mqttbridge.simulator.cardata import simulator as cardata_simulator
from mqttbridge.simulator.cardata.cars import build_cars, load_catalogue
from mqttbridge.statestore import StateStore


@pytest.fixture
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temp folder the demo makes its folders in (empty after a failed start), with no broker check."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(folder))
    monkeypatch.setattr(demo, "check_broker", lambda _host, _port: None)
    monkeypatch.setattr(demo, "setup_logging", lambda _level: None)  # keeps pytest's log capture
    return folder


@pytest.fixture
def legacy_simulators(monkeypatch: pytest.MonkeyPatch) -> list[SimulatorServer]:
    """Every legacy simulator the demo starts."""
    started: list[SimulatorServer] = []
    real_start = SimulatorServer.start

    def start(self: SimulatorServer) -> None:
        started.append(self)
        real_start(self)

    monkeypatch.setattr(SimulatorServer, "start", start)
    return started


def refuses(url: str) -> bool:
    where = urlsplit(url)
    try:
        socket.create_connection((where.hostname, where.port), timeout=2).close()
    except OSError:
        return True
    return False


def stop_unstarted(bridge) -> None:
    """What ``finish_demo`` and the bridge's stop do for a bridge that never started."""
    for close in bridge.closers:
        close()
    shutil.rmtree(bridge.config.state_dir, ignore_errors=True)


def test_plain_demo_is_the_four_legacy_cars_as_before(temp: Path, legacy_simulators) -> None:
    assert [spec.name for spec in demo.chosen_parts()] == ["bmw_legacy"]
    bridge, lines = demo.demo_bridge("127.0.0.1", 1883, "car")
    try:
        (account,) = bridge.config.accounts
        assert (account.name, account.provider) == ("demo", "bmw_legacy")
        assert [v.name for v in account.vehicles] == list(DEMO_NAMES) == ["i3", "i3_rex", "530e", "x1"]
        (sim,) = legacy_simulators
        assert lines == [
            f"simulator: {sim.url} (4 demo cars: i3, i3_rex, 530e, x1)",
            "bridging them to 127.0.0.1:1883 under car/; watch it with:",
            "  mosquitto_sub -h 127.0.0.1 -p 1883 -v -t 'car/#'",
            "lock a car:  mosquitto_pub -h 127.0.0.1 -p 1883 -t car/x1/lock/set -m LOCK",
            "Ctrl-C stops it and deletes the retained topics it published (demo --keep leaves them).",
        ]
        assert bridge.config.mqtt.client_id == "mqttbridge-demo-1883"
    finally:
        stop_unstarted(bridge)
    assert refuses(sim.url)
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize("name", ["nope", "hyundai_kia"])
def test_a_provider_without_a_demo_is_a_usage_error(name: str, capsys, temp: Path) -> None:
    with_demo = sorted(n for n, spec in providers.available().items() if spec.demo)
    assert "bmw_legacy" in with_demo and "hyundai_kia" not in with_demo

    assert main(["demo", "--provider", "bmw_legacy", "--provider", name, "--broker", "127.0.0.1:1"]) == 2

    err = capsys.readouterr().err
    assert f"no demo for {name}; providers with a demo: {', '.join(with_demo)}" in err
    assert "Traceback" not in err
    assert list(temp.iterdir()) == []


def broken_part(base_topic: str, host: str, port: int) -> providers.DemoPart:
    raise RuntimeError("this part cannot start")


def test_a_part_that_fails_stops_the_parts_started_before_it(
    temp: Path, legacy_simulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = providers.available()
    broken = dataclasses.replace(installed["bmw_legacy"], name="broken", demo=f"{__name__}:broken_part")
    monkeypatch.setattr(providers, "available", lambda: {**installed, "broken": broken})

    with pytest.raises(RuntimeError, match="cannot start"):
        demo.demo_bridge("127.0.0.1", 1883, "car", provider_names=["bmw_legacy", "broken"])

    (sim,) = legacy_simulators
    assert refuses(sim.url)
    assert list(temp.iterdir()) == []


def test_two_parts_naming_the_same_car_are_refused_and_stopped(
    temp: Path, legacy_simulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = providers.available()
    again = dataclasses.replace(installed["bmw_legacy"], name="again")
    monkeypatch.setattr(providers, "available", lambda: {**installed, "again": again})

    with pytest.raises(demo.MqttBridgeError, match="both name a car 530e, i3, i3_rex, x1"):
        demo.demo_bridge("127.0.0.1", 1883, "car", provider_names=["bmw_legacy", "again"])

    assert len(legacy_simulators) == 2 and all(refuses(sim.url) for sim in legacy_simulators)
    assert list(temp.iterdir()) == []


# --- BMW CarData's part ------------------------------------------------------------------------------------


def test_the_cardata_simulator_without_shared_serves_the_bridges_container() -> None:
    """A user's install has no ../shared: the demo's car and every key the bridge's container asks for are built in
    (the simulator refuses a container naming a key it does not know, as BMW does)."""
    (car,) = build_cars(1, None)
    assert (car.vin, car.model) == ("WBY71AW000SIM0001", "i4 eDrive40")
    catalogue = load_catalogue(None)
    assert [key for key in CONTAINER_KEYS if not catalogue.knows(key)] == []


@pytest.mark.skipif(not shutil.which("mosquitto") and not Path("/usr/sbin/mosquitto").is_file(), reason="no mosquitto")
def test_the_cardata_part_with_its_stream(temp: Path) -> None:
    part = cardata_demo.demo_part("car", "127.0.0.1", 1883)
    try:
        account = part.account
        assert (account["name"], account["provider"], account["client_id"]) == (
            "cardata",
            "bmw_cardata",
            cardata_demo.CLIENT_ID,
        )
        assert account["vehicles"] == [{"vin": "WBY71AW000SIM0001", "name": "i4"}] and part.names == ["i4"]
        assert account["stream_host"] == "127.0.0.1" and "stream" not in account
        assert account["poll"] == {"interval": 60}
        config = parse_config({"state_dir": str(temp / "state"), "accounts": [account]}, env={}, base_dir=temp)
        assert config.accounts[0].stream.enabled
        assert "its stream on mqtt://127.0.0.1:" in part.lines[0]
        said = "\n".join(part.hints)
        assert "car/i4 appears once you approve its login" in said
        assert "car/bridge/accounts/cardata/login" in said and '"cardata login" sensor' in said
        assert "verification_uri_complete" in said and "/_sim/cardata/WBY71AW000SIM0001/stream" in said
    finally:
        part.stop()
        shutil.rmtree(temp / "state", ignore_errors=True)
    assert refuses(account["auth_url"]) and refuses(f"http://127.0.0.1:{account['stream_port']}")
    assert list(temp.iterdir()) == []


def test_without_mosquitto_the_cardata_part_reads_by_rest_only(temp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_mosquitto(*_args, **_kwargs):
        raise StreamError("the stream needs a mosquitto broker (2.0 or newer): install mosquitto")

    monkeypatch.setattr(cardata_simulator, "Broker", no_mosquitto)
    part = cardata_demo.demo_part("car", "127.0.0.1", 1883)
    try:
        account = part.account
        # never BMW's own stream server: no stream at all
        assert account["stream"] == {"enabled": False} and "stream_host" not in account
        config = parse_config({"state_dir": str(temp / "state"), "accounts": [account]}, env={}, base_dir=temp)
        assert config.accounts[0].stream.enabled is False
        assert part.lines[1] == (
            "CarData stream off (the stream needs a mosquitto broker (2.0 or newer): install mosquitto): REST only, "
            "a refresh reads the car: mosquitto_pub -h 127.0.0.1 -p 1883 -t car/i4/refresh/set -m PRESS"
        )
        assert not any("/stream -d" in hint for hint in part.hints)

        backend = CarDataBackend(config.accounts[0], StateStore(temp / "state"))
        backend.start(sink=None)  # type: ignore[arg-type]  # a stream would need a sink; there is none
        assert backend.stream is None and backend.stream_state is None
        backend.close()
    finally:
        part.stop()
        shutil.rmtree(temp / "state", ignore_errors=True)
    assert refuses(account["auth_url"])
    assert list(temp.iterdir()) == []  # the simulator that could not have its stream left no folder either


def test_a_cardata_part_that_fails_to_start_leaves_nothing_running(
    temp: Path, legacy_simulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CarData simulator dies in its start, after its HTTP listener and its mosquitto (when there is one) run:
    it, its mosquitto and its folder go, and so does the legacy part started before it."""
    started: list[CarDataSimulator] = []
    mosquittos: list[subprocess.Popen[bytes]] = []
    real_start = CarDataSimulator.start

    def start(self: CarDataSimulator) -> CarDataSimulator:
        started.append(self)
        real_start(self)
        if self.broker is not None and self.broker._proc is not None:
            mosquittos.append(self.broker._proc)
        raise RuntimeError("the CarData simulator failed")

    monkeypatch.setattr(CarDataSimulator, "start", start)

    with pytest.raises(RuntimeError, match="CarData simulator failed"):
        demo.demo_bridge("127.0.0.1", 1883, "car", provider_names=["bmw_legacy", "bmw_cardata"])

    (legacy,) = legacy_simulators
    (cardata,) = started
    assert refuses(legacy.url) and refuses(cardata.url)
    if cardata.broker is not None:  # with mosquitto installed (as in CI): its stream had started
        assert len(mosquittos) == 1 and mosquittos[0].poll() is not None
        assert refuses(f"http://127.0.0.1:{cardata.broker.port}")
    assert list(temp.iterdir()) == []
