"""Tests for configuration loading and validation (contract §2)."""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import pytest

from mqttbridge.config import (
    PROVIDERS,
    REQUIRED,
    SCHEMA,
    Config,
    HomeAssistantConfig,
    Key,
    MqttConfig,
    PollConfig,
    TlsConfig,
    VehicleConfig,
    default_vehicle_name,
    load_config,
    parse_config,
    valid_topic,
)
from mqttbridge.config import schema as config_schema
from mqttbridge.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config.yaml.example"


def account(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "bmw",
        "provider": "bmw_legacy",
        "username": "me@example.com",
        "password": "pw-secret-1",
        "api_key": "key-secret-2",
        "api_secret": "apisecret-3",
    }
    data.update(overrides)
    return data


def minimal(**top: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"accounts": [account()]}
    data.update(top)
    return data


def parse(data: Any, env: dict[str, str] | None = None, base_dir: Path = Path("/nonexistent-base")) -> Config:
    return parse_config(data, env=env or {}, base_dir=base_dir)


def problems(data: Any, env: dict[str, str] | None = None, base_dir: Path = Path("/nonexistent-base")) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(data, env, base_dir)
    return info.value.problems


def has(found: list[str], path: str, fragment: str) -> bool:
    return any(p.startswith(f"{path}: ") and fragment in p for p in found)


def assert_problem(data: Any, path: str, fragment: str, **kwargs: Any) -> list[str]:
    found = problems(data, **kwargs)
    assert has(found, path, fragment), found
    return found


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


# -- defaults --------------------------------------------------------------------------------------


def test_minimal_config_gets_every_default() -> None:
    cfg = parse(minimal(), env={"STATE_DIRECTORY": "/srv/state"})
    assert cfg.mqtt == MqttConfig(
        host="localhost",
        port=1883,
        username=None,
        password=None,
        client_id="mqttbridge",
        protocol="5",
        keepalive=60,
        base_topic="car",
        tls=None,
    )
    assert cfg.homeassistant == HomeAssistantConfig("device", "homeassistant", "homeassistant/status")
    assert cfg.log_level == "INFO"
    assert cfg.state_dir == Path("/srv/state")
    assert cfg.source is None and cfg.warnings == ()
    (acc,) = cfg.accounts
    assert (acc.region, acc.base_url, acc.token_endpoint, acc.security_answer) == (
        "rest_of_world",
        None,
        "webapi",
        None,
    )
    assert acc.timeout == 30.0 and isinstance(acc.timeout, float)
    assert acc.poll == PollConfig(300)
    assert acc.vehicles == ()


def test_null_sections_and_keys_mean_defaults() -> None:
    cfg = parse(
        minimal(
            mqtt=None,
            homeassistant={"prefix": None},
            log_level=None,
            accounts=[account(poll=None, vehicles=None, region=None)],
        )
    )
    assert cfg.mqtt.port == 1883 and cfg.homeassistant.prefix == "homeassistant" and cfg.log_level == "INFO"
    assert cfg.accounts[0].poll.interval == 300 and cfg.accounts[0].vehicles == ()
    assert cfg.accounts[0].region == "rest_of_world"


def test_vehicle_defaults() -> None:
    cfg = parse(minimal(accounts=[account(vehicles=[{"vin": "WBY1Z21040V000001"}])]))
    assert cfg.accounts[0].vehicles == (VehicleConfig("WBY1Z21040V000001", "wby1z21040v000001", None, False, None),)
    assert default_vehicle_name("ABC123") == "abc123"


def test_dataclass_defaults_match_the_schema() -> None:
    """The dataclasses repeat the schema's defaults for direct construction; they must agree."""
    pairs = [
        (MqttConfig, SCHEMA.fields["mqtt"]),
        (HomeAssistantConfig, SCHEMA.fields["homeassistant"]),
        (TlsConfig, SCHEMA.fields["mqtt"].fields["tls"]),
        (PollConfig, PROVIDERS["bmw_legacy"].fields["poll"]),
        (VehicleConfig, PROVIDERS["bmw_legacy"].fields["vehicles"].item),
        *((PROVIDERS[name].build, PROVIDERS[name].fields) for name in PROVIDERS),  # each provider's account
    ]
    checked = 0
    for cls, spec in pairs:
        fields = spec if isinstance(spec, dict) else spec.fields
        for f in dataclasses.fields(cls):
            key = fields[f.name]
            if (
                f.default is dataclasses.MISSING
                or key.default_from is not None
                or key.kind in ("section", "list")
                or key.default is REQUIRED  # required by this provider, optional for another
            ):
                continue
            assert f.default == key.default, (cls.__name__, f.name)
            checked += 1
    assert checked >= 15


# -- state_dir -------------------------------------------------------------------------------------


def test_state_dir_from_systemd_first_entry() -> None:
    assert parse(minimal(), env={"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}).state_dir == Path("/var/lib/a")


def test_state_dir_default_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_schema.os, "geteuid", lambda: 0)
    assert parse(minimal(), env={"HOME": "/root"}).state_dir == Path("/var/lib/mqttbridge")


def test_state_dir_default_as_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_schema.os, "geteuid", lambda: 1000)
    assert parse(minimal(), env={"HOME": "/home/u"}).state_dir == Path("/home/u/.local/state/mqttbridge")
    assert parse(minimal(), env={"HOME": "/home/u", "XDG_STATE_HOME": "/x/state"}).state_dir == Path(
        "/x/state/mqttbridge"
    )


