"""The Home Assistant add-on (CONTRACT §11): its files against the add-on linter's schemas, and
``mqttbridge addon`` against a fake Supervisor and a broker that takes only the Supervisor's credentials."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from mqttbridge import __version__
from mqttbridge.addon import ACCOUNT_OPTIONS, MQTT_OPTIONS, TOP_OPTIONS, VEHICLE_OPTIONS, translate, validate
from mqttbridge.cli import main
from mqttbridge.config import parse_config
from mqttbridge.errors import ConfigError
from tests.mqtt_helpers import WAIT, Mosquitto, Observer, free_port

ROOT = Path(__file__).resolve().parents[1]
ADDON = ROOT / "addon"
TOKEN = "test-supervisor-token-5f1c9a0b7e2d4c38"
BROKER_USER = "addons"
BROKER_PASSWORD = "Broker0App0Password0For0Addons0abcdefghijklmnopqrstuvwxyz0123456"
CREDENTIALS = ("password", "pin", "api_key", "api_secret")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def linter(fixtures_dir: Path) -> dict[str, Any]:
    folder = fixtures_dir / "ha_addon" / "linter"
    return {name: json.loads((folder / f"{name}.schema.json").read_text()) for name in ("config", "build")}


def _validator(schema: dict[str, Any]) -> Any:
    jsonschema = pytest.importorskip("jsonschema")  # the test extra brings it (pyproject.toml)
    return jsonschema.Draft7Validator(schema)  # as the linter runs it: no format checker


def _at_default(data: dict[str, Any], schema: dict[str, Any], path: str = "") -> list[str]:
    """The linter's own rule on top of the schema: a key set to its default must be left out."""
    found = []
    properties = schema.get("properties", {})
    for key, value in data.items():
        sub = properties.get(key, {})
        if "default" in sub and value == sub["default"]:
            found.append(f"{path}{key}")
        if isinstance(value, dict) and "properties" in sub:
            found += _at_default(value, sub, f"{path}{key}.")
    return found


# --- the files -------------------------------------------------------------------------------------


def test_config_yaml_passes_the_linter_schema_with_no_key_at_its_default(linter):
    config = _yaml(ADDON / "config.yaml")
    errors = [f"{list(e.path)}: {e.message}" for e in _validator(linter["config"]).iter_errors(config)]
    assert errors == []
    assert _at_default(config, linter["config"]) == []
    # the contract's own demands
    assert config["arch"] == ["aarch64", "amd64"]
    assert config["services"] == ["mqtt:need"]
    for key in ("image", "privileged", "host_network", "full_access", "docker_api", "host_pid", "watchdog"):
        assert key not in config, key


def test_the_linter_rejects_what_the_contract_forbids(linter):
    """The check above can fail: an unknown arch, an unknown key, a bad service and a default are caught."""
    config = _yaml(ADDON / "config.yaml")
    validator = _validator(linter["config"])
    for bad in ({"arch": ["riscv64"]}, {"services": ["mqtt:needs"]}, {"imaeg": "x"}):
        assert list(validator.iter_errors({**config, **bad})), bad
    assert _at_default({**config, "init": True, "boot": "auto"}, linter["config"]) == ["init", "boot"]


def test_the_dockerfile_base_image_passes_the_linter_build_schema(linter):
    """No build.yaml (deprecated since Supervisor 2026.04): the Dockerfile names the base image, and that
    image, written as a build.yaml would name it, is one the linter accepts."""
    assert not [p for p in ADDON.iterdir() if p.stem == "build"]
    image = _dockerfile()["BUILD_FROM"]
    validator = _validator(linter["build"])
    assert list(validator.iter_errors({"build_from": {"aarch64": image, "amd64": image}})) == []
    for bad in ({"riscv64": image}, {"amd64": "an image?"}, "base-python:3.13"):
        assert list(validator.iter_errors({"build_from": bad})), bad


