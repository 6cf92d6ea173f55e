"""``mqttbridge purge`` and the demo's clean-up, against a private mosquitto: what stays and what goes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mqttbridge.cli import main
from mqttbridge.config import HomeAssistantConfig
from mqttbridge.discovery import DiscoveredVehicle, bridge_discovery, vehicle_discovery
from mqttbridge.model import DriveTrain, VehicleInfo
from mqttbridge.purge import points_at

from .conftest import account_data
from .mqtt_helpers import ROOT, Observer, demo_process, free_port, retained_now
from .tls_helpers import Broker, Pki, password_broker

DEMO_NAMES = ("i3", "i3_rex", "530e", "x1")
ZIGBEE_CONFIG = (
    "homeassistant/sensor/0x00158d0001a2b3c4/temperature/config",
    json.dumps(
        {
            "name": "Temperature",
            "state_topic": "zigbee2mqtt/kitchen",
            "availability": [{"topic": "zigbee2mqtt/bridge/state"}],
            "device": {"identifiers": ["zigbee2mqtt_0x00158d0001a2b3c4"], "name": "car"},
        }
    ),
)


def _ours(base: str, vin: str, ha: HomeAssistantConfig) -> dict[str, str]:
    """The discovery configs a bridge under ``base`` makes for one car, and its own device."""
    info = VehicleInfo(
        vin=vin, model="i3", brand="BMW", drive_train=DriveTrain.BEV, commands={"lock": frozenset({"LOCK", "UNLOCK"})}
    )
    car = DiscoveredVehicle(
        vin=vin,
        name="i3",
        root=f"{base}/i3",
        info=info,
        fields={"battery_level": 80},
        has_location=True,
        unlock_code=False,
    )
    pairs = vehicle_discovery(car, base_topic=base, ha=ha, version="1.0")
    pairs += bridge_discovery(base_topic=base, ha=ha, version="1.0")
    return dict(pairs)


def _car_topics(base: str) -> dict[str, str]:
    topics = {f"{base}/bridge/state": "offline", f"{base}/bridge/info": "{}"}
    for name in DEMO_NAMES:
        topics.update(
            {
                f"{base}/{name}/state": "{}",
                f"{base}/{name}/battery_level": "80",
                f"{base}/{name}/lock": "LOCKED",
                f"{base}/{name}/lock/status": "EXECUTED",
            }
        )
    return topics


def _seed(port: int, topics: dict[str, str]) -> None:
    observer = Observer(port, ("seed/none",))
    try:
        for topic, payload in topics.items():
            observer.publish(topic, payload, retain=True)
    finally:
        observer.close()


def _pointing_at(configs: dict[str, bytes], base: str) -> list[str]:
    return sorted(topic for topic, payload in configs.items() if points_at(payload, base))


# --- which discovery configs are ours -------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "ours"),
    [
        ({"state_topic": "car/i3/battery_level"}, True),
        ({"stat_t": "car/i3/lock", "cmd_t": "car/i3/lock/set"}, True),
        ({"availability": [{"topic": "car/bridge/state"}], "state_topic": "elsewhere/x"}, True),
        ({"avty": [{"t": "car/bridge/state"}]}, True),
        ({"availability_topic": "car"}, True),
        ({"~": "car/i3", "stat_t": "~/state"}, True),
        ({"~": "garage", "stat_t": "~/car/state"}, False),  # expands to garage/car/state
        ({"cmps": {"x": {"p": "sensor", "stat_t": "car/x1/odometer"}}}, True),
        ({"components": {"x": {"platform": "sensor", "state_topic": "carport/x1/odometer"}}}, False),
        ({"state_topic": "zigbee2mqtt/kitchen", "name": "car", "device": {"name": "car/i3"}}, False),
        ({"state_topic": "cars/i3/state"}, False),
        ("not a dict", False),
    ],
)
def test_a_config_is_ours_when_a_topic_in_it_lies_under_the_base(payload, ours: bool) -> None:
    assert points_at(json.dumps(payload), "car") is ours


def test_what_our_discovery_makes_points_at_its_base_only() -> None:
    for mode in ("device", "component"):
        configs = _ours("car", "WBY1Z21040V000001", HomeAssistantConfig(discovery=mode))
        assert configs and all(points_at(payload, "car") for payload in configs.values())
        assert not any(points_at(payload, "ca") or points_at(payload, "car/i3x") for payload in configs.values())
    assert not points_at(b"\xff\xfe", "car")


# --- mqttbridge purge ------------------------------------------------------------------------------


def test_purge_deletes_the_base_and_its_discovery_and_nothing_else(broker, capsys) -> None:
    ours = {
        **_ours("car", "WBY1Z21040V000001", HomeAssistantConfig(discovery="device")),
        **_ours("car", "WBY1Z21040V000002", HomeAssistantConfig(discovery="component")),
    }
    other_base = _ours("carport", "WBY1Z21040V000003", HomeAssistantConfig(discovery="device"))
    kept = {
        **_car_topics("carport"),
        **other_base,
        ZIGBEE_CONFIG[0]: ZIGBEE_CONFIG[1],
        "homeassistant/status": "online",
        "zigbee2mqtt/kitchen": '{"temperature": 21}',
    }
    _seed(broker.port, {**_car_topics("car"), **ours, **kept})
    before = retained_now(broker.port, "#")
    assert set(_car_topics("car")) | set(ours) <= set(before)

    assert main(["purge", "--broker", f"127.0.0.1:{broker.port}", "--base-topic", "car"]) == 0

    out = capsys.readouterr().out
    assert (
        f"deleted {len(_car_topics('car'))} retained topics under car/ and {len(ours)} discovery configs "
        "under homeassistant/" in out
    )
    after = retained_now(broker.port, "#")
    assert after == {topic: payload.encode() for topic, payload in kept.items()}


@pytest.mark.slow
def test_purge_with_another_prefix_and_a_nested_base(broker, capsys) -> None:
    ours = _ours("home/car", "WBY1Z21040V000001", HomeAssistantConfig(discovery="component", prefix="ha"))
    foreign = _ours("home/car", "WBY1Z21040V000002", HomeAssistantConfig(discovery="device"))  # not under ha/
    _seed(broker.port, {**_car_topics("home/car"), **ours, **foreign, "home/light": "ON"})

    assert (
        main(["purge", "--broker", f"127.0.0.1:{broker.port}", "--base-topic", "home/car", "--discovery-prefix", "ha"])
        == 0
    )

    assert f"and {len(ours)} discovery configs under ha/" in capsys.readouterr().out
    after = retained_now(broker.port, "#")
    assert set(after) == {*foreign, "home/light"}


@pytest.mark.slow
def test_purge_refuses_while_a_bridge_is_online_unless_forced(broker, capsys) -> None:
    topics = {**_car_topics("car"), "car/bridge/state": "online"}
    _seed(broker.port, topics)
    broker_arg = f"127.0.0.1:{broker.port}"

    assert main(["purge", "--broker", broker_arg, "--base-topic", "car"]) == 1

    err = capsys.readouterr().err
    assert "a bridge is running under car/" in err and "stop it first" in err and "--force" in err
    assert set(retained_now(broker.port, "car/#")) == set(topics)

    assert main(["purge", "--broker", broker_arg, "--base-topic", "car", "--force"]) == 0
    assert f"deleted {len(topics)} retained topics under car/" in capsys.readouterr().out
    assert retained_now(broker.port, "car/#") == {}


def test_purge_of_an_empty_broker_deletes_nothing(broker, capsys) -> None:
    assert main(["purge", "--broker", f"127.0.0.1:{broker.port}", "--base-topic", "car"]) == 0
    assert (
        "deleted 0 retained topics under car/ and 0 discovery configs under homeassistant/" in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--broker", "127.0.0.1:notaport", "--base-topic", "car"], "--broker must be HOST:PORT"),
        (["--broker", "127.0.0.1:0", "--base-topic", "car"], "--broker must be HOST:PORT"),
        (["--broker", ":1883", "--base-topic", "car"], "--broker must be HOST:PORT"),
        (["--broker", "127.0.0.1:1883", "--base-topic", "car/#"], "--base-topic 'car/#': must not contain"),
        (["--broker", "127.0.0.1:1883", "--base-topic", "car/+/x"], "--base-topic 'car/+/x': must not contain"),
        (["--broker", "127.0.0.1:1883", "--base-topic", "car/"], "--base-topic 'car/': must not have an empty"),
        (["--broker", "127.0.0.1:1883", "--base-topic", "car", "--discovery-prefix", "#"], "--discovery-prefix '#'"),
    ],
)
def test_purge_bad_usage_is_exit_2(args: list[str], complaint: str, capsys) -> None:
    assert main(["purge", *args]) == 2
    assert complaint in capsys.readouterr().err


def test_purge_needs_broker_and_base_topic_or_a_configuration(capsys) -> None:
    assert main(["purge", "--broker", "127.0.0.1:1883"]) == 2
    assert capsys.readouterr().err.strip() == (
        "mqttbridge: purge needs --base-topic BASE, or -c with the bridge's configuration file"
    )
    assert main(["purge"]) == 2
    assert "purge needs --broker HOST:PORT and --base-topic BASE, or -c" in capsys.readouterr().err


def test_purge_without_a_broker_is_exit_1_in_one_line() -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "mqttbridge", "purge", "--broker", f"127.0.0.1:{port}", "--base-topic", "car"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"mqttbridge: error: no MQTT broker answers at 127.0.0.1:{port} (Connection refused); check --broker HOST:PORT"
    ]
    assert done.stdout == ""


# --- the demo cleans up after itself ---------------------------------------------------------------


def _run_demo(broker, tmp_path: Path, base: str, *extra: str) -> tuple[int, str, str]:
    """The demo as a user runs it, until its four cars are on the broker; then SIGTERM."""
    observer = Observer(broker.port, (f"{base}/#", "homeassistant/#"))
    proc, temp = demo_process(broker.port, tmp_path, base, *extra)
    try:
        for name in DEMO_NAMES:
            observer.wait_topic(f"{base}/{name}/state")
        observer.wait_topic(f"{base}/bridge/state", "online")
        state = [p.name for p in temp.iterdir()]
        assert len(state) == 1 and state[0].startswith("mqttbridge-demo-"), state  # the demo's state folder
        configs = retained_now(broker.port, "homeassistant/#")
        assert len(_pointing_at(configs, base)) >= len(DEMO_NAMES)  # each car and the bridge announced
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        observer.close()
    assert list(temp.iterdir()) == [], "the demo left its temp folder behind"
    return proc.returncode, out, err


@pytest.mark.slow
def test_demo_removes_only_what_it_published_at_stop(broker, tmp_path: Path) -> None:
    # a real bridge's car under the same base, and another integration's config: not the demo's
    foreign = {"demo1/garage/state": '{"odometer": 1}', ZIGBEE_CONFIG[0]: ZIGBEE_CONFIG[1]}
    _seed(broker.port, foreign)

    code, out, err = _run_demo(broker, tmp_path, "demo1")

    assert code == 0, err
    assert "demo stopped: removed its" in out and "retained topics under demo1/" in out
    assert "removed its state folder" in out
    assert retained_now(broker.port, "demo1/#") == {"demo1/garage/state": foreign["demo1/garage/state"].encode()}
    configs = retained_now(broker.port, "homeassistant/#")
    assert configs == {ZIGBEE_CONFIG[0]: ZIGBEE_CONFIG[1].encode()}
    assert "Traceback" not in err


@pytest.mark.slow
def test_demo_keep_leaves_its_topics_and_purge_takes_them(broker, tmp_path: Path, capsys) -> None:
    code, out, err = _run_demo(broker, tmp_path, "demo2", "--keep")

    assert code == 0, err
    assert "demo stopped: kept its" in out and "mqttbridge purge --broker" in out
    left = retained_now(broker.port, "demo2/#")
    assert {f"demo2/{name}/state" for name in DEMO_NAMES} <= set(left)
    assert left["demo2/bridge/state"] == b"offline"
    announced = _pointing_at(retained_now(broker.port, "homeassistant/#"), "demo2")
    assert announced

    assert main(["purge", "--broker", f"127.0.0.1:{broker.port}", "--base-topic", "demo2"]) == 0

    assert (
        f"deleted {len(left)} retained topics under demo2/ and {len(announced)} discovery configs"
        in capsys.readouterr().out
    )
    assert retained_now(broker.port, "demo2/#") == {}
    assert _pointing_at(retained_now(broker.port, "homeassistant/#"), "demo2") == []


# --- purge -c: the bridge's own broker settings -----------------------------------------------------

USER, PASSWORD = "bridge", "purge-pass-8c41e"


@pytest.fixture
def locked(tmp_path: Path):
    """A broker whose ``secure_port`` takes only USER with PASSWORD; its plain ``port`` seeds and checks."""
    workdir = tmp_path / "locked"
    workdir.mkdir()
    broker = password_broker(workdir, {USER: PASSWORD})
    broker.start()
    yield broker
    broker.stop()


def _config(tmp_path: Path, mqtt: dict, **top) -> Path:
    """A bridge's configuration file with this ``mqtt`` section (and one account purge never calls)."""
    path = tmp_path / "config.yaml"
    data = {"mqtt": mqtt, "state_dir": str(tmp_path / "state"), "accounts": [account_data("http://127.0.0.1:9")]}
    path.write_text(yaml.safe_dump({**data, **top}))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_purge_with_the_bridges_configuration_logs_in(
    locked: Broker, tmp_path: Path, capsys, monkeypatch, protocol: str
) -> None:
    """The broker, the user and the ${ENV} password, the protocol, the base topic and the prefix: all the config's."""
    ha = HomeAssistantConfig(discovery="component", prefix="ha")
    ours = _ours("garage", "WBY1Z21040V000001", ha)
    kept = {**_car_topics("car"), **_ours("car", "WBY1Z21040V000002", ha)}  # another base: not named by -c
    _seed(locked.port, {**_car_topics("garage"), **ours, **kept})
    monkeypatch.setenv("PURGE_TEST_PASSWORD", PASSWORD)
    mqtt = {"host": "127.0.0.1", "port": locked.secure_port, "username": USER, "password": "${PURGE_TEST_PASSWORD}"}
    config = _config(tmp_path, {**mqtt, "base_topic": "garage", "protocol": protocol}, homeassistant={"prefix": "ha"})

    assert main(["purge", "-c", str(config)]) == 0

    out, err = capsys.readouterr()
    topics = len(_car_topics("garage"))
    assert out.strip() == f"deleted {topics} retained topics under garage/ and {len(ours)} discovery configs under ha/"
    assert PASSWORD not in out + err
    assert retained_now(locked.port, "#") == {topic: payload.encode() for topic, payload in kept.items()}