def test_state_dir_relative_is_resolved_against_the_config_folder(tmp_path: Path) -> None:
    cfg = parse(minimal(state_dir="state"), base_dir=tmp_path)
    assert cfg.state_dir == tmp_path / "state"
    assert not (tmp_path / "state").exists()  # not created here


# -- mqtt ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [(5, "5"), ("5", "5"), ("3.1.1", "3.1.1")])
def test_protocol_accepted_forms(given: Any, expected: str) -> None:
    assert parse(minimal(mqtt={"protocol": given})).mqtt.protocol == expected


@pytest.mark.parametrize("given", [4, 3.1, "3", "v5", True])
def test_protocol_rejected_names_both_choices(given: Any) -> None:
    assert_problem(minimal(mqtt={"protocol": given}), "mqtt.protocol", "must be one of 5, 3.1.1")


def test_port_messages() -> None:
    assert_problem(minimal(mqtt={"port": "abc"}), "mqtt.port", "must be an integer (got 'abc')")
    assert_problem(minimal(mqtt={"port": 0}), "mqtt.port", "must be between 1 and 65535 (got 0)")
    assert_problem(minimal(mqtt={"port": 65536}), "mqtt.port", "must be between 1 and 65535 (got 65536)")
    assert_problem(minimal(mqtt={"port": True}), "mqtt.port", "must be an integer (got true)")
    assert_problem(minimal(mqtt={"port": 1883.5}), "mqtt.port", "must be an integer")


def test_port_from_decimal_string() -> None:
    assert parse(minimal(mqtt={"port": " 1884 "})).mqtt.port == 1884


def test_keepalive_range_and_client_id() -> None:
    assert_problem(minimal(mqtt={"keepalive": 4}), "mqtt.keepalive", "must be between 5 and 3600 (got 4)")
    assert_problem(minimal(mqtt={"client_id": ""}), "mqtt.client_id", "must not be empty")
    assert_problem(minimal(mqtt={"host": 123}), "mqtt.host", "must be a string (got 123); put it in quotes")


def test_tls_off_on_and_default_port(tmp_path: Path) -> None:
    assert parse(minimal(mqtt={"tls": None})).mqtt.tls is None
    cfg = parse(minimal(mqtt={"tls": {}}))
    assert cfg.mqtt.tls == TlsConfig(None, None, None, False)
    assert cfg.mqtt.port == 8883  # the TLS port unless given
    assert parse(minimal(mqtt={"tls": True, "port": 1883})).mqtt.port == 1883
    assert parse(minimal(mqtt={"tls": True})).mqtt.tls == TlsConfig()
    assert parse(minimal(mqtt={"tls": False})).mqtt.tls is None


def test_tls_paths_resolved_and_checked(tmp_path: Path) -> None:
    write(tmp_path / "ca.pem", "CA")
    write(tmp_path / "client.pem", "CERT")
    write(tmp_path / "client.key", "KEY")
    cfg = parse(
        minimal(mqtt={"tls": {"ca_certs": "ca.pem", "certfile": "client.pem", "keyfile": "client.key"}}),
        base_dir=tmp_path,
    )
    assert cfg.mqtt.tls == TlsConfig(
        str(tmp_path / "ca.pem"), str(tmp_path / "client.pem"), str(tmp_path / "client.key"), False
    )
    found = problems(minimal(mqtt={"tls": {"ca_certs": "missing.pem", "certfile": str(tmp_path)}}), base_dir=tmp_path)
    assert has(found, "mqtt.tls.ca_certs", f"file not found: {tmp_path / 'missing.pem'}"), found
    assert has(found, "mqtt.tls.certfile", "not a file"), found


def test_tls_keyfile_needs_certfile(tmp_path: Path) -> None:
    write(tmp_path / "client.key", "KEY")
    assert_problem(
        minimal(mqtt={"tls": {"keyfile": "client.key"}}),
        "mqtt.tls.keyfile",
        "needs mqtt.tls.certfile",
        base_dir=tmp_path,
    )


def test_tls_insecure_warns() -> None:
    cfg = parse(minimal(mqtt={"tls": {"insecure": "yes"}}))
    assert cfg.mqtt.tls is not None and cfg.mqtt.tls.insecure is True
    assert any(w.startswith("mqtt.tls.insecure: ") for w in cfg.warnings)
    assert parse(minimal(mqtt={"tls": {"insecure": False}})).warnings == ()


# -- topics ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("", "must not be empty"),
        ("a" * 201, "at most 200"),
        ("car/+", "'+'"),
        ("car/#", "'#'"),
        ("car/\0x", "NUL"),
        ("$SYS/x", "'$'"),
        ("/car", "empty level"),
        ("car/", "empty level"),
        ("car//x", "empty level"),
    ],
)
def test_valid_topic_rejects(topic: str, reason: str) -> None:
    result = valid_topic(topic)
    assert result is not None and reason in result


@pytest.mark.parametrize("topic", ["car", "a/b/c", "a" * 200, "home assistant/ü"])
def test_valid_topic_accepts(topic: str) -> None:
    assert valid_topic(topic) is None