def test_the_addon_version_is_the_package_version():
    version = _yaml(ADDON / "config.yaml")["version"]
    assert isinstance(version, str)
    assert re.fullmatch(rf"{re.escape(__version__)}(-[0-9]+)?", version), (version, __version__)
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] == __version__


def test_options_and_schema_are_the_contracts():
    config = _yaml(ADDON / "config.yaml")
    options, schema = config["options"], config["schema"]
    assert tuple(schema) == TOP_OPTIONS and set(options) == set(TOP_OPTIONS)
    assert options["mqtt"] == {} and options["accounts"] == [] and options["vehicles"] == []
    assert tuple(schema["mqtt"]) == MQTT_OPTIONS
    assert tuple(schema["accounts"][0]) == ACCOUNT_OPTIONS
    assert tuple(schema["vehicles"][0]) == VEHICLE_OPTIONS
    assert schema["mqtt"]["password"] == "password?"
    for key in CREDENTIALS:
        assert schema["accounts"][0][key] == "password?", key
    assert schema["vehicles"][0]["unlock_code"] == "password?"
    # what the form offers, the validator accepts: every provider, every log level, every discovery style
    providers = re.fullmatch(r"list\((.*)\)", schema["accounts"][0]["provider"]).group(1).split("|")
    from mqttbridge.config import PROVIDERS

    assert sorted(providers) == sorted(PROVIDERS)


def test_translations_name_every_option():
    config = _yaml(ADDON / "config.yaml")
    texts = _yaml(ADDON / "translations" / "en.yaml")["configuration"]
    assert set(texts) == set(config["schema"])
    for option, entry in texts.items():
        assert entry["name"] and entry["description"], option
        sub = config["schema"][option]
        sub = sub[0] if isinstance(sub, list) else sub
        if isinstance(sub, dict):
            assert set(entry["fields"]) == set(sub), option
            assert all(f["name"] and f["description"] for f in entry["fields"].values()), option


def _dockerfile() -> dict[str, Any]:
    text = (ADDON / "Dockerfile").read_text()
    lines = [line for line in text.replace("\\\n", " ").splitlines() if line.strip() and not line.startswith("#")]
    instructions = [(line.split()[0].upper(), line.split(None, 1)[1]) for line in lines]
    args = dict(a.split("=", 1) if "=" in a else (a, None) for kind, a in instructions if kind == "ARG")
    return {"instructions": instructions, "text": text, **args}


def test_dockerfile_builds_from_the_python_base_and_installs_the_released_version():
    docker = _dockerfile()
    instructions = docker["instructions"]
    assert instructions[0][0] == "ARG" and instructions[0][1].startswith("BUILD_FROM=")
    assert instructions[1] == ("FROM", "${BUILD_FROM}")
    assert re.fullmatch(r"ghcr\.io/home-assistant/base-python:3\.1[2-9]-alpine3\.[0-9]+", docker["BUILD_FROM"])
    assert "BUILD_VERSION" in docker
    # the build context is addon/ alone: nothing is copied in, the package comes by its version
    assert not [i for i in instructions if i[0] in ("COPY", "ADD")]
    run = " ".join(body for kind, body in instructions if kind == "RUN")
    install = re.search(r'pip install "mqttbridge\[hyundai\] @ \$\{MQTTBRIDGE_URL\}/(\S+)"', run)
    assert install and "${BUILD_VERSION" in install.group(1)
    repository = _yaml(ROOT / "repository.yaml")
    assert docker["MQTTBRIDGE_URL"].startswith(repository["url"] + "/")
    assert dict(instructions)["ENTRYPOINT"] == '["mqttbridge", "addon"]'


def test_repository_yaml_and_no_other_addon_config_in_the_repository():
    repository = _yaml(ROOT / "repository.yaml")
    assert set(repository) == {"name", "url", "maintainer"}
    assert repository["url"].startswith("https://")
    # the Supervisor reads every config.{yaml,yml,json} outside hidden folders and rootfs as an add-on; the
    # files a clone has (tracked, or new and not ignored: a local venv is no part of it)
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    found = [
        name
        for name in listed.stdout.splitlines()
        if Path(name).name in ("config.yaml", "config.yml", "config.json")
        and not any(part.startswith(".") or part == "rootfs" for part in Path(name).parts[:-1])
    ]
    assert found == ["addon/config.yaml"]


