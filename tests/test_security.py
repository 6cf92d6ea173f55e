"""Security, end to end: TLS towards the broker, the broker's credentials, and no secret ever leaking.

Each test starts its own mosquitto (with a plain anonymous listener for the observer and a TLS or
password listener for the bridge), runs the daemon as a process, and the vendor simulator in-process.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from mqttbridge.simulator import SimulatorServer, demo_vehicles
from mqttbridge.simulator import server as sim_server

from .mqtt_helpers import Daemon, Msg, Observer, retained_now, wait_until
from .tls_helpers import Broker, Pki, password_broker, tls_broker

BASE = "car"
STATE = f"{BASE}/bridge/state"
WAIT = 30.0
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", re.MULTILINE)

ObserverFactory = Callable[[int], Observer]

HOSTNAME_MISMATCH = "TLS: the broker's certificate does not match the host name"
UNKNOWN_CA = "TLS: the broker's certificate was refused"
CLIENT_CERT_HINTS = ("the broker wants a client certificate: set mqtt.tls.certfile and keyfile", "TLS handshake failed")
NOT_AUTHORIZED = "the broker refused the connection: Not authorized (check mqtt.username and mqtt.password)"


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    server = SimulatorServer(demo_vehicles(), execution_step=0.2)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tls(pki: Pki, tmp_path: Path) -> Iterator[Broker]:
    broker = tls_broker(_mkdir(tmp_path / "broker"), pki)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def observer_factory() -> Iterator[Callable[[int], Observer]]:
    made: list[Observer] = []

    def make(port: int) -> Observer:
        made.append(Observer(port))
        return made[-1]

    yield make
    for observer in made:
        observer.close()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def bridge_config(
    sim: SimulatorServer,
    state_dir: Path,
    mqtt: dict[str, Any],
    *,
    vehicles: list[dict[str, Any]] | None = None,
    **account: Any,
) -> dict[str, Any]:
    cars = list(sim.vehicles.values())
    acc: dict[str, Any] = {
        "name": "sim",
        "provider": "bmw_legacy",
        "base_url": sim.url,
        "username": sim_server.DEMO_USER,
        "password": sim_server.DEMO_PASSWORD,
        "api_key": "key",
        "api_secret": "secret-of-the-app",
        "retries": 2,
        "poll": {"interval": 60, "offline_after": 2},
        "commands": {"poll_interval": 0.1, "timeout": 15, "refresh_delay": 0},
        "vehicles": vehicles if vehicles is not None else [{"vin": cars[0].vin, "name": "i3"}],
    }
    acc.update(account)
    return {
        "mqtt": {"base_topic": BASE, "client_id": "bridge-under-test", **mqtt},
        "state_dir": str(state_dir),
        "log_level": "DEBUG",
        "accounts": [acc],
    }


@contextmanager
def daemon_running(workdir: Path, config: dict[str, Any]) -> Iterator[Daemon]:
    """The daemon as a process; a failing test gets its log, and it is always stopped."""
    daemon = Daemon(_mkdir(workdir), config)
    daemon.start()
    try:
        yield daemon
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- daemon log ---\n{daemon.tail(8000)}") from None
    finally:
        if daemon.alive():
            daemon.stop()


def log_text(daemon: Daemon) -> str:
    return daemon.log.read_text(errors="replace") if daemon.log.exists() else ""


def wait_log(daemon: Daemon, text: str, count: int = 1, timeout: float = WAIT) -> str:
    """Wait (bounded polling of the log file) until ``text`` was logged ``count`` times."""

    def enough() -> str | None:
        log = log_text(daemon)
        if log.count(text) >= count:
            return log
        if not daemon.alive():
            raise AssertionError(f"the daemon exited ({daemon.proc.returncode if daemon.proc else '?'})")
        return None

    return wait_until(enough, timeout, f"{count} x {text!r} in the daemon log")


def log_times(log: str, text: str) -> list[datetime]:
    """When each log line holding ``text`` was written."""
    times = []
    for line in log.splitlines():
        match = LOG_TIME.match(line)
        if match and text in line:
            times.append(datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f"))
    return times


def came_through(broker: Broker, client_id: str, detail: str = "") -> bool:
    """Whether ``client_id`` connected through the broker's secure listener (not the plain one)."""
    log = broker.log_text()
    secure = set(re.findall(rf"New connection from 127\.0\.0\.1:(\d+) on port {broker.secure_port}\.", log))
    clients = re.findall(rf"New client connected from 127\.0\.0\.1:(\d+) as {re.escape(client_id)} \((.*)\)", log)
    return any(port in secure and detail in rest for port, rest in clients)


def assert_never_online(broker: Broker, observer: Observer) -> None:
    assert [m for m in observer.messages if m.topic.startswith(f"{BASE}/")] == []
    assert retained_now(broker.port, f"{BASE}/#") == {}