def test_topic_keys_use_the_topic_check() -> None:
    found = problems(minimal(mqtt={"base_topic": "car/#"}, homeassistant={"prefix": "/ha", "status_topic": "$x"}))
    assert has(found, "mqtt.base_topic", "not a valid MQTT topic: must not contain the wildcard '#'"), found
    assert has(found, "homeassistant.prefix", "empty level"), found
    assert has(found, "homeassistant.status_topic", "'$'"), found


# -- homeassistant, log_level ----------------------------------------------------------------------


def test_discovery_choices_and_yaml_off(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "homeassistant:\n  discovery: off\n" + INLINE)
    assert load_config(path, env={}).homeassistant.discovery == "off"  # unquoted off is a YAML boolean
    assert_problem(
        minimal(homeassistant={"discovery": "auto"}),
        "homeassistant.discovery",
        "must be one of device, component, off (got 'auto')",
    )
    assert parse(minimal(homeassistant={"discovery": False})).homeassistant.discovery == "off"


def test_log_level_case_insensitive() -> None:
    assert parse(minimal(log_level="warning")).log_level == "WARNING"
    assert_problem(minimal(log_level="verbose"), "log_level", "must be one of DEBUG, INFO, WARNING, ERROR")


# -- accounts --------------------------------------------------------------------------------------


def test_accounts_required_and_non_empty() -> None:
    assert_problem({"mqtt": {}}, "accounts", "is required")
    assert_problem({"accounts": []}, "accounts", "must not be empty")
    assert_problem({"accounts": {"name": "bmw"}}, "accounts", "must be a list")


def test_account_name_pattern_and_uniqueness() -> None:
    assert_problem(
        minimal(accounts=[account(name="My BMW")]),
        "accounts[0].name",
        "1 to 32 lower-case letters, digits, '_' or '-' (got 'My BMW')",
    )
    assert_problem(minimal(accounts=[account(name="a" * 33)]), "accounts[0].name", "1 to 32")
    found = problems(minimal(accounts=[account(), account()]))
    assert "accounts[1].name: duplicate account name 'bmw' (also at accounts[0].name)" in found


def test_provider_required_and_unknown_lists_known() -> None:
    acc = account()
    del acc["provider"]
    assert_problem(
        minimal(accounts=[acc]), "accounts[0].provider", "is required (one of bmw_cardata, bmw_legacy, hyundai_kia)"
    )
    assert_problem(
        minimal(accounts=[account(provider="tesla")]),
        "accounts[0].provider",
        "must be one of bmw_cardata, bmw_legacy, hyundai_kia (got 'tesla')",
    )


def test_provider_table_selects_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    from mqttbridge import providers

    fake = Key("section", fields={"name": Key("str"), "provider": Key("str"), "pin": Key("int", default=0)})
    spec = providers.ProviderSpec(name="fake", account_schema=fake, backend="nowhere:Nothing")
    monkeypatch.setattr(providers, "_loaded", {**providers.available(), "fake": spec})
    assert PROVIDERS["fake"] is fake  # the table is read from the installed providers
    found = problems(minimal(accounts=[{"name": "f", "provider": "fake", "pin": "x", "api_key": "k"}]))
    assert has(found, "accounts[0].pin", "must be an integer"), found
    assert has(found, "accounts[0].api_key", "unknown key"), found
    assert_problem(
        minimal(accounts=[account(provider="nope")]), "accounts[0].provider", "bmw_legacy, fake, hyundai_kia"
    )


def test_region_choices() -> None:
    found = problems(minimal(accounts=[account(region="europe")]))
    assert "accounts[0].region: must be one of rest_of_world, north_america, china (got 'europe')" in found
    assert parse(minimal(accounts=[account(region="china")])).accounts[0].region == "china"


def test_token_endpoint_choices() -> None:
    assert parse(minimal(accounts=[account(token_endpoint="gcdm")])).accounts[0].token_endpoint == "gcdm"
    assert_problem(
        minimal(accounts=[account(token_endpoint="oauth")]),
        "accounts[0].token_endpoint",
        "must be one of webapi, gcdm",
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("https://b2vapi.bmwgroup.us", "https://b2vapi.bmwgroup.us"),
        ("", None),
        (None, None),
    ],
)
def test_base_url_accepted(given: Any, expected: str | None) -> None:
    assert parse(minimal(accounts=[account(base_url=given)])).accounts[0].base_url == expected


@pytest.mark.parametrize("given", ["ftp://host", "http://", "127.0.0.1:8080", "http://host:99999", 8080])
def test_base_url_rejected(given: Any) -> None:
    assert_problem(
        minimal(accounts=[account(base_url=given)]),
        "accounts[0].base_url",
        "must be" if isinstance(given, int) else "must be an http:// or https:// URL with a host",
    )


def test_required_account_keys() -> None:
    found = problems(minimal(accounts=[{"name": "bmw", "provider": "bmw_legacy"}]))
    for key in ("username", "password", "api_key", "api_secret"):
        assert has(found, f"accounts[0].{key}", "is required"), found
    assert has(found, "accounts[0].password", "or give password_file"), found
    assert_problem(minimal(accounts=[account(username="")]), "accounts[0].username", "must not be empty")