# --- options -> configuration ----------------------------------------------------------------------


def _kia(**overrides: Any) -> dict[str, Any]:
    account = {
        "name": "kia",
        "provider": "hyundai_kia",
        "brand": "kia",
        "region": "europe",
        "username": "me@example.com",
        "password": "pa$${HOME}word-1",
    }
    return {**account, **overrides}


def test_options_become_the_configuration(tmp_path):
    options = {
        "log_level": "debug",
        "base_topic": "cars",
        "discovery": "component",
        "mqtt": {"host": "broker.lan", "port": 1884, "username": "u", "password": "broker-pw-1"},
        "accounts": [_kia(poll_interval=600), {"name": "bmw", "provider": "bmw_cardata", "client_id": "cid-0123"}],
        "vehicles": [{"account": "bmw", "vin": "WBA00000000000001", "name": "i4", "allow_unlock": False}],
    }
    config = validate(translate(options, tmp_path))
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.username, config.mqtt.password) == (
        "broker.lan",
        1884,
        "u",
        "broker-pw-1",
    )
    assert config.mqtt.base_topic == "cars" and config.homeassistant.discovery == "component"
    assert config.log_level == "DEBUG" and config.state_dir == tmp_path
    kia, bmw = config.accounts
    assert kia.password == "pa$${HOME}word-1"  # typed text is literal, never an environment reference
    assert kia.poll.interval == 600 and bmw.poll.interval == 3600
    assert [(v.vin, v.name) for v in bmw.vehicles] == [("WBA00000000000001", "i4")] and kia.vehicles == ()