# --- TLS -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_tls_with_the_right_ca_and_host_name_connects(
    tls: Broker,
    pki: Pki,
    sim: SimulatorServer,
    tmp_path: Path,
    observer_factory: ObserverFactory,
) -> None:
    observer = observer_factory(tls.port)
    mqtt = {"host": "localhost", "port": tls.secure_port, "tls": {"ca_certs": str(pki.ca.cert)}}
    with daemon_running(tmp_path / "d", bridge_config(sim, tmp_path / "state", mqtt)) as daemon:
        observer.wait_topic(STATE, "online", timeout=WAIT)
        observer.wait_topic(f"{BASE}/i3/availability", "online", timeout=WAIT)
        log = log_text(daemon)
        assert f"connected to the broker localhost:{tls.secure_port}" in log
        assert "NOT checked" not in log and "TLS:" not in log
    assert came_through(tls, "bridge-under-test")


@pytest.mark.parametrize(
    ("host", "ca", "insecure", "expected"),
    [
        pytest.param("127.0.0.1", "ca", False, HOSTNAME_MISMATCH, id="host-name-not-in-certificate"),
        pytest.param("localhost", "other_ca", False, UNKNOWN_CA, id="unknown-ca"),
        pytest.param("127.0.0.1", "other_ca", True, UNKNOWN_CA, id="insecure-still-checks-the-ca"),
    ],
)
@pytest.mark.slow
def test_tls_refused_keeps_the_daemon_alive_and_never_online(
    tls: Broker,
    pki: Pki,
    sim: SimulatorServer,
    tmp_path: Path,
    observer_factory: ObserverFactory,
    host: str,
    ca: str,
    insecure: bool,
    expected: str,
) -> None:
    observer = observer_factory(tls.port)
    ca_file = (pki.ca if ca == "ca" else pki.other_ca).cert
    mqtt = {"host": host, "port": tls.secure_port, "tls": {"ca_certs": str(ca_file), "insecure": insecure}}
    with daemon_running(tmp_path / "d", bridge_config(sim, tmp_path / "state", mqtt)) as daemon:
        log = wait_log(daemon, expected, count=2)  # refused, and tried again after the back-off
        assert daemon.alive()
        line = next(x for x in log.splitlines() if expected in x)
        assert f"cannot connect to the broker at {host}:{tls.secure_port}: " in line
        if expected == HOSTNAME_MISMATCH:
            assert f"not valid for '{host}'" in line and "set mqtt.host" in line
        else:
            assert "mqtt.tls.ca_certs" in line
        assert "Traceback" not in log and "connected to the broker" not in log
        assert_never_online(tls, observer)
    # the broker saw the handshakes fail: the attempts really reached it
    assert "alert bad certificate" in tls.log_text() or "alert unknown ca" in tls.log_text()


@pytest.mark.slow
def test_tls_insecure_skips_only_the_host_name_check_and_warns(
    tls: Broker,
    pki: Pki,
    sim: SimulatorServer,
    tmp_path: Path,
    observer_factory: ObserverFactory,
) -> None:
    observer = observer_factory(tls.port)
    mqtt = {"host": "127.0.0.1", "port": tls.secure_port, "tls": {"ca_certs": str(pki.ca.cert), "insecure": True}}
    with daemon_running(tmp_path / "d", bridge_config(sim, tmp_path / "state", mqtt)) as daemon:
        observer.wait_topic(STATE, "online", timeout=WAIT)
        log = log_text(daemon)
        warning = next((x for x in log.splitlines() if "mqtt.tls.insecure is true" in x), "")
        assert " WARNING " in warning and "host name is NOT checked" in warning, log
        assert HOSTNAME_MISMATCH not in log


@pytest.mark.slow
def test_tls_client_certificate(
    pki: Pki,
    sim: SimulatorServer,
    tmp_path: Path,
    observer_factory: ObserverFactory,
) -> None:
    broker = tls_broker(_mkdir(tmp_path / "broker"), pki, require_certificate=True)
    broker.start()
    try:
        observer = observer_factory(broker.port)
        tls_conf = {"ca_certs": str(pki.ca.cert)}
        mqtt = {"host": "localhost", "port": broker.secure_port, "tls": tls_conf}
        with daemon_running(tmp_path / "without", bridge_config(sim, tmp_path / "state", mqtt)) as daemon:
            # TLS 1.3 hears of it after the handshake (a disconnect), TLS 1.2 during it
            log = wait_until(
                lambda: sum(log_text(daemon).count(hint) for hint in CLIENT_CERT_HINTS) >= 2,
                WAIT,
                "the missing client certificate reported twice",
            ) and log_text(daemon)
            assert daemon.alive() and "connected to the broker" not in log
            assert_never_online(broker, observer)
        tls_conf.update(certfile=str(pki.client_cert), keyfile=str(pki.client_key))
        with daemon_running(tmp_path / "with", bridge_config(sim, tmp_path / "state", mqtt)):
            observer.wait_topic(STATE, "online", timeout=WAIT)
    finally:
        broker.stop()