def test_timeout_number() -> None:
    assert parse(minimal(accounts=[account(timeout="2.5")])).accounts[0].timeout == 2.5
    assert_problem(
        minimal(accounts=[account(timeout=0.5)]), "accounts[0].timeout", "must be between 1 and 120 (got 0.5)"
    )
    assert_problem(minimal(accounts=[account(timeout="soon")]), "accounts[0].timeout", "must be a number (got 'soon')")
    assert_problem(minimal(accounts=[account(timeout=float("nan"))]), "accounts[0].timeout", "must be a number")


def test_poll_interval_minimum() -> None:
    found = problems(minimal(accounts=[account(poll={"interval": 30})]))
    assert "accounts[0].poll.interval: must be >= 60 (got 30)" in found
    assert parse(minimal(accounts=[account(poll={"interval": "60"})])).accounts[0].poll.interval == 60
    assert_problem(minimal(accounts=[account(poll=300)]), "accounts[0].poll", "must be a mapping")


# -- vehicles --------------------------------------------------------------------------------------


def test_vehicle_fields() -> None:
    vehicles = [{"vin": "WBY1", "name": "i3", "topic": "garage/i3", "allow_unlock": "on", "unlock_code": "1234"}]
    (v,) = parse(minimal(accounts=[account(vehicles=vehicles)])).accounts[0].vehicles
    assert v == VehicleConfig("WBY1", "i3", "garage/i3", True, "1234")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("No", False), ("off", False), ("1", True), ("0", False), (False, False), (1, True)],
)
def test_bool_forms(text: Any, expected: bool) -> None:
    vehicles = [{"vin": "WBY1", "allow_unlock": text}]
    assert parse(minimal(accounts=[account(vehicles=vehicles)])).accounts[0].vehicles[0].allow_unlock is expected


def test_vehicle_problems() -> None:
    vehicles = [
        {"name": "x"},
        {"vin": "WBY 1"},
        {"vin": "WBY2", "name": "my car"},
        {"vin": "WBY3", "topic": "car/+"},
        {"vin": "WBY4", "allow_unlock": "maybe"},
        None,
    ]
    found = problems(minimal(accounts=[account(vehicles=vehicles)]))
    assert has(found, "accounts[0].vehicles[0].vin", "is required"), found
    assert has(found, "accounts[0].vehicles[1].vin", "1 to 40 letters, digits, '_' or '-' (got 'WBY 1')"), found
    assert has(found, "accounts[0].vehicles[2].name", "1 to 64 letters"), found
    assert has(found, "accounts[0].vehicles[3].topic", "not a valid MQTT topic"), found
    assert has(found, "accounts[0].vehicles[4].allow_unlock", "must be true or false (got 'maybe')"), found
    assert has(found, "accounts[0].vehicles[5]", "must be a mapping"), found


def test_vin_unique_across_accounts() -> None:
    data = minimal(
        accounts=[
            account(vehicles=[{"vin": "WBY1"}]),
            account(name="other", vehicles=[{"vin": "WBY1", "name": "two"}]),
        ]
    )
    found = problems(data)
    assert "accounts[1].vehicles[0].vin: duplicate VIN 'WBY1' (also at accounts[0].vehicles[0].vin)" in found


def test_vehicle_lookup_and_root_topic() -> None:
    vehicles = [{"vin": "WBY1", "name": "i3"}, {"vin": "WBY2", "topic": "car"}]
    cfg = parse(minimal(mqtt={"base_topic": "bmw"}, accounts=[account(vehicles=vehicles)]))
    acc = cfg.accounts[0]
    assert acc.vehicle("WBY2") is acc.vehicles[1]
    assert acc.vehicle("WBY9") is None
    assert cfg.root_topic(acc.vehicles[0]) == "bmw/i3"
    assert cfg.root_topic(acc.vehicles[1]) == "car"


# -- vehicle roots ---------------------------------------------------------------------------------


def test_duplicate_roots_name_both_vehicles() -> None:
    data = minimal(
        accounts=[
            account(vehicles=[{"vin": "WBY1", "name": "i3"}]),
            account(name="b2", vehicles=[{"vin": "WBY2", "topic": "car/i3"}]),
        ]
    )
    found = problems(data)
    assert len(found) == 1
    assert found[0].startswith("accounts[1].vehicles[0]: root topic 'car/i3'")
    assert "WBY2" in found[0] and "WBY1" in found[0] and "accounts[0].vehicles[0]" in found[0]


def test_default_names_can_collide() -> None:
    data = minimal(accounts=[account(vehicles=[{"vin": "wby1"}, {"vin": "WBY1"}])])
    assert_problem(data, "accounts[0].vehicles[1]", "already the root of vehicle wby1 (wby1)")


@pytest.mark.parametrize(
    "vehicle",
    [
        {"vin": "WBY1", "name": "bridge"},
        {"vin": "WBY1", "topic": "car/bridge/x"},
        {"vin": "WBY1", "topic": "car/bridge"},
    ],
)
def test_root_under_bridge_is_refused(vehicle: dict[str, Any]) -> None:
    assert_problem(
        minimal(accounts=[account(vehicles=[vehicle])]),
        "accounts[0].vehicles[0]",
        "collides with the bridge's own topics under 'car/bridge'",
    )


