"""``mqttbridge purge`` and the demo's clean-up, against a private mosquitto: what stays and what goes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mqttbridge.cli import main
from mqttbridge.config import HomeAssistantConfig
from mqttbridge.discovery import DiscoveredVehicle, bridge_discovery, vehicle_discovery
from mqttbridge.model import DriveTrain, VehicleInfo
from mqttbridge.purge import points_at

from .mqtt_helpers import ROOT, Observer, free_port, retained_now

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


def test_purge_needs_broker_and_base_topic(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["purge", "--broker", "127.0.0.1:1883"])
    assert exit_info.value.code == 2
    assert "--base-topic" in capsys.readouterr().err


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
    temp = tmp_path / "tmp"
    temp.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    env.update(TMPDIR=str(temp), PYTHONUNBUFFERED="1")
    observer = Observer(broker.port, (f"{base}/#", "homeassistant/#"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mqttbridge",
            "demo",
            "--broker",
            f"127.0.0.1:{broker.port}",
            "--base-topic",
            base,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
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