def test_purge_over_tls_with_a_password_file(tmp_path: Path, capsys) -> None:
    pki = Pki.create(tmp_path / "pki")
    workdir = tmp_path / "broker"
    workdir.mkdir()
    broker = password_broker(workdir, {USER: PASSWORD}, pki=pki)
    broker.start()
    try:
        _seed(broker.port, _car_topics("car"))
        (tmp_path / "mqtt.pass").write_text(f"{PASSWORD}\n")
        mqtt = {"host": "localhost", "port": broker.secure_port, "username": USER}  # the certificate names localhost
        mqtt |= {"password_file": str(tmp_path / "mqtt.pass"), "tls": {"ca_certs": str(pki.ca.cert)}}

        assert main(["purge", "-c", str(_config(tmp_path, mqtt))]) == 0

        assert f"deleted {len(_car_topics('car'))} retained topics under car/" in capsys.readouterr().out
        assert retained_now(broker.port, "#") == {}
    finally:
        broker.stop()


def test_purge_with_a_wrong_password_says_so_and_deletes_nothing(locked: Broker, tmp_path: Path, capsys) -> None:
    _seed(locked.port, _car_topics("car"))
    wrong = "not-the-pass-31f0"
    config = _config(tmp_path, {"host": "127.0.0.1", "port": locked.secure_port, "username": USER, "password": wrong})

    assert main(["purge", "-c", str(config)]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines() == [
        f"mqttbridge: error: the MQTT broker at 127.0.0.1:{locked.secure_port} refused the credentials "
        "(Not authorized); check mqtt.username and mqtt.password in the configuration"
    ]
    assert wrong not in err and PASSWORD not in err
    assert set(retained_now(locked.port, "#")) == set(_car_topics("car"))

    # without -c it connects anonymously, which this broker refuses: the error says where the credentials go
    assert main(["purge", "--broker", f"127.0.0.1:{locked.secure_port}", "--base-topic", "car"]) == 1
    err = capsys.readouterr().err
    assert "refused the connection (Not authorized): it wants a user name and password; give -c" in err
    assert set(retained_now(locked.port, "#")) == set(_car_topics("car"))


def test_purge_with_an_invalid_configuration_reports_its_problems(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path, {"host": "127.0.0.1", "port": 70000, "pasword": PASSWORD})

    assert main(["purge", "-c", str(config), "--broker", "127.0.0.1:1883"]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert lines[0] == f"{config}: invalid configuration"
    assert any(line.startswith("  mqtt.port:") for line in lines), err
    assert any(line.startswith("  mqtt.pasword:") for line in lines), err
    assert PASSWORD not in err


def test_purge_options_override_the_configuration(locked: Broker, tmp_path: Path, capsys) -> None:
    """--broker, --base-topic and --discovery-prefix beat mqtt.host/port, mqtt.base_topic and homeassistant.prefix;
    the credentials still come from the configuration."""
    ha = HomeAssistantConfig(discovery="device")
    ours = _ours("car", "WBY1Z21040V000001", ha)
    kept = {**_car_topics("garage"), **_ours("garage", "WBY1Z21040V000002", ha)}
    _seed(locked.port, {**_car_topics("car"), **ours, **kept})
    mqtt = {"host": "127.0.0.1", "port": free_port(), "username": USER, "password": PASSWORD, "base_topic": "garage"}
    config = _config(tmp_path, mqtt, homeassistant={"prefix": "ha"})  # nothing answers at that port
    broker_arg = f"127.0.0.1:{locked.secure_port}"

    code = main(
        [
            "purge",
            "-c",
            str(config),
            "--broker",
            broker_arg,
            "--base-topic",
            "car",
            "--discovery-prefix",
            "homeassistant",
        ]
    )

    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"deleted {len(_car_topics('car'))} retained topics under car/ and {len(ours)} discovery configs" in out
    assert retained_now(locked.port, "#") == {topic: payload.encode() for topic, payload in kept.items()}