def test_root_equal_to_base_topic_is_fine() -> None:
    cfg = parse(
        minimal(accounts=[account(vehicles=[{"vin": "WBY1", "topic": "car"}, {"vin": "WBY2", "topic": "bridge"}])])
    )
    assert [cfg.root_topic(v) for v in cfg.accounts[0].vehicles] == ["car", "bridge"]


def test_composed_root_too_long() -> None:
    data = minimal(mqtt={"base_topic": "t" * 190}, accounts=[account(vehicles=[{"vin": "WBY1", "name": "n" * 20}])])
    assert_problem(data, "accounts[0].vehicles[0]", "not a valid topic: must be at most 200")


# -- environment substitution ----------------------------------------------------------------------


def test_env_substitution_forms() -> None:
    env = {"PW": "from-env", "HOST": "broker.lan", "EMPTY": "", "PORT": "8884"}
    data = minimal(
        mqtt={
            "host": "${HOST}",
            "port": "${PORT}",
            "client_id": "id-${MISSING:-x}-$$HOME",
            "username": "${EMPTY:-fallback}",
            "password": "${EMPTY}",
        },
        accounts=[account(password="${PW}", api_key="a$b", api_secret="${UNSET:-dflt}")],
    )
    cfg = parse(data, env=env)
    assert cfg.mqtt.host == "broker.lan"
    assert cfg.mqtt.port == 8884
    assert cfg.mqtt.client_id == "id-x-$HOME"
    assert cfg.mqtt.username == "fallback"  # ${VAR:-d} also replaces an empty value
    assert cfg.mqtt.password is None  # empty optional value = not set
    acc = cfg.accounts[0]
    assert (acc.password, acc.api_key, acc.api_secret) == ("from-env", "a$b", "dflt")


def test_env_missing_variables_are_all_reported() -> None:
    data = minimal(mqtt={"host": "${A}-${B}"}, accounts=[account(password="${C}")])
    found = problems(data)
    assert "mqtt.host: environment variable A is not set" in found
    assert "mqtt.host: environment variable B is not set" in found
    assert "accounts[0].password: environment variable C is not set" in found


def test_env_bad_syntax() -> None:
    assert_problem(minimal(mqtt={"host": "x${A"}), "mqtt.host", "unterminated '${'")
    assert_problem(minimal(mqtt={"host": "${1A}"}), "mqtt.host", "invalid variable reference '${1A}'")


def test_env_not_substituted_in_keys() -> None:
    assert_problem(minimal(mqtt={"${KEY}": "x"}), "mqtt.${KEY}", "unknown key", env={"KEY": "host"})


def test_env_bool_and_number_coercion() -> None:
    env = {"UNLOCK": "yes", "T": "12.5", "I": "120"}
    data = minimal(
        accounts=[
            account(
                timeout="${T}",
                poll={"interval": "${I}"},
                vehicles=[{"vin": "WBY1", "allow_unlock": "${UNLOCK}"}],
            )
        ]
    )
    acc = parse(data, env=env).accounts[0]
    assert (acc.timeout, acc.poll.interval, acc.vehicles[0].allow_unlock) == (12.5, 120, True)
    assert_problem(minimal(mqtt={"port": "${P}"}), "mqtt.port", "must be an integer (got '88a')", env={"P": "88a"})


def test_load_config_uses_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTTBRIDGE_TEST_PW", "pw-from-os")
    path = write(
        tmp_path / "c.yaml",
        "accounts:\n- {name: a, provider: bmw_legacy, username: u,\n"
        "   password: '${MQTTBRIDGE_TEST_PW}', api_key: k, api_secret: s}\n",
    )
    assert load_config(path).accounts[0].password == "pw-from-os"


# -- secrets from files ----------------------------------------------------------------------------


def test_secret_file_content_stripped_and_relative(tmp_path: Path) -> None:
    write(tmp_path / "pw", "  file-password\n\n")
    (tmp_path / "creds").mkdir()
    write(tmp_path / "creds" / "key", "file-key\n")
    acc = account(password_file="pw", api_key_file="${CREDS}/key")
    del acc["password"], acc["api_key"]
    cfg = parse(minimal(accounts=[acc]), env={"CREDS": str(tmp_path / "creds")}, base_dir=tmp_path)
    assert (cfg.accounts[0].password, cfg.accounts[0].api_key) == ("file-password", "file-key")


def test_secret_file_both_given(tmp_path: Path) -> None:
    write(tmp_path / "pw", "other-secret-xyz")
    found = problems(minimal(accounts=[account(password_file="pw")]), base_dir=tmp_path)
    assert has(found, "accounts[0].password", "give either password or password_file, not both"), found
    assert not any("pw-secret-1" in p or "other-secret-xyz" in p for p in found)


def test_secret_file_missing_or_unreadable(tmp_path: Path) -> None:
    acc = account(password_file="nothere", api_key_file=str(tmp_path))
    del acc["password"], acc["api_key"]
    found = problems(minimal(accounts=[acc]), base_dir=tmp_path)
    assert has(found, "accounts[0].password_file", f"cannot read {tmp_path / 'nothere'}: No such file or directory"), (
        found
    )
    assert has(found, "accounts[0].api_key_file", f"cannot read {tmp_path}: Is a directory"), found


