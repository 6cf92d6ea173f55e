"""``mqttbridge demo --provider bmw_legacy --provider bmw_cardata`` as a user runs it: a process against a real
mosquitto, watched by a real MQTT client. The CarData login topic shows a device code whose
``verification_uri_complete`` approves it when opened (a GET, as a browser does); then the CarData car's state
appears beside the legacy cars, its stream updates it, and at stop no retained topic of the demo is left."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest
import requests

from mqttbridge.backends.bmw_legacy.demo import DEMO_NAMES

from .mqtt_helpers import Mosquitto, Observer, demo_process, retained_now

pytestmark = pytest.mark.slow

BASE = "both"
LOGIN = f"{BASE}/bridge/accounts/cardata/login"


def test_both_providers_the_login_link_approves_and_stop_removes_everything(broker: Mosquitto, tmp_path: Path):
    observer = Observer(broker.port, (f"{BASE}/#", "homeassistant/#"))
    proc, temp = demo_process(broker.port, tmp_path, BASE, "--provider", "bmw_legacy", "--provider", "bmw_cardata")
    try:
        assert proc.stdout is not None
        lines = []
        while not lines or not lines[-1].startswith("Ctrl-C stops it"):
            line = proc.stdout.readline()
            assert line, f"the demo ended early: {proc.communicate(timeout=30)[1][-3000:]}"
            lines.append(line.rstrip("\n"))
        said = "\n".join(lines)
        assert lines[0].startswith("simulator: http://127.0.0.1:")  # the legacy part first, as without --provider
        found = re.search(r"CarData simulator: (http://127\.0\.0\.1:\d+) \(1 car: i4, a BMW i4 eDrive40\)", said)
        assert found, said
        cardata_url = found[1]
        assert f"{BASE}/i4 appears once you approve its login" in said and LOGIN in said

        # the code and its link on the login topic; opening the link approves it
        login = observer.wait_for(
            lambda m: m.topic == LOGIN and b"device_code" in m.payload, what="the device code on the login topic"
        )
        shown = json.loads(login.text)
        assert shown["state"] == "action_required" and shown["verification_uri"] == f"{cardata_url}/oneid/link"
        assert shown["verification_uri_complete"] == f"{cardata_url}/oneid/link?user_code={shown['user_code']}"
        page = requests.get(shown["verification_uri_complete"], timeout=5)
        assert page.status_code == 200 and page.text == "Login successful"
        observer.wait_for(lambda m: m.topic == LOGIN and json.loads(m.text) == {"state": "ok"}, what="login ok")

        # the CarData car beside the legacy cars; its stream updates it
        state = observer.wait_for(lambda m: m.topic == f"{BASE}/i4/state" and b"battery_level" in m.payload)
        assert json.loads(state.text)["battery_level"] == 68
        for name in DEMO_NAMES:
            observer.wait_topic(f"{BASE}/{name}/state")
        observer.wait_for(
            lambda m: m.topic == f"{BASE}/bridge/accounts/cardata/stream" and json.loads(m.text)["subscribed"],
            what="the CarData stream subscribed",
        )
        vin = re.search(r"/_sim/cardata/(\w+)/stream", said)
        assert vin, said
        message = {"data": {"vehicle.drivetrain.batteryManagement.header": {"value": 55, "unit": "%"}}}
        requests.post(f"{cardata_url}/_sim/cardata/{vin[1]}/stream", json=message, timeout=5).raise_for_status()
        observer.wait_topic(f"{BASE}/i4/battery_level", "55")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        observer.close()

    assert proc.returncode == 0, err[-3000:]
    assert "demo stopped: removed its" in out and "Traceback" not in err
    # a fresh subscriber sees none of the demo's retained topics: the CarData ones went too, with the discovery
    assert retained_now(broker.port, f"{BASE}/#") == {}
    assert retained_now(broker.port, "homeassistant/#") == {}
    assert list(temp.iterdir()) == [], "the demo left a folder behind (its state, the CarData simulator's)"
