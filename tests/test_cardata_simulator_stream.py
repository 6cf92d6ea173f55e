"""The CarData simulator's stream on a private Mosquitto: credentials, ACL, one session per GCID, expiry.

Real paho clients connect with the GCID and the id_token, as the bridge does.
"""

from __future__ import annotations

import json
import shutil

import pytest
import requests

from mqttbridge.config import parse_config

from .cardata_sim_helpers import WAIT, StreamClient, login, make_sim, refresh

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto is not installed")

BEV_KEY = "vehicle.drivetrain.batteryManagement.header"


@pytest.fixture
def sim():
    simulator, _clock = make_sim(stream=True)
    yield simulator
    simulator.stop()


def _connections(sim) -> dict[str, int]:
    return requests.get(f"{sim.url}/_sim/stream/connections", timeout=5).json()


def test_message_reaches_the_subscriber(sim):
    tokens = login(sim)
    gcid, vin = tokens["gcid"], sim.vins[0]
    client = StreamClient(sim.stream_port, "bridge-1", gcid, tokens["id_token"])
    try:
        assert client.connected()
        assert [code.value for code in client.subscribe(f"{gcid}/+")] == [0]
        sent = requests.post(
            f"{sim.url}/_sim/cardata/{vin}/stream",
            json={"data": {BEV_KEY: {"value": "77", "unit": "%"}, "vehicle.cabin.door.status": {"value": "UNLOCKED"}}},
            timeout=5,
        )
        assert sent.status_code == 200
        message = client.messages.get(timeout=WAIT)
        assert message.topic == f"{gcid}/{vin}" and not message.retain and message.qos == 0
        payload = json.loads(message.payload)
        assert set(payload) == {"vin", "entityId", "topic", "timestamp", "data"}
        assert (payload["vin"], payload["topic"]) == (vin, vin)
        assert payload["timestamp"].endswith("Z") and len(payload["timestamp"]) == len("2026-11-29T12:00:00.000Z")
        assert payload["data"][BEV_KEY]["value"] == 77  # numeric key: a JSON number
        assert payload["data"]["vehicle.cabin.door.status"]["value"] == "UNLOCKED"
        assert sim.simulation.cars[vin].values[BEV_KEY].value == "77"  # REST sees it too, as a string
    finally:
        client.close()


def test_wrong_password_and_foreign_topics_are_refused(sim):
    tokens = login(sim)
    gcid = tokens["gcid"]
    wrong = StreamClient(sim.stream_port, "intruder", gcid, "not-the-id-token")
    try:
        assert not wrong.connected()
    finally:
        wrong.close()
    client = StreamClient(sim.stream_port, "bridge-1", gcid, tokens["id_token"])
    try:
        assert client.connected()
        assert client.subscribe(sim.vins[0])[0].is_failure  # the bare VIN the portal shows
        assert client.subscribe("00000000-0000-0000-0000-000000000000/+")[0].is_failure
        assert client.subscribe(f"{gcid}/#")[0].is_failure
        assert not client.subscribe(f"{gcid}/{sim.vins[1]}")[0].is_failure
    finally:
        client.close()


def test_second_session_of_a_gcid_drops_the_first(sim):
    tokens = login(sim)
    gcid = tokens["gcid"]
    first = StreamClient(sim.stream_port, "bridge-1", gcid, tokens["id_token"])
    second = None
    try:
        assert first.connected()
        assert sim.broker.wait_connections(gcid, 1)
        second = StreamClient(sim.stream_port, "other-tool", gcid, tokens["id_token"])
        assert second.connected()
        assert first.disconnected.wait(WAIT)
        assert sim.broker.wait_connections(gcid, 1)
        assert not second.disconnected.is_set()
        assert _connections(sim) == {gcid: 1}
    finally:
        first.close()
        if second is not None:
            second.close()