def test_secret_file_empty_for_required_secret(tmp_path: Path) -> None:
    write(tmp_path / "pw", "\n")
    acc = account(password_file="pw")
    del acc["password"]
    assert_problem(minimal(accounts=[acc]), "accounts[0].password_file", "must not be empty", base_dir=tmp_path)


def test_file_suffix_for_non_secret_is_unknown(tmp_path: Path) -> None:
    assert_problem(
        minimal(mqtt={"host_file": "h"}),
        "mqtt.host_file",
        "unknown key: only secrets may be read from a file",
    )


# -- secrets never shown ---------------------------------------------------------------------------

SECRET = "Sup3r-S3cret-Value"


@pytest.mark.parametrize(
    "overrides",
    [
        {"password": [SECRET]},
        {"password": {"x": SECRET}},
        {"vehicles": [{"vin": "WBY1", "unlock_code": {"code": SECRET}}]},
        {"api_key": SECRET + "${"},
        {"api_secret": SECRET + "${bad var}"},
        {"security_answer": [SECRET, 1]},
    ],
)
def test_invalid_secret_never_in_errors(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        parse(minimal(accounts=[account(**overrides)]))
    text = str(info.value)
    assert text and SECRET not in text and "bad var" not in text


def test_secret_number_says_quote_without_value() -> None:
    data = minimal(accounts=[account(vehicles=[{"vin": "WBY1", "unlock_code": 987654}])])
    found = assert_problem(
        data, "accounts[0].vehicles[0].unlock_code", "must be a string (got a number); put it in quotes"
    )
    assert "987654" not in "\n".join(found)


def test_secret_from_env_or_file_never_in_errors(tmp_path: Path) -> None:
    write(tmp_path / "key", SECRET + "-file")
    first = account(password="${PW}", api_key=None, api_key_file="key", api_secret_file="gone")
    del first["api_secret"]
    second = account(name="two", api_key_file="key", unlock=None)
    del second["unlock"]
    data = minimal(mqtt={"password": "${PW}", "port": "${PW}"}, accounts=[first, second])
    with pytest.raises(ConfigError) as info:
        parse(data, env={"PW": SECRET}, base_dir=tmp_path)
    text = str(info.value)
    assert "mqtt.port: must be an integer (got '<redacted>')" in text  # the value is also a secret
    assert "accounts[1].api_key: give either api_key or api_key_file, not both" in text
    assert f"accounts[0].api_secret_file: cannot read {tmp_path / 'gone'}" in text
    assert SECRET not in text


def test_yaml_error_does_not_echo_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", f'mqtt:\n  password: "{SECRET}\n  port: 1883\n')
    found = problems_of_file(path)
    assert len(found) == 1 and SECRET not in found[0]
    assert re.search(r"YAML syntax error at line \d+, column \d+", found[0]), found


# -- unknown keys ----------------------------------------------------------------------------------


def test_unknown_keys_with_hints() -> None:
    data = minimal(
        mqtt={"prot": 1884},
        acounts=[],
        homeassistant={"zzz": 1},
        accounts=[account(passwrd="x", poll={"intervall": 60}, vehicles=[{"vin": "WBY1", "nmae": "a"}])],
    )
    found = problems(data)
    assert "mqtt.prot: unknown key (did you mean 'port'?)" in found
    assert "acounts: unknown key (did you mean 'accounts'?)" in found
    assert has(found, "homeassistant.zzz", "unknown key (known keys: discovery, prefix, status_topic)"), found
    assert has(found, "accounts[0].passwrd", "did you mean 'password'?"), found
    assert has(found, "accounts[0].poll.intervall", "did you mean 'interval'?"), found
    assert has(found, "accounts[0].vehicles[0].nmae", "did you mean 'name'?"), found


# -- several problems at once ----------------------------------------------------------------------


def test_all_problems_are_collected() -> None:
    data = minimal(
        mqtt={"port": "abc", "keepalive": 1},
        log_level="loud",
        accounts=[account(region="europe", poll={"interval": 30}), account()],
    )
    found = problems(data)
    expected = [
        "mqtt.port: must be an integer (got 'abc')",
        "mqtt.keepalive: must be between 5 and 3600 (got 1)",
        "log_level: must be one of DEBUG, INFO, WARNING, ERROR (got 'loud')",
        "accounts[0].region: must be one of rest_of_world, north_america, china (got 'europe')",
        "accounts[0].poll.interval: must be >= 60 (got 30)",
        "accounts[1].name: duplicate account name 'bmw' (also at accounts[0].name)",
    ]
    assert found == expected


# -- file-level errors -----------------------------------------------------------------------------


def problems_of_file(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return info.value.problems


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert problems_of_file(path) == [f"{path}: cannot read: No such file or directory"]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert problems_of_file(tmp_path) == [f"{tmp_path}: cannot read: Is a directory"]


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "mqtt:\n  host: a\n port: 1\n")
    (problem,) = problems_of_file(path)
    assert problem.startswith(f"{path}: YAML syntax error at line 3, column 2"), problem


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "c.yaml", text)
    assert problems_of_file(path) == [f"{path}: the file is empty; see config.yaml.example"]


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"), ("just text\n", "a string")])
def test_top_level_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path / "c.yaml", text)
    assert problems_of_file(path) == [f"{path}: the top level must be a mapping of keys (got {kind})"]