# --- the broker's credentials --------------------------------------------------------------------


def _not_authorised(broker: Broker) -> int:
    return broker.log_text().count("disconnected, not authorised.")


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = password_broker(_mkdir(tmp_path / "broker"), {"bridge": "right-pass-5b1c", "other": "x-pass-77"})
    broker.start()
    yield broker
    broker.stop()


@pytest.mark.slow
def test_wrong_credentials_are_reported_and_retried_with_back_off(
    auth_broker: Broker,
    sim: SimulatorServer,
    tmp_path: Path,
    observer_factory: ObserverFactory,
) -> None:
    observer = observer_factory(auth_broker.port)
    mqtt = {"host": "127.0.0.1", "port": auth_broker.secure_port, "username": "bridge", "password": "wrong-pass-9d2e"}
    with daemon_running(tmp_path / "d", bridge_config(sim, tmp_path / "state", mqtt)) as daemon:
        log = wait_log(daemon, NOT_AUTHORIZED, count=4)
        refused_at = log_times(log, NOT_AUTHORIZED)
        attempts = wait_until(lambda: (n := _not_authorised(auth_broker)) >= 4 and n, WAIT, "4 refusals by the broker")
        assert daemon.alive()
        # paho's back-off doubles from 1 s: the gaps are at least 1, 2 and 4 s (never a tight loop)
        gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(refused_at)]
        assert len(gaps) >= 3, refused_at
        assert all(gap >= 0.9 * 2**i for i, gap in enumerate(gaps[:3])), gaps
        # and the broker saw no more attempts than the daemon reported (4, perhaps a 5th just now)
        assert 4 <= attempts <= 5, auth_broker.log_text()[-3000:]
        assert "Traceback" not in log and "wrong-pass-9d2e" not in log
        assert_never_online(auth_broker, observer)


@pytest.mark.slow
def test_wrong_credentials_with_mqtt_3_1_1(
    auth_broker: Broker,
    sim: SimulatorServer,
    tmp_path: Path,
) -> None:
    mqtt = {
        "host": "127.0.0.1",
        "port": auth_broker.secure_port,
        "username": "nobody",
        "password": "x-pass-77",
        "protocol": "3.1.1",
    }
    with daemon_running(tmp_path / "d", bridge_config(sim, tmp_path / "state", mqtt)) as daemon:
        wait_log(daemon, NOT_AUTHORIZED, count=2)
        assert daemon.alive()


def test_right_credentials_connect(
    auth_broker: Broker,
    sim: SimulatorServer,
    tmp_path: Path,
    observer_factory: ObserverFactory,
) -> None:
    observer = observer_factory(auth_broker.port)
    mqtt = {"host": "127.0.0.1", "port": auth_broker.secure_port, "username": "bridge", "password": "right-pass-5b1c"}
    with daemon_running(tmp_path / "d", bridge_config(sim, tmp_path / "state", mqtt)) as daemon:
        observer.wait_topic(f"{BASE}/i3/availability", "online", timeout=WAIT)
        assert observer.last(STATE) is not None and observer.last(STATE).text == "online"
        assert "refused" not in log_text(daemon)
    assert came_through(auth_broker, "bridge-under-test", "u'bridge'")
    assert _not_authorised(auth_broker) == 0


# --- secrets never leak --------------------------------------------------------------------------

MQTT_PASSWORD = "mqtt-Pw-7f3kQ9zr"
ACCOUNT_PASSWORD = "acct-Pw-2hX8vLmn"
API_KEY = "apikey-Zq4mR8tw"
API_SECRET = "apisecret-Wn6tP1ys"
UNLOCK_CODE = "unl0ck-K3y9Bd"
WRONG_CODE = "wr0ng-C0de-4Hq"


