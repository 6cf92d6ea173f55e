"""CarData REST: headers, counting, errors by exveErrorId, the quota, and the one container of ours."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mqttbridge.backends.bmw_cardata.rest import CONTAINER_NAME, container_purpose
from mqttbridge.errors import AccessDeniedError, ActionRequiredError, AuthError, RateLimitedError, ServerError
from mqttbridge.statestore import StateStore
from tests.cardata_fake import VIN1, VIN2, Clock, FakeCarData, backend_for, fixture

#: 2026-11-29 22:00:00 UTC: two hours before BMW's quota resets
EVENING = datetime(2026, 11, 29, 22, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def fake():
    server = FakeCarData(clock=Clock(EVENING)).start()
    yield server
    server.stop()


@pytest.fixture
def store(tmp_path):
    return StateStore(tmp_path)


def test_every_request_has_the_headers_and_is_counted(fake, store):
    backend = backend_for(fake, store)
    try:
        primary = backend.rest.mappings()
        assert [m["vin"] for m in primary] == [VIN1, VIN2]
        seen = fake.rest_calls()[-1]
        assert seen.headers["x-version"] == "v1"
        assert seen.headers["Accept"] == "application/json"
        assert seen.headers["Authorization"].startswith("Bearer access-")
        assert backend.take_vendor_calls() == 1
        assert backend.take_vendor_calls() == 0
    finally:
        backend.close()


def test_mappings_in_an_object_and_secondary_cars_left_out(fake, store, caplog):
    fake.mappings = {
        "mappings": [
            {"vin": VIN1, "mappingType": "PRIMARY", "mappedSince": "2025-03-27T17:48:41.435Z"},
            {"vin": VIN2, "mappingType": "SECONDARY", "mappedSince": "2025-03-27T17:48:41.435Z"},
        ]
    }
    backend = backend_for(fake, store)
    try:
        assert [m["vin"] for m in backend.rest.mappings()] == [VIN1]
        assert f"{VIN2} is mapped as SECONDARY" in caplog.text
    finally:
        backend.close()


def test_cu429_is_the_quota_until_midnight_utc_and_remembered(fake, store):
    fake.faults.append(("telematicData", 403, fixture("constructed/error_403_cu429_rate_limit.json"), {}))
    backend = backend_for(fake, store)
    try:
        with pytest.raises(RateLimitedError) as caught:
            backend.rest.telematic(VIN1)
        assert caught.value.retry_after == pytest.approx(7200)
        assert caught.value.vendor_code == "CU-429" and caught.value.http_status == 403
        before = len(fake.rest_calls())
        restarted = backend_for(fake, store)  # a restart does not spend a call to hear it again
        with pytest.raises(RateLimitedError):
            restarted.rest.mappings()
        assert len(fake.rest_calls()) == before
        assert restarted.take_vendor_calls() == 0
        fake.clock.advance(7201)  # past 00:00 UTC
        assert restarted.rest.mappings()
        restarted.close()
    finally:
        backend.close()


def test_a_retry_after_header_is_honoured(fake, store):
    body = fixture("constructed/error_403_cu429_rate_limit.json")
    fake.faults.append(("mappings", 403, body, {"Retry-After": "120"}))
    backend = backend_for(fake, store)
    try:
        with pytest.raises(RateLimitedError) as caught:
            backend.rest.mappings()
        assert caught.value.retry_after == 120
    finally:
        backend.close()


def test_the_container_is_created_once_and_reused_across_a_restart(fake, store):
    backend = backend_for(fake, store)
    try:
        assert "telematicData" in backend.rest.telematic(VIN1)
        assert fake.count("GET", "/customers/containers") == 1  # looked for one of ours first
        assert fake.count("POST", "/customers/containers") == 1
        created = next(iter(fake.containers.values()))
        assert created["name"] == CONTAINER_NAME
        assert created["purpose"] == container_purpose(created["technicalDescriptors"])
        assert backend.take_vendor_calls() == 3
        backend.rest.telematic(VIN2)
        assert backend.take_vendor_calls() == 1
    finally:
        backend.close()
    again = backend_for(fake, store)
    try:
        again.rest.telematic(VIN1)
        assert fake.count("POST", "/customers/containers") == 1
        assert fake.count("GET", "/customers/containers") == 1
        assert again.take_vendor_calls() == 1
    finally:
        again.close()


def test_a_lost_store_finds_our_container_and_deletes_stale_ones(fake, store, tmp_path):
    backend = backend_for(fake, store)
    keys = backend.rest.keys
    fake.containers = {
        "OTHERTOOL0001": {"containerId": "OTHERTOOL0001", "name": "evcc.io", "purpose": "v6", "state": "ACTIVE"},
        "OURSOLDKEYS01": {
            "containerId": "OURSOLDKEYS01",
            "name": CONTAINER_NAME,
            "purpose": "mqttbridge 0000",
            "state": "ACTIVE",
        },
        "OURS000000001": {
            "containerId": "OURS000000001",
            "name": CONTAINER_NAME,
            "purpose": container_purpose(keys),
            "state": "ACTIVE",
            "created": "2026-11-01T00:00:00.000Z",
        },
        "OURS000000002": {
            "containerId": "OURS000000002",
            "name": CONTAINER_NAME,
            "purpose": container_purpose(keys),
            "state": "ACTIVE",
            "created": "2026-11-02T00:00:00.000Z",
        },
    }
    try:
        backend.rest.telematic(VIN1)
        assert fake.count("POST", "/customers/containers") == 0
        assert sorted(fake.containers) == ["OTHERTOOL0001", "OURS000000001"]  # the oldest kept, others' untouched
        assert fake.rest_calls()[-1].query["containerId"] == ["OURS000000001"]
    finally:
        backend.close()


def test_cu105_forgets_the_container_and_creates_it_again_once(fake, store):
    backend = backend_for(fake, store)
    try:
        backend.rest.telematic(VIN1)
        fake.containers.clear()  # deleted on BMW's side
        backend.take_vendor_calls()
        assert "telematicData" in backend.rest.telematic(VIN1)
        assert fake.count("POST", "/customers/containers") == 2
        assert backend.take_vendor_calls() == 3  # the refused read, the creation, the read
        assert backend.rest._state["container_id"] in fake.containers
    finally:
        backend.close()


def test_cu124_cleans_stale_ones_of_ours_then_says_clearly(fake, store):
    fake.container_limit = 1
    backend = backend_for(fake, store)
    try:
        backend.rest.telematic(VIN1)
        fake.containers.clear()
        fake.containers["OURSOLDKEYS01"] = {
            "containerId": "OURSOLDKEYS01",
            "name": CONTAINER_NAME,
            "purpose": "mqttbridge 0000",
            "state": "ACTIVE",
        }
        assert backend.rest.telematic(VIN1)  # CU-105, CU-124, the stale one deleted, created
        assert "OURSOLDKEYS01" not in fake.containers
        fake.containers = {
            "OTHERTOOL0001": {"containerId": "OTHERTOOL0001", "name": "x", "purpose": "y", "state": "ACTIVE"}
        }
        with pytest.raises(Exception, match="10 CarData containers"):
            backend.rest.telematic(VIN1)
        assert "OTHERTOOL0001" in fake.containers
    finally:
        backend.close()


def test_5xx_is_retried_a_few_times_and_each_try_counts(fake, store):
    fake.faults += [("mappings", 500, {"exveErrorId": "CU-500"}, {}), ("mappings", 503, {}, {})]
    backend = backend_for(fake, store)  # retries: 2
    try:
        with pytest.raises(ServerError):
            backend.rest.mappings()
        assert backend.take_vendor_calls() == 2
        assert backend.rest.mappings()
    finally:
        backend.close()


def test_cu103_says_to_subscribe_and_starts_a_new_login(fake, store):
    fake.faults.append(("mappings", 403, fixture("constructed/error_403_cu103_scope.json"), {}))
    backend = backend_for(fake, store)
    try:
        with pytest.raises(AuthError, match="subscribe the CarData client to 'CarData API'"):
            backend.rest.mappings()
        with pytest.raises(ActionRequiredError):
            backend.rest.mappings()
    finally:
        backend.close()


def test_cu104_is_not_the_primary_user(fake, store):
    body = {"exveErrorId": "CU-104", "exveErrorMsg": "No permission for VIN"}
    fake.faults.append(("basicData", 403, body, {}))
    backend = backend_for(fake, store)
    try:
        with pytest.raises(AccessDeniedError, match="not the car's primary user"):
            backend.rest.basic_data(VIN1)
    finally:
        backend.close()


def test_a_cu429_just_after_midnight_is_clock_skew_not_a_lost_day() -> None:
    """BMW's clock a little behind ours: its answer at our 00:00:05 UTC is the old day's. Wait minutes, not a day."""
    from datetime import UTC, datetime

    from mqttbridge.backends.bmw_cardata.rest import RESET_SKEW_S, seconds_to_midnight_utc

    def at(text: str) -> float:
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()

    assert seconds_to_midnight_utc(at("2026-11-29T23:00:00")) == 3600
    assert seconds_to_midnight_utc(at("2026-11-30T00:00:05")) == RESET_SKEW_S - 5
    assert seconds_to_midnight_utc(at("2026-11-30T00:20:00")) == 23 * 3600 + 40 * 60