def test_duplicate_yaml_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "mqtt:\n  port: 1\n  host: h\n  port: 2\naccounts: []\nmqtt: {}\n")
    found = problems_of_file(path)
    assert "mqtt.port: duplicate key (line 4, first at line 2)" in found
    assert "mqtt: duplicate key (line 6, first at line 1)" in found


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"mqtt:\n  host: \xff\xfe\n")
    (problem,) = problems_of_file(path)
    assert problem.startswith(f"{path}: cannot read: not UTF-8 text")


def test_load_config_sets_source_and_relative_paths(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml",
        "state_dir: st\naccounts:\n- {name: a, provider: bmw_legacy, username: u,\n"
        "   password: '${P}', api_key: '${P}', api_secret: '${P}'}\n",
    )
    cfg = load_config(path, env={"P": "x"})
    assert cfg.source == path.absolute()
    assert cfg.state_dir == tmp_path / "st"


# -- warnings: inline secrets in a readable file ---------------------------------------------------

INLINE = (
    "accounts:\n- {name: a, provider: bmw_legacy, username: u, password: inline-pw,\n"
    "   api_key: key-1234, api_secret: secret-5678}\n"
)
FROM_ENV = (
    "accounts:\n- {name: a, provider: bmw_legacy, username: u, password: '${P}', api_key: '${P}',\n"
    "   api_secret: '${P:-}${P}'}\n"
)


