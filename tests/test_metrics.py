"""Prometheus metrics: off unless configured, a clear error without the package, and a real scrape of the
daemon with its vendor calls, commands, budget, broker connection and last reads."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from datetime import time as clock_time
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mqttbridge.backends import create_backend
from mqttbridge.backends.base import RetryPolicy
from mqttbridge.backends.budgeted import BudgetedBackend
from mqttbridge.budget import BudgetLedger
from mqttbridge.config import MetricsConfig
from mqttbridge.errors import MqttBridgeError
from mqttbridge.metrics import Metrics
from mqttbridge.statestore import StateStore

from .conftest import account_data, make_config
from .mqtt_helpers import ROOT, Observer, free_port, wait_until
from .restart_helpers import BASE, Run, config_for, is_record, vendor_fault

Samples = dict[tuple[str, frozenset], float]


def scrape(port: int) -> Samples:
    """Every sample of ``/metrics`` as {(name, labels): value}."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


# --- the module -------------------------------------------------------------------------------------


def test_without_configuration_nothing_is_imported_or_served() -> None:
    code = (
        "import sys; from mqttbridge.metrics import Metrics; import mqttbridge.bridge; m = Metrics(None); "
        "m.start(lambda: True); m.vendor_call('a', 'cached_read', 'ok'); m.command_finished('lock', 'EXECUTED', 1);"
        "m.budget('a', 3); m.vehicle_read('V', 'v', 1.0); m.stop(); print('prometheus_client' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails as if not installed
    with pytest.raises(MqttBridgeError, match=r"pip install 'mqttbridge\[metrics\]'"):
        Metrics(MetricsConfig())


@pytest.mark.slow
def test_the_daemon_without_the_package_says_what_to_install(tmp_path: Path) -> None:
    hidden = tmp_path / "hide"
    hidden.mkdir()
    (hidden / "prometheus_client.py").write_text("raise ImportError('hidden by the test')\n")
    config = {
        "state_dir": str(tmp_path / "state"),
        "metrics": {"port": free_port()},
        "accounts": [account_data("http://127.0.0.1:9")],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    env = {"PYTHONPATH": f"{hidden}:{ROOT}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "mqttbridge", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 1
    assert "prometheus-client package is missing" in done.stderr and "mqttbridge[metrics]" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        metrics = Metrics(MetricsConfig(port=port))
        with pytest.raises(MqttBridgeError, match=f"cannot listen on 127.0.0.1:{port}"):
            metrics.start(lambda: True)


def test_vendor_calls_are_counted_by_kind_and_result(sim, tmp_path: Path) -> None:
    config = make_config(tmp_path, [account_data(sim.url)])
    store = StateStore(config.state_dir)
    inner = create_backend(config.accounts[0], store, sleep=lambda s: None, policy=RetryPolicy(attempts=1))
    calls: list[tuple[str, str]] = []
    backend = BudgetedBackend(
        inner,
        BudgetLedger("bmw", limit=None, reset=clock_time(0, 0), reserve=0, store=store),
        on_call=lambda kind, result: calls.append((kind, result)),
    )
    vehicle = backend.list_vehicles()[0]
    backend.read_status(vehicle)
    sim.fault(endpoint="status", http_status=500, count=1)
    with pytest.raises(MqttBridgeError):
        backend.read_status(vehicle)
    sim.fault(endpoint="status", http_status=429, count=1, retry_after=3600)
    with pytest.raises(MqttBridgeError):
        backend.read_status(vehicle)
    assert calls == [
        ("cached_read", "ok"),
        ("cached_read", "ok"),
        ("cached_read", "error"),
        ("cached_read", "rate_limited"),
    ]


# --- a scrape of the daemon ---------------------------------------------------------------------------


@pytest.mark.slow
def test_scraping_the_running_daemon(tmp_path: Path, broker, vendor) -> None:
    port = free_port()
    config = config_for(broker, vendor, tmp_path / "state", metrics={"port": port})
    config["accounts"][0]["poll"]["daily_budget"] = 500
    runs = Run(tmp_path, config)
    obs = Observer(broker.port)
    vin = vendor.cars[0].vin
    started = time.time()
    try:
        daemon = runs.start()
        obs.wait_topic(f"{BASE}/i3/availability", "online")
        mark = obs.mark()
        obs.publish(f"{BASE}/i3/lock/set", json.dumps({"action": "LOCK", "request_id": "m-1"}))
        obs.wait_for(is_record("m-1", "INITIATED"), start=mark)
        vendor.clock.advance(3.0)
        obs.wait_for(is_record("m-1", "EXECUTED"), start=mark)
        obs.publish(f"{BASE}/i3/climate/set", "HOT")
        obs.wait_for(lambda m: m.topic == f"{BASE}/i3/climate/status" and m.text == "REJECTED", start=mark)
        vendor_fault(vendor, endpoint="status", http_status=500, count=10)
        obs.publish(f"{BASE}/i3/refresh/set", "PRESS")
        obs.wait_for(lambda m: m.topic == f"{BASE}/i3/refresh/status" and m.text == "FAILED", start=mark)
        budget = json.loads(obs.wait_for(lambda m: m.topic == f"{BASE}/bridge/accounts/sim/budget", start=mark).payload)

        # the counter follows the /status publish on the runner's thread: waited for, then read with the rest
        refresh_failed = {"command": "refresh", "status": "FAILED"}
        wait_until(lambda: value(scrape(port), "mqttbridge_commands_total", **refresh_failed) == 1, what="the count")
        samples = scrape(port)
        calls = "mqttbridge_vendor_calls_total"
        assert value(samples, calls, account="sim", kind="cached_read", result="ok") >= 2  # listing, status
        assert value(samples, calls, account="sim", kind="command", result="ok") == 1
        assert value(samples, calls, account="sim", kind="execution_check", result="ok") >= 1
        assert value(samples, calls, account="sim", kind="cached_read", result="error") >= 1
        assert value(samples, "mqttbridge_commands_total", command="lock", status="EXECUTED") == 1
        assert value(samples, "mqttbridge_commands_total", command="climate", status="REJECTED") == 1
        assert value(samples, "mqttbridge_commands_total", command="refresh", status="FAILED") == 1
        duration = "mqttbridge_command_duration_seconds"
        assert value(samples, f"{duration}_count", command="lock", status="EXECUTED") == 1
        assert 0 < value(samples, f"{duration}_sum", command="lock", status="EXECUTED") < 60
        assert value(samples, f"{duration}_bucket", command="lock", status="EXECUTED", le="+Inf") == 1
        remaining = value(samples, "mqttbridge_budget_remaining_calls", account="sim")
        assert remaining is not None and remaining > 0
        if datetime.now(UTC) < datetime.fromisoformat(budget["resets_at"]).astimezone(UTC):  # not past the reset
            assert remaining <= budget["remaining"] < 500
        assert value(samples, "mqttbridge_broker_connected") == 1
        last_read = value(samples, "mqttbridge_vehicle_last_read_timestamp_seconds", vin=vin, vehicle="i3")
        assert last_read is not None and started <= last_read <= time.time()

        broker.stop()
        wait_until(lambda: value(scrape(port), "mqttbridge_broker_connected") == 0, what="the broker seen down")
        broker.start()
        wait_until(
            lambda: value(scrape(port), "mqttbridge_broker_connected") == 1, timeout=30, what="the broker seen up again"
        )
        assert daemon.stop() == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{runs.logs()}") from None
    finally:
        obs.close()
        runs.close()
