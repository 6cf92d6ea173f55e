"""The BMW CarData simulator: OAuth device flow, REST answers and errors, the quota (CONTRACT section 9).

Fixture bodies are compared byte for byte (or as JSON where the answer is assembled per container);
the stream tests are in test_cardata_simulator_stream.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from mqttbridge.simulator.cardata.cars import load_catalogue

from .cardata_sim_helpers import Flow, api, jwt_payload, login, make_sim, refresh

BEV_VIN, ICE_VIN = "WBY31AW090TEST001", "WBY1Z21020TEST002"


@pytest.fixture
def cardata(fixtures_dir: Path) -> Path:
    return fixtures_dir / "bmw_cardata"


@pytest.fixture
def sim():
    simulator, _clock = make_sim()
    yield simulator
    simulator.stop()


# -- OAuth -------------------------------------------------------------------------------------------


def test_device_flow_pending_slow_down_then_tokens(sim, cardata):
    flow = Flow(sim)
    assert flow.code_response.status_code == 200
    assert {"user_code", "device_code", "interval", "verification_uri", "expires_in"} == set(flow.code)
    assert (flow.code["interval"], flow.code["expires_in"], len(flow.code["user_code"])) == (5, 300, 8)
    pending = flow.poll()
    assert pending.status_code == 403
    assert pending.content == (cardata / "auth/token_error_authorization_pending_doc.json").read_bytes()
    too_fast = flow.poll()  # the clock did not move: faster than interval
    assert too_fast.status_code == 400
    assert too_fast.content == (cardata / "auth/token_error_slow_down_doc.json").read_bytes()
    listed = requests.get(f"{sim.url}/_sim/device/pending", timeout=5).json()
    assert [p["user_code"] for p in listed] == [flow.code["user_code"]]
    approved = requests.post(f"{sim.url}/_sim/device/approve", json={"user_code": flow.code["user_code"]}, timeout=5)
    assert approved.status_code == 200
    sim.advance(5)
    answer = flow.poll()
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    shape = json.loads((cardata / "constructed/token_response.json").read_text())
    assert list(tokens) == list(shape)
    assert (tokens["token_type"], tokens["expires_in"], tokens["scope"]) == ("Bearer", 3599, shape["scope"])
    claims = jwt_payload(tokens["id_token"])
    assert claims["gcid"] == tokens["gcid"] == sim.gcid("client-a")
    assert claims["exp"] == int(sim.clock.now()) + 3600
    assert tokens["gcid"] in claims["dynamic_scopes"][0]
    sim.advance(5)
    assert flow.poll().status_code == 400  # a device code is good for one set of tokens


def test_denied_expired_and_pkce_mismatch(sim, cardata):
    denied = Flow(sim)
    requests.post(
        f"{sim.url}/_sim/device/approve", json={"user_code": denied.code["user_code"], "deny": True}, timeout=5
    )
    answer = denied.poll()
    assert (answer.status_code, answer.content) == (403, (cardata / "auth/token_error_access_denied.json").read_bytes())

    wrong = Flow(sim)
    sim.approve(wrong.code["user_code"])
    mismatch = wrong.poll(verifier="not-the-verifier-that-made-the-challenge")
    assert mismatch.status_code == 400 and mismatch.json()["error"] == "invalid_grant"
    sim.advance(5)
    assert wrong.poll().status_code == 200

    late = Flow(sim)
    sim.advance(301)
    expired = late.poll()
    assert expired.status_code == 401
    assert expired.content == (cardata / "auth/token_error_expired_token_doc.json").read_bytes()
    assert not sim.approve(late.code["user_code"])


def test_refresh_rotates_and_dies_after_14_days(sim, cardata):
    first = login(sim)
    second = refresh(sim, first["refresh_token"])
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]
    assert second.json()["gcid"] == first["gcid"]
    reused = refresh(sim, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.content == (cardata / "auth/token_error_invalid_grant.json").read_bytes()
    third = refresh(sim, second.json()["refresh_token"])
    assert third.status_code == 200
    sim.advance(14 * 86400)
    dead = refresh(sim, third.json()["refresh_token"])
    assert (dead.status_code, dead.json()["error"]) == (400, "invalid_grant")


def test_revoked_client_is_invalid_client(sim, cardata):
    tokens = login(sim, "client-b")
    gone = requests.post(f"{sim.url}/_sim/clients", json={"client_id": "client-b", "revoked": True}, timeout=5)
    assert gone.status_code == 200
    answer = refresh(sim, tokens["refresh_token"], "client-b")
    assert answer.status_code == 401
    assert answer.content == (cardata / "auth/token_error_invalid_client_doc.json").read_bytes()


def test_request_log_masks_secrets(sim):
    tokens = login(sim)
    refresh(sim, tokens["refresh_token"])
    log = requests.get(f"{sim.url}/_sim/requests", timeout=5).json()
    text = json.dumps(log)
    assert tokens["refresh_token"] not in text and tokens["access_token"] not in text
    forms = [entry["form"] for entry in log if entry["path"] == "/gcdm/oauth/token"]
    assert forms[0]["code_verifier"].endswith("***") and forms[-1]["refresh_token"].endswith("***")


def test_token_fault_serves_the_gateway_fault(sim, cardata):
    requests.post(f"{sim.url}/_sim/faults", json={"endpoint": "token", "http_status": 500}, timeout=5)
    flow = Flow(sim)
    answer = flow.poll()
    assert answer.status_code == 500
    assert answer.content == (cardata / "auth/token_error_gateway_fault_500.json").read_bytes()
    sim.advance(5)
    assert flow.poll().status_code == 403  # the rule was for one request


# -- REST --------------------------------------------------------------------------------------------


def _container(sim, tokens, keys: list[str]) -> str:
    created = api(
        sim, tokens, "POST", "/customers/containers", json={"name": "t", "purpose": "p", "technicalDescriptors": keys}
    )
    assert created.status_code == 201, created.text
    return created.json()["containerId"]


def test_rest_answers_are_the_real_ones(sim, cardata):
    tokens = login(sim)
    mappings = api(sim, tokens, "GET", "/customers/vehicles/mappings")
    assert mappings.json() == json.loads((cardata / "rest/mappings_two_primary.json").read_text())
    for vin, basic in ((BEV_VIN, "basic_data_bev_i4m50.json"), (ICE_VIN, "basic_data_ice_x1.json")):
        answer = api(sim, tokens, "GET", f"/customers/vehicles/{vin}/basicData")
        assert answer.content == (cardata / "rest" / basic).read_bytes()
    tyres = api(sim, tokens, "GET", f"/customers/vehicles/{ICE_VIN}/smartMaintenanceTyreDiagnosis")
    assert tyres.content == (cardata / "rest/tyre_diagnosis_ice_x1_empty.json").read_bytes()
    for vin, name in ((BEV_VIN, "telematic_data_bev_i4m50.json"), (ICE_VIN, "telematic_data_ice_x1_extended.json")):
        real = json.loads((cardata / "rest" / name).read_text())
        container = _container(sim, tokens, list(real["telematicData"]))
        answer = api(sim, tokens, "GET", f"/customers/vehicles/{vin}/telematicData", params={"containerId": container})
        assert answer.status_code == 200
        assert answer.json() == real
        assert list(answer.json()["telematicData"]) == list(real["telematicData"])


def test_telematic_data_serves_every_key_as_strings(sim):
    tokens = login(sim)
    keys = ["vehicle.vehicle.travelledDistance", "vehicle.drivetrain.batteryManagement.header"]
    container = _container(sim, tokens, keys)
    patched = requests.patch(
        f"{sim.url}/_sim/cardata/{BEV_VIN}/telematic",
        json={"vehicle.drivetrain.batteryManagement.header": 81},
        timeout=5,
    )
    assert patched.status_code == 200
    data = api(sim, tokens, "GET", f"/customers/vehicles/{BEV_VIN}/telematicData", params={"containerId": container})
    entries = data.json()["telematicData"]
    assert list(entries) == keys
    assert entries["vehicle.vehicle.travelledDistance"] == {"timestamp": None, "unit": "km", "value": None}
    assert entries["vehicle.drivetrain.batteryManagement.header"]["value"] == "81"
    assert entries["vehicle.drivetrain.batteryManagement.header"]["unit"] == "%"


def test_rest_errors(sim, cardata):
    tokens = login(sim)
    no_token = requests.get(f"{sim.url}/customers/vehicles/mappings", headers={"x-version": "v1"}, timeout=5)
    assert no_token.json()["exveErrorId"] == "CU-100"
    bad = api(sim, {"access_token": "nope"}, "GET", "/customers/vehicles/mappings")
    assert (bad.status_code, bad.content) == (403, (cardata / "rest/error_403_cu127_invalid_token.json").read_bytes())
    no_version = api(sim, tokens, "GET", "/customers/vehicles/mappings", headers={"x-version": ""})
    assert (no_version.status_code, no_version.json()["exveErrorId"]) == (400, "CU-400")
    foreign = api(sim, tokens, "GET", "/customers/vehicles/WBA00000000000000/basicData")
    assert (foreign.status_code, foreign.json()["exveErrorId"]) == (403, "CU-104")
    malformed = api(sim, tokens, "GET", "/customers/vehicles/wby31/basicData")
    assert (malformed.status_code, malformed.json()["exveErrorId"]) == (400, "CU-120")
    sim.advance(3600)
    expired = api(sim, tokens, "GET", "/customers/vehicles/mappings")
    assert (expired.status_code, expired.json()["exveErrorId"]) == (403, "CU-127")


def test_token_without_requested_scope_gets_cu103(sim):
    flow = Flow(sim, scope=None)
    sim.approve(flow.code["user_code"])
    tokens = flow.poll().json()
    assert "cardata:api:read" not in tokens["scope"]
    answer = api(sim, tokens, "GET", "/customers/vehicles/mappings")
    assert (answer.status_code, answer.json()["exveErrorId"]) == (403, "CU-103")


def test_containers(sim, cardata):
    tokens = login(sim)
    keys = ["vehicle.vehicle.travelledDistance"]
    created = api(
        sim, tokens, "POST", "/customers/containers", json={"name": "n", "purpose": "p", "technicalDescriptors": keys}
    )
    body = created.json()
    assert created.status_code == 201 and len(body["containerId"]) == 13 and body["state"] == "ACTIVE"
    assert body["technicalDescriptors"] == keys
    unknown = api(
        sim,
        tokens,
        "POST",
        "/customers/containers",
        json={"name": "n", "purpose": "p", "technicalDescriptors": ["vehicle.no.such"]},
    )
    assert (unknown.status_code, unknown.json()["exveErrorId"]) == (400, "CU-402")
    listed = api(sim, tokens, "GET", "/customers/containers").json()
    assert [c["containerId"] for c in listed["containers"]] == [body["containerId"]]
    got = api(sim, tokens, "GET", f"/customers/containers/{body['containerId']}").json()
    assert got["technicalDescriptors"] == keys
    assert api(sim, tokens, "GET", "/customers/containers/short").json()["exveErrorId"] == "CU-121"
    missing = api(sim, tokens, "GET", "/customers/containers/ABCDEFGHIJKLM")
    assert (missing.status_code, missing.content) == (
        403,
        (cardata / "constructed/error_403_cu105_container.json").read_bytes(),
    )
    other = login(sim, "client-other")
    foreign = api(
        sim, other, "GET", f"/customers/vehicles/{BEV_VIN}/telematicData", params={"containerId": body["containerId"]}
    )
    assert foreign.json()["exveErrorId"] == "CU-105"
    assert api(sim, tokens, "DELETE", f"/customers/containers/{body['containerId']}").status_code == 204
    again = api(sim, tokens, "DELETE", f"/customers/containers/{body['containerId']}")
    assert again.json()["exveErrorId"] == "CU-122"
    read = api(
        sim, tokens, "GET", f"/customers/vehicles/{BEV_VIN}/telematicData", params={"containerId": body["containerId"]}
    )
    assert read.json()["exveErrorId"] == "CU-105"
    for _ in range(10):
        _container(sim, tokens, keys)
    eleventh = api(
        sim, tokens, "POST", "/customers/containers", json={"name": "n", "purpose": "p", "technicalDescriptors": keys}
    )
    assert eleventh.json()["exveErrorId"] == "CU-124"


def test_quota_50_then_cu429_then_reset_at_utc_midnight(cardata):
    sim, _clock = make_sim(start="2026-11-29T23:00:00")
    try:
        tokens = login(sim)
        for _ in range(49):
            assert api(sim, tokens, "GET", "/customers/vehicles/mappings").status_code == 200
        rejected = api(sim, tokens, "GET", "/customers/vehicles/mappings", headers={"x-version": ""})
        assert rejected.status_code == 400  # the 50th: rejected, but counted
        refresh(sim, tokens["refresh_token"])  # token calls are free
        limited = api(sim, tokens, "GET", "/customers/vehicles/mappings")
        assert limited.status_code == 403
        assert limited.content == (cardata / "constructed/error_403_cu429_rate_limit.json").read_bytes()
        quota = requests.get(f"{sim.url}/_sim/quota", timeout=5).json()
        assert quota == {"used": 51, "limit": 50, "resets_at": "2026-11-30T00:00:00.000Z"}
        sim.advance(3599)
        assert api(sim, tokens, "GET", "/customers/vehicles/mappings").status_code == 403
        sim.advance(1)
        fresh = login(sim)  # the old access token expired with the hour
        assert api(sim, fresh, "GET", "/customers/vehicles/mappings").status_code == 200
        assert sim.quota()["used"] == 1
    finally:
        sim.stop()


def test_fault_with_vendor_error(sim, cardata):
    tokens = login(sim)
    rule = {"endpoint": "telematicData", "http_status": 403, "error": "CU-429", "count": 1}
    assert requests.post(f"{sim.url}/_sim/faults", json=rule, timeout=5).status_code == 200
    container = _container(sim, tokens, ["vehicle.vehicle.travelledDistance"])
    path = f"/customers/vehicles/{BEV_VIN}/telematicData"
    faulted = api(sim, tokens, "GET", path, params={"containerId": container})
    assert (faulted.status_code, faulted.json()["exveErrorId"]) == (403, "CU-429")
    assert api(sim, tokens, "GET", path, params={"containerId": container}).status_code == 200
    bad = requests.post(f"{sim.url}/_sim/faults", json={"endpoint": "status", "http_status": 500}, timeout=5)
    assert bad.status_code == 400


# -- without ../shared ------------------------------------------------------------------------------


def test_builtin_demo_cars_without_fixtures():
    sim, _clock = make_sim(fixtures=None, vehicles=3)
    try:
        tokens = login(sim)
        mappings = api(sim, tokens, "GET", "/customers/vehicles/mappings").json()
        vins = [m["vin"] for m in mappings]
        assert len(set(vins)) == 3 and all(len(v) == 17 and v.isupper() for v in vins)
        keys = list(load_catalogue(None).units)
        container = _container(sim, tokens, keys)
        data = api(
            sim, tokens, "GET", f"/customers/vehicles/{vins[0]}/telematicData", params={"containerId": container}
        )
        values = [e["value"] for e in data.json()["telematicData"].values()]
        assert all(v is None or isinstance(v, str) for v in values) and any(values)
        basic = api(sim, tokens, "GET", f"/customers/vehicles/{vins[1]}/basicData").json()
        assert basic["driveTrain"] == "CONV"
        bad = api(sim, tokens, "GET", "/customers/vehicles/WBA00000000000000/basicData")
        assert bad.json()["exveErrorId"] == "CU-104"
        unknown = api(
            sim,
            tokens,
            "POST",
            "/customers/containers",
            json={"name": "n", "purpose": "p", "technicalDescriptors": ["x.y"]},
        )
        assert unknown.json()["exveErrorId"] == "CU-402"
    finally:
        sim.stop()


def test_cli_prints_both_addresses_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqttbridge", "simulate", "--provider", "bmw_cardata", "--vehicles", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        assert first.startswith("listening on http://127.0.0.1:"), first + proc.stderr.read()
        assert second.startswith("stream on mqtt://127.0.0.1:")
        url = first.split()[-1]
        assert len(requests.get(f"{url}/_sim/accounts", timeout=5).json()) == 0
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