def test_world_readable_file_with_inline_secrets_warns(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", INLINE, mode=0o644)
    (warning,) = load_config(path, env={}).warnings
    assert str(path) in warning and "chmod 600" in warning and "inline-pw" not in warning


def test_group_readable_warns_private_does_not(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", INLINE, mode=0o640)
    assert len(load_config(path, env={}).warnings) == 1
    path.chmod(0o600)
    assert load_config(path, env={}).warnings == ()


def test_secrets_only_from_env_do_not_warn(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", FROM_ENV, mode=0o644)
    assert load_config(path, env={"P": "pw-long-enough"}).warnings == ()


def test_secret_default_written_in_file_counts_as_inline(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", FROM_ENV.replace("'${P}', api_key", "'${NOPE:-written}', api_key"), mode=0o644)
    assert len(load_config(path, env={"P": "pw-long-enough"}).warnings) == 1


# -- secrets(), summary(), repr --------------------------------------------------------------------


def full_config() -> Config:
    data = minimal(
        mqtt={"username": "u", "password": "mqtt-pw"},
        accounts=[
            account(
                security_answer="answer-7",
                vehicles=[{"vin": "WBY1", "allow_unlock": True, "unlock_code": "4321"}, {"vin": "WBY2"}],
            ),
            account(name="us", region="north_america", base_url="http://127.0.0.1:9/", password="pw-2"),
        ],
    )
    return parse(data, env={"STATE_DIRECTORY": "/srv/st"})


def test_secrets_lists_every_secret() -> None:
    assert full_config().secrets() == {
        "mqtt-pw",
        "pw-secret-1",
        "key-secret-2",
        "apisecret-3",
        "answer-7",
        "4321",
        "pw-2",
    }
    assert parse(minimal()).secrets() == {"pw-secret-1", "key-secret-2", "apisecret-3"}


def test_summary_lines_and_no_secrets() -> None:
    cfg = full_config()
    lines = cfg.summary()
    text = "\n".join(lines)
    assert lines[0].startswith("broker: localhost:1883 (MQTT 5, TLS off")
    assert "home assistant discovery: device" in text
    assert "state_dir: /srv/st" in text
    assert "account bmw: bmw_legacy, region rest_of_world" in text
    assert "account us: bmw_legacy, server http://127.0.0.1:9" in text
    assert "vehicle wby1 (WBY1) -> car/wby1, unlock allowed with a code" in text
    assert "vehicles: all of the account's" in text
    for secret in cfg.secrets():
        assert secret not in text
        assert secret not in repr(cfg)


# -- the example file ------------------------------------------------------------------------------


def example_env() -> dict[str, str]:
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", EXAMPLE.read_text(encoding="utf-8")))
    assert names, "the example should show ${VAR} use"
    return {name: f"value-of-{name.lower()}" for name in names}


def test_example_loads_with_its_variables_set() -> None:
    env = example_env()
    cfg = load_config(EXAMPLE, env=env)
    assert cfg.accounts and cfg.mqtt.password == env["MQTT_PASSWORD"]
    assert cfg.source == EXAMPLE


def test_example_fails_without_its_variables() -> None:
    found = problems_of_file(EXAMPLE, env={})
    assert found and all("environment variable" in p for p in found)


def test_example_mentions_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")

    def walk(key: Key, out: set[str]) -> None:
        for name, sub in (key.fields or {}).items():
            out.add(name)
            if sub.kind == "section":
                walk(sub, out)
            elif sub.kind == "list" and sub.item is not None:
                walk(sub.item, out)
                for variant in (sub.item.variants or {}).values():
                    walk(variant, out)

    names: set[str] = set()
    walk(SCHEMA, names)
    missing = [n for n in sorted(names) if not re.search(rf"^\s*#?\s*(- )?{n}:", text, re.MULTILINE)]
    assert not missing


def test_example_copy_readable_by_all_does_not_warn(tmp_path: Path) -> None:
    """A copy made readable by all still loads; the example keeps its secrets in ${VAR}, so no warning."""
    copy_path = write(tmp_path / "config.yaml", EXAMPLE.read_text(encoding="utf-8"), mode=0o644)
    assert load_config(copy_path, env=example_env()).warnings == ()


def test_parse_config_does_not_mutate_input() -> None:
    data = minimal(accounts=[account(vehicles=[{"vin": "WBY1"}])])
    before = copy.deepcopy(data)
    parse(data)
    assert data == before


def test_env_is_not_read_from_os_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONLY_IN_OS", "x")
    assert_problem(minimal(mqtt={"host": "${ONLY_IN_OS}"}), "mqtt.host", "ONLY_IN_OS is not set", env={})
    assert os.environ["ONLY_IN_OS"] == "x"


def test_hyundai_kia_account_and_its_defaults() -> None:
    kia = {
        "name": "kia",
        "provider": "hyundai_kia",
        "brand": "KIA",
        "region": "europe",
        "username": "me",
        "password": "pw-123456",
        "pin": "1234",
    }
    config = parse(minimal(accounts=[kia]))
    acc = config.accounts[0]
    assert (acc.brand, acc.region, acc.pin) == ("kia", "europe", "1234")
    assert acc.poll.daily_budget == 100 and acc.poll.quiet_hours == "22:00-06:00" and acc.poll.min_battery_12v == 50
    assert "pw-123456" in config.secrets() and "1234" in config.secrets()
    found = problems(minimal(accounts=[{**kia, "region": "mars", "api_key": "k"}]))
    assert has(found, "accounts[0].region", "must be one of europe"), found
    assert has(found, "accounts[0].api_key", "unknown key"), found


def test_budget_and_battery_keys() -> None:
    acc = account(poll={"daily_budget": 40, "budget_reset": "03:30", "quiet_hours": None, "force_interval": 7200})
    poll = parse(minimal(accounts=[acc])).accounts[0].poll
    assert (poll.daily_budget, poll.budget_reset, poll.quiet_hours, poll.force_interval) == (40, "03:30", None, 7200)
    assert parse(minimal()).accounts[0].poll.daily_budget is None  # bmw_legacy: no budget by default
    bad = account(poll={"budget_reset": "25:00", "quiet_hours": "late", "force_interval": 60, "min_battery_12v": 101})
    found = problems(minimal(accounts=[bad]))
    for path in ("budget_reset", "quiet_hours", "force_interval", "min_battery_12v"):
        assert has(found, f"accounts[0].poll.{path}", ""), (path, found)


def test_notify_targets() -> None:
    url = "https://chat.example.com/hook?token=s3cr3t-token"
    config = parse(minimal(notify=[{"type": "webhook", "url": url}], notify_interval=600))
    assert config.notify[0].type == "webhook" and config.notify_interval == 600
    assert url in config.secrets() and url not in repr(config)
    found = problems(minimal(notify=[{"type": "pager", "url": url}]))
    assert has(found, "notify[0].type", "must be one of synology_chat, webhook"), found


@pytest.mark.parametrize(
    "vin,name",
    [
        ("WBY1Z21000V000001", "wby1z21000v000001"),
        ("car/+/#", "car____"),
        ("", "vehicle"),
        ("ANONYMOUS", "anonymous"),
        ("Fahrzeug ü 1", "fahrzeug___1"),
    ],
)
def test_default_names_from_vendor_vins_are_safe_topic_levels(vin: str, name: str) -> None:
    assert default_vehicle_name(vin) == name
    assert valid_topic(f"car/{default_vehicle_name(vin)}") is None


def test_metrics_are_off_unless_configured_and_on_loopback_by_default() -> None:
    assert parse(minimal()).metrics is None
    assert parse(minimal(metrics=None)).metrics is None
    on = parse(minimal(metrics=True)).metrics
    assert on is not None and (on.host, on.port) == ("127.0.0.1", 9464)
    custom = parse(minimal(metrics={"port": 9100})).metrics
    assert custom is not None and (custom.host, custom.port) == ("127.0.0.1", 9100)
    assert "metrics: http://127.0.0.1:9100/metrics" in parse(minimal(metrics={"port": 9100})).summary()
    found = problems(minimal(metrics={"port": 0, "path": "/m"}))
    assert has(found, "metrics.port", "between 1 and 65535"), found
    assert has(found, "metrics.path", "unknown key"), found


def test_unlock_lockout_defaults_and_bounds() -> None:
    lockout = parse(minimal()).unlock_lockout
    assert (lockout.attempts, lockout.window_minutes, lockout.minutes) == (3, 15, 15)
    short = parse(minimal(unlock_lockout={"attempts": 5, "minutes": 2})).unlock_lockout
    assert (short.attempts, short.window_minutes, short.minutes) == (5, 15, 2)
    found = problems(minimal(unlock_lockout={"attempts": 0, "minutes": 0, "window": 5}))
    assert has(found, "unlock_lockout.attempts", "between 1 and 100"), found
    assert has(found, "unlock_lockout.minutes", "between 1 and"), found
    assert has(found, "unlock_lockout.window", "did you mean 'window_minutes'?"), found