@pytest.mark.slow
def test_no_secret_ever_reaches_the_log_or_mqtt(
    sim: SimulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    observer_factory: ObserverFactory,
) -> None:
    monkeypatch.setattr(sim_server, "DEMO_PASSWORD", ACCOUNT_PASSWORD)  # "demo" would be no test
    issued: list[str] = []  # every access and refresh token the vendor hands out
    vendor_token = sim.simulation._token

    def capture_token(request: Any) -> Any:
        response = vendor_token(request)
        if response.status == 200:
            body = json.loads(response.body)
            issued.extend(body[key] for key in ("access_token", "refresh_token"))
        return response

    monkeypatch.setattr(sim.simulation, "_token", capture_token)

    broker = password_broker(_mkdir(tmp_path / "broker"), {"bridge": MQTT_PASSWORD})
    broker.start()
    state_dir = tmp_path / "state"
    cars = list(sim.vehicles.values())
    vehicles = [
        {"vin": cars[0].vin, "name": "i3"},
        {"vin": cars[1].vin, "name": "i3_rex", "allow_unlock": True, "unlock_code": UNLOCK_CODE},
    ]
    mqtt = {"host": "127.0.0.1", "port": broker.secure_port, "username": "bridge", "password": MQTT_PASSWORD}
    config = bridge_config(
        sim, state_dir, mqtt, vehicles=vehicles, password=ACCOUNT_PASSWORD, api_key=API_KEY, api_secret=API_SECRET
    )
    sent: list[tuple[str, bytes]] = []
    root = f"{BASE}/i3_rex"
    try:
        obs = observer_factory(broker.port)

        def command(topic: str, payload: str, done: Callable[[Msg], bool], what: str) -> Msg:
            mark = obs.mark()
            sent.append((topic, payload.encode()))
            obs.publish(topic, payload)
            return obs.wait_for(done, start=mark, timeout=WAIT, what=what)

        def status_is(command_name: str, *words: str) -> Callable[[Msg], bool]:
            return lambda m: m.topic == f"{root}/{command_name}/status" and m.text in words

        with daemon_running(tmp_path / "d", config) as daemon:
            for name in ("i3", "i3_rex"):
                obs.wait_topic(f"{BASE}/{name}/availability", "online", timeout=WAIT)
            tokens_file = state_dir / "tokens" / "sim.json"
            first_token = json.loads(tokens_file.read_text())["access_token"]
            assert first_token in issued

            command(f"{root}/lock/set", "LOCK", status_is("lock", "EXECUTED"), "LOCK executed")
            wrong = command(
                f"{root}/lock/set",
                json.dumps({"action": "UNLOCK", "code": WRONG_CODE}),
                status_is("lock", "REJECTED"),
                "the wrong code rejected",
            )
            assert wrong.text == "REJECTED"
            command(
                f"{root}/lock/set",
                json.dumps({"action": "UNLOCK", "code": UNLOCK_CODE}),
                status_is("lock", "EXECUTED"),
                "UNLOCK executed",
            )

            requests.post(
                f"{sim.url}/_sim/faults", json={"endpoint": "status", "http_status": 500, "count": 50}, timeout=5
            ).raise_for_status()
            command(f"{root}/refresh/set", "PRESS", status_is("refresh", "FAILED"), "the refresh failed")
            requests.post(
                f"{sim.url}/_sim/faults", json={"endpoint": "executeService", "http_status": 500, "count": 1}, timeout=5
            ).raise_for_status()
            requests.post(
                f"{sim.url}/_sim/faults", json={"endpoint": "status", "count": 0}, timeout=5
            ).raise_for_status()
            failed = command(f"{root}/horn/set", "PRESS", status_is("horn", "FAILED"), "the horn failed")
            assert failed.text == "FAILED"

            requests.post(f"{sim.url}/_sim/tokens/revoke", timeout=5).raise_for_status()
            command(f"{root}/refresh/set", "PRESS", status_is("refresh", "EXECUTED"), "refresh after re-login")
            second_token = wait_until(
                lambda: (
                    (json.loads(tokens_file.read_text()).get("access_token") if tokens_file.exists() else None)
                    not in (None, first_token)
                    and json.loads(tokens_file.read_text())["access_token"]
                ),
                WAIT,
                "a new token after the re-login",
            )
            assert second_token in issued
            assert daemon.stop(signal.SIGTERM) == 0
            log = log_text(daemon)
    finally:
        broker.stop()

    # the scenario really happened, at DEBUG, with two logins
    assert " DEBUG " in log and log.count("logged in") >= 2 and "token refused; logging in again" in log
    assert "wrong unlock code" in log and "HTTP 500" in log
    execution = json.loads(obs.last(f"{root}/horn/execution").payload)
    assert "HTTP 500" in execution["error"]

    basic = base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
    secrets = {
        "mqtt password": MQTT_PASSWORD,
        "account password": ACCOUNT_PASSWORD,
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "HTTP Basic credential": basic,
        "unlock code": UNLOCK_CODE,
        "the wrong unlock code": WRONG_CODE,
        **{f"vendor token {i}": token for i, token in enumerate(issued)},
    }
    assert len(issued) >= 4  # two logins, each an access and a refresh token
    published = [m for m in obs.messages if (m.topic, m.payload) not in sent]
    assert len(published) > 50
    leaks = [f"{what} in the daemon log" for what, value in secrets.items() if value in log]
    for msg in published:
        text = msg.topic + " " + msg.payload.decode("utf-8", "replace")
        leaks += [f"{what} in MQTT {msg.topic}" for what, value in secrets.items() if value in text]
    assert leaks == []