def test_disconnect_fault_drops_the_session(sim):
    tokens = login(sim)
    client = StreamClient(sim.stream_port, "bridge-1", tokens["gcid"], tokens["id_token"])
    try:
        assert client.connected()
        assert sim.broker.wait_connections(tokens["gcid"], 1)
        answer = requests.post(f"{sim.url}/_sim/faults", json={"endpoint": "stream", "disconnect": True}, timeout=5)
        assert answer.json() == {"dropped": 1}
        assert client.disconnected.wait(WAIT)
    finally:
        client.close()


def test_expired_id_token_closes_the_session_until_a_fresh_one(sim):
    tokens = login(sim)
    gcid = tokens["gcid"]
    client = StreamClient(sim.stream_port, "bridge-1", gcid, tokens["id_token"])
    try:
        assert client.connected()
        sim.advance(3599)
        assert not client.disconnected.is_set() and client.subscribe(f"{gcid}/+")[0].value == 0
        advanced = requests.post(f"{sim.url}/_sim/clock", json={"advance": 1}, timeout=5).json()
        assert advanced["expired_sessions"] == [gcid]
        assert client.disconnected.wait(WAIT)
    finally:
        client.close()
    stale = StreamClient(sim.stream_port, "bridge-1", gcid, tokens["id_token"])
    try:
        assert not stale.connected()
    finally:
        stale.close()
    renewed = refresh(sim, tokens["refresh_token"]).json()
    fresh = StreamClient(sim.stream_port, "bridge-1", gcid, renewed["id_token"])
    try:
        assert fresh.connected()
    finally:
        fresh.close()


def test_tls_stream_with_the_printed_ca():
    sim, _clock = make_sim(stream=True, stream_tls=True)
    try:
        assert sim.stream_ca is not None and sim.stream_ca.is_file()
        tokens = login(sim)
        client = StreamClient(sim.stream_port, "bridge-tls", tokens["gcid"], tokens["id_token"], ca=str(sim.stream_ca))
        try:
            assert client.connected()
            client.subscribe(f"{tokens['gcid']}/+")
            sim.stream_message(sim.vins[1], {"vehicle.drivetrain.fuelSystem.level": {"value": "40", "unit": "%"}})
            assert json.loads(client.messages.get(timeout=WAIT).payload)["vin"] == sim.vins[1]
        finally:
            client.close()
    finally:
        sim.stop()


def test_each_account_gets_the_message_on_its_own_topic(sim):
    accounts = [login(sim), login(sim, "client-other")]
    clients = [StreamClient(sim.stream_port, f"bridge-{n}", t["gcid"], t["id_token"]) for n, t in enumerate(accounts)]
    try:
        for client, tokens in zip(clients, accounts, strict=True):
            assert client.connected()
            client.subscribe(f"{tokens['gcid']}/+")
        sim.stream_message(sim.vins[0], {BEV_KEY: {"value": 50}})
        topics = [client.messages.get(timeout=WAIT).topic for client in clients]
        assert topics == [f"{t['gcid']}/{sim.vins[0]}" for t in accounts]
        assert accounts[0]["gcid"] != accounts[1]["gcid"]
    finally:
        for client in clients:
            client.close()


@pytest.mark.parametrize("tls", [False, True])
def test_the_account_section_points_a_bridge_at_the_simulator(tmp_path, tls: bool):
    """What tests, benchmarks and users put in a config to use the simulator: it must pass the config's checks."""
    sim, _clock = make_sim(stream=True, stream_tls=tls)
    try:
        section = sim.account("bmw", "client-1", vehicles=[{"vin": sim.vins[0], "name": "i4"}])
        account = parse_config({"accounts": [section]}, env={}, base_dir=tmp_path).accounts[0]
        assert (account.auth_url, account.api_url) == (sim.url, sim.url)
        assert (account.stream_port, account.stream_tls) == (sim.stream_port, tls)
        assert account.stream_ca == (str(sim.stream_ca) if tls else None)
        assert [v.name for v in account.vehicles] == ["i4"]
    finally:
        sim.stop()