def _problems(options: dict[str, Any], tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate(translate(options, tmp_path))
    return caught.value.problems


def test_option_problems_are_told_at_the_options_path(tmp_path):
    options = {
        "accounts": [
            {"name": "bmw", "provider": "bmw_legacy", "username": "me@example.com", "pin": "1234"},
            _kia(brand=None, poll_interval=30),
        ],
        "vehicles": [{"account": "kia", "vin": "KNA0000000000001", "name": "bad name"}, {"account": "x", "vin": "Y"}],
        "colour": "red",
    }
    problems = _problems(options, tmp_path)
    assert set(problems) == {
        "colour: unknown option (known: log_level, base_topic, discovery, mqtt, accounts, vehicles)",
        "accounts[0].pin: not used by bmw_legacy; leave it empty",
        "accounts[0].password: required for bmw_legacy",
        "accounts[0].api_key: required for bmw_legacy",
        "accounts[0].api_secret: required for bmw_legacy",
        "accounts[1].brand: required for hyundai_kia",
        "accounts[1].poll_interval: must be >= 60 (got 30)",
        "vehicles[0].name: must be 1 to 64 letters, digits, '_' or '-' (got 'bad name')",
        "vehicles[1].account: no account named 'x'; accounts: bmw, kia",
    }
    assert len(problems) == len(set(problems))
    assert _problems({}, tmp_path) == ["accounts: must list at least one account"]


def test_an_invalid_options_file_exits_2_with_one_line_per_problem(tmp_path, capsys):
    path = tmp_path / "options.json"
    path.write_text(json.dumps({"accounts": [_kia(password="", region="mars")]}))
    assert main(["addon", "--options", str(path), "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{path}: invalid add-on options"
    assert sorted(err[1:]) == [
        "  accounts[0].password: required for hyundai_kia",
        "  accounts[0].region: must be one of europe, canada, usa, china, australia, india, new_zealand, "
        "brazil, europe_cci (got 'mars')",
    ]
    path.write_text("{not json")
    assert main(["addon", "--options", str(path)]) == 2
    assert "not JSON" in capsys.readouterr().err


# --- the fake Supervisor ---------------------------------------------------------------------------


class FakeSupervisor:
    """``GET /services/mqtt`` as the Supervisor answers it (fixtures/ha_addon/supervisor), on loopback."""

    def __init__(self, fixtures: Path, broker_port: int):
        folder = fixtures / "ha_addon" / "supervisor"
        answer = json.loads((folder / "services_mqtt.v1.json").read_text())
        answer["data"].update(host="127.0.0.1", port=broker_port, password=BROKER_PASSWORD)
        self.answer = answer
        self.forbidden = (folder / "forbidden.txt").read_bytes()
        self.unauthorized = (folder / "unauthorized.txt").read_bytes()
        self.not_enabled = (folder / "services_mqtt.not_enabled.json").read_bytes()
        self.no_access = (folder / "services_mqtt.no_access.json").read_bytes()
        self.mode = "ok"
        self.requests: list[tuple[str, str | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                auth = self.headers.get("Authorization")
                fake.requests.append((self.path, auth))
                if auth is None:
                    self._send(401, fake.unauthorized, "text/plain")
                elif auth != f"Bearer {TOKEN}":
                    self._send(403, fake.forbidden, "text/plain")
                elif self.path != "/services/mqtt":
                    self._send(404, b"404: Not Found", "text/plain")
                elif fake.mode == "not_enabled":
                    self._send(400, fake.not_enabled, "application/json")
                elif fake.mode == "no_access":
                    self._send(403, fake.no_access, "application/json")
                else:
                    body = json.dumps(fake.answer, separators=(",", ":")).encode()
                    self._send(200, body, "application/json")

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def supervisor(fixtures_dir):
    fake = FakeSupervisor(fixtures_dir, broker_port=free_port())
    yield fake
    fake.stop()


def _legacy_options(url: str, **top: Any) -> dict[str, Any]:
    account = {
        "name": "bmw",
        "provider": "bmw_legacy",
        "base_url": url,
        "username": "demo@example.com",
        "password": "legacy-account-password",
        "api_key": "app-key",
        "api_secret": "app-secret-value",
    }
    return {"log_level": "info", "base_topic": "car", "discovery": "device", "mqtt": {}, "accounts": [account], **top}


def _addon(tmp_path: Path, options: dict[str, Any], *extra: str) -> list[str]:
    path = tmp_path / "options.json"
    path.write_text(json.dumps(options))
    return ["addon", "--options", str(path), "--state-dir", str(tmp_path / "data"), *extra]


def test_print_config_takes_the_broker_from_the_supervisor_and_masks_secrets(tmp_path, supervisor, monkeypatch, capsys):
    monkeypatch.setenv("SUPERVISOR_API", supervisor.url)
    monkeypatch.setenv("SUPERVISOR_TOKEN", TOKEN)
    options = _legacy_options("http://127.0.0.1:9", vehicles=[{"account": "bmw", "vin": "WBY1", "unlock_code": "4321"}])
    assert main(_addon(tmp_path, options, "--print-config")) == 0
    out = capsys.readouterr().out
    assert supervisor.requests == [("/services/mqtt", f"Bearer {TOKEN}")]
    for secret in (TOKEN, BROKER_PASSWORD, "legacy-account-password", "app-key", "app-secret-value", "4321"):
        assert secret not in out
    printed = yaml.safe_load(out)
    mqtt = printed["mqtt"]
    port = supervisor.answer["data"]["port"]
    assert (mqtt["host"], mqtt["port"], mqtt["username"], mqtt["password"]) == ("127.0.0.1", port, "addons", "***")
    assert "tls" not in mqtt
    account = printed["accounts"][0]
    assert [account[k] for k in ("password", "api_key", "api_secret")] == ["***"] * 3
    assert account["username"] == "demo@example.com" and account["vehicles"][0]["unlock_code"] == "***"
    assert printed["state_dir"] == str(tmp_path / "data")
    # it is the §2 format: the same validator reads it back
    assert parse_config(printed, env={}, base_dir=tmp_path).mqtt.host == "127.0.0.1"


def test_options_naming_a_broker_do_not_ask_the_supervisor(tmp_path, supervisor, monkeypatch, capsys):
    monkeypatch.setenv("SUPERVISOR_API", supervisor.url)
    monkeypatch.delenv("SUPERVISOR_TOKEN", raising=False)
    options = _legacy_options("http://127.0.0.1:9", mqtt={"host": "mqtt.lan", "password": "own-broker-password"})
    assert main(_addon(tmp_path, options, "--print-config")) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["mqtt"]["host"] == "mqtt.lan" and printed["mqtt"]["password"] == "***"
    assert supervisor.requests == []


@pytest.mark.parametrize(
    ("token", "mode", "expected"),
    [
        ("wrong-token-0123456789abcdef", "ok", "the Supervisor refused the add-on's token (HTTP 403)"),
        (
            TOKEN,
            "not_enabled",
            "the Supervisor has no MQTT service (Service not enabled): install and start the Mosquitto broker app",
        ),
        (TOKEN, "no_access", "services: [mqtt:need]"),
        (None, "ok", "SUPERVISOR_TOKEN is not set"),
    ],
)
def test_no_broker_from_the_supervisor_is_one_line_and_exit_1(
    tmp_path, supervisor, monkeypatch, capsys, token, mode, expected
):
    monkeypatch.setenv("SUPERVISOR_API", supervisor.url)
    monkeypatch.delenv("HASSIO_TOKEN", raising=False)
    if token is None:
        monkeypatch.delenv("SUPERVISOR_TOKEN", raising=False)
    else:
        monkeypatch.setenv("SUPERVISOR_TOKEN", token)
    supervisor.mode = mode
    assert main(_addon(tmp_path, _legacy_options("http://127.0.0.1:9"))) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert captured.out == ""
    if token is not None:
        assert token not in captured.err
        assert supervisor.requests == [("/services/mqtt", f"Bearer {token}")]


def test_an_unreachable_supervisor_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SUPERVISOR_API", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("SUPERVISOR_TOKEN", TOKEN)
    assert main(_addon(tmp_path, _legacy_options("http://127.0.0.1:9"))) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0] and TOKEN not in lines[0], lines


# --- end to end: the bridge comes up on the broker app's credentials --------------------------------


def _anonymous_refused(port: int) -> bool:
    done = threading.Event()
    result: list[bool] = []

    def on_connect(_client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        result.append(reason.is_failure)
        done.set()

    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert done.wait(WAIT), "no CONNACK"
        return result[0]
    finally:
        client.loop_stop()
        client.disconnect()


def test_the_addon_bridges_on_the_broker_the_supervisor_hands_out(tmp_path, fixtures_dir, sim):
    broker = Mosquitto(tmp_path, users={BROKER_USER: BROKER_PASSWORD})
    broker.start()
    fake = FakeSupervisor(fixtures_dir, broker_port=broker.port)
    log = tmp_path / "addon.log"
    proc = None
    observer = None
    try:
        assert _anonymous_refused(broker.port)  # only the Supervisor's credentials get in
        observer = Observer(broker.port, ("car/bridge/#",), username=BROKER_USER, password=BROKER_PASSWORD)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "SUPERVISOR_API": fake.url, "SUPERVISOR_TOKEN": TOKEN}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mqttbridge", *_addon(tmp_path, _legacy_options(sim.url))],
                stdout=out,
                stderr=out,
                env=env,
                cwd=ROOT,
            )
        observer.wait_topic("car/bridge/state", "online", what=f"online; log:\n{log.read_text()}")
        assert fake.requests == [("/services/mqtt", f"Bearer {TOKEN}")]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0
        observer.wait_topic("car/bridge/state", "offline")
        text = log.read_text()
        assert "broker from the Supervisor's MQTT service (core_mosquitto): 127.0.0.1" in text
        for secret in (TOKEN, BROKER_PASSWORD, "legacy-account-password"):
            assert secret not in text
        assert (tmp_path / "data").is_dir()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if observer is not None:
            observer.close()
        fake.stop()
        broker.stop()
