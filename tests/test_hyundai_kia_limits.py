"""Each region's limit answer is RateLimitedError, and every vendor request is counted.

The library reports a limit differently in each region and release (EU-style ``RateLimitingError``,
a bare ``RequestException`` from US Kia, ``APIError`` or ``ServiceTemporaryUnavailable`` for US
Hyundai's HATA limit, ``APIError`` from Canada); the backend recognises the vendor's answer itself.
The library's real code runs with only ``requests`` faked.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

pytest.importorskip("hyundai_kia_connect_api")
pytestmark = pytest.mark.filterwarnings("ignore:'ssl_version' option is deprecated:FutureWarning")

from hyundai_kia_connect_api import Vehicle, VehicleManager  # noqa: E402
from hyundai_kia_connect_api import exceptions as hk  # noqa: E402
from hyundai_kia_connect_api.const import ENGINE_TYPES  # noqa: E402

from mqttbridge.backends.budgeted import BudgetedBackend  # noqa: E402
from mqttbridge.backends.hyundai_kia.capabilities import _probe_token  # noqa: E402
from mqttbridge.backends.hyundai_kia.limits import limit_answer  # noqa: E402
from mqttbridge.backends.hyundai_kia.metering import Exchange  # noqa: E402
from mqttbridge.budget import BudgetLedger  # noqa: E402
from mqttbridge.errors import BudgetExhaustedError, RateLimitedError, ServerError  # noqa: E402
from mqttbridge.model import VehicleInfo  # noqa: E402
from mqttbridge.statestore import StateStore  # noqa: E402

from . import test_hyundai_kia as base  # noqa: E402
from .test_hyundai_kia import reply, vehicle_of  # noqa: E402

vendor, eu, make = base.vendor, base.eu, base.make

#: the US Hyundai answer quoted in vendor-api-facts B3 (bluelinky #80, hkc #933)
HATA_LIMIT = {
    "errorSubCode": "HT_534",
    "systemName": "HATA",
    "functionName": "remoteVehicleStatus",
    "errorSubMessage": "HATA remoteVehicleStatus service failed while performing the operation RemoteVehicleStatus",
    "errorMessage": "You have exceeded the daily remote service request limit. Your last request was not processed.",
    "errorCode": 502,
}
EU_LIMIT = {"retCode": "F", "resCode": "5091", "resMsg": "Exceeds number of requests - Exceeds Number of Requests."}
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def exchange(body: Any, status: int = 200, retry_after: str | None = None) -> Exchange:
    text = body if isinstance(body, str) else json.dumps(body)
    return Exchange("GET", "https://vendor.invalid/x", status, text, retry_after)


# --- the answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (EU_LIMIT, 509, "5091"),  # EU, the real 2024 answer (ioBroker.bluelink #171)
        (EU_LIMIT, 200, "5091"),
        ({"msg": "overloaded"}, 509, "5091"),  # the EU status alone
        (HATA_LIMIT, 502, "HT_534"),
        ({**HATA_LIMIT, "errorSubCode": "GEN"}, 502, "GEN"),  # the message alone says it
        ({"status": {"statusCode": 1, "errorCode": 1125, "errorMessage": "Too many requests"}}, 200, "1125"),
        (
            {"responseHeader": {"responseCode": 1}, "error": {"errorCode": "7901", "errorDesc": "Rate limit"}},
            200,
            "7901",
        ),
        ("<html>429 Too Many Requests</html>", 429, None),
    ],
    ids=["eu-509", "eu-200", "eu-status", "hata", "hata-text", "us-kia-text", "canada-text", "http-429"],
)
def test_limit_answers(answer, status, code):
    found = limit_answer([exchange({"retCode": "S"}), exchange(answer, status)], NOW)
    assert found is not None
    assert (found.http_status, found.vendor_code) == (status, code)


def test_other_errors_are_no_limit(fixtures_dir: Path):
    """The 2019 Blue Link portal's remote-start failure is HATA errorCode 502 too, but no limit."""
    capture = (fixtures_dir / "hyundai_kia" / "bluelinky" / "us_2019_remoteStartError_502.json").read_text()
    garbage = (fixtures_dir / "hyundai_kia" / "bluelinky" / "us_2019_strangeError_not_valid_json.json").read_text()
    answers = [
        exchange(capture, 502),
        exchange(garbage, 502),
        exchange({"retCode": "F", "resCode": "4004", "resMsg": "Duplicate request"}, 400),
        exchange("", 500),
    ]
    assert limit_answer(answers, NOW) is None


def test_retry_after_in_seconds_and_as_a_date():
    assert limit_answer([exchange("", 429, "120")], NOW).retry_after == 120.0
    later = "Mon, 30 Nov 2026 13:00:00 GMT"
    assert limit_answer([exchange("", 429, later)], NOW).retry_after == 3600.0
    assert limit_answer([exchange("", 429, "whenever")], NOW).retry_after is None


# --- through the library ------------------------------------------------------------------------------


def car(engine: ENGINE_TYPES = ENGINE_TYPES.EV) -> Vehicle:
    return Vehicle(
        id="car-1",
        name="Car",
        model="Model",
        VIN="TESTVIN0000000001",
        key="vehicle-key",
        engine_type=engine,
        ccu_ccs2_protocol_support=0,
        generation=2,
    )


def us_hyundai(fake: base.Vendor) -> None:
    """The vehicle details read before the status (the login flows are tested elsewhere)."""
    details = {"enrolledVehicleDetails": [{"vehicleDetails": {"regid": "car-1", "odometer": "1000"}}]}
    fake.on("GET", r"/ac/v2/enrollment/details/", details)


def ready(make: Any, mocker: Any, region: str, brand: str, *, refresh: bool = False) -> tuple[Any, VehicleInfo]:
    """A logged-in backend with one car (the login flows are tested elsewhere)."""
    backend = make(region=region, brand=brand)
    backend.manager.token = _probe_token()
    backend.manager.vehicles = {"car-1": car()}
    if not refresh:
        mocker.patch.object(VehicleManager, "check_and_refresh_token", return_value=False)
    info = backend.list_vehicles()[0]
    backend.take_vendor_calls()
    return backend, info


@pytest.mark.parametrize("brand", ["hyundai", "genesis"])
def test_us_hyundai_daily_limit(vendor, make, mocker, brand):
    """4.23 raises APIError for it, 4.41 ServiceTemporaryUnavailable (a retry): both become RateLimitedError."""
    us_hyundai(vendor)
    vendor.on("GET", r"/rcs/rvs/vehicleStatus$", lambda **_: reply(HATA_LIMIT, status=502))
    backend, info = ready(make, mocker, "usa", brand)
    with pytest.raises(RateLimitedError) as caught:
        backend.read_status(info)
    assert (caught.value.vendor_code, caught.value.http_status) == ("HT_534", 502)
    assert len(vendor.hits("GET", r"/rcs/rvs/vehicleStatus$")) == 1  # not retried
    assert backend.take_vendor_calls() == len(vendor.calls)


def test_us_hyundai_server_trouble_stays_a_server_error(vendor, make, mocker):
    us_hyundai(vendor)
    vendor.on(
        "GET",
        r"/rcs/rvs/vehicleStatus$",
        lambda **_: reply({**HATA_LIMIT, "errorSubCode": "HT_500", "errorMessage": "service failed"}, status=502),
    )
    backend, info = ready(make, mocker, "usa", "hyundai")
    with pytest.raises(Exception) as caught:
        backend.read_status(info)
    assert not isinstance(caught.value, RateLimitedError)


def test_us_kia_limit(vendor, make, mocker):
    """US Kia turns every error answer into a bare RequestException, without the answer."""
    body = {"status": {"statusCode": 1, "errorType": 1, "errorCode": 1125, "errorMessage": "Too many requests"}}
    vendor.on("POST", r"/cmm/gvi$", lambda **_: reply(body, status=429, headers={"Retry-After": "600"}))
    backend, info = ready(make, mocker, "usa", "kia")
    with pytest.raises(RateLimitedError) as caught:
        backend.read_status(info)
    assert (caught.value.http_status, caught.value.retry_after) == (429, 600.0)


def test_canada_limit_and_its_token_check_is_counted(vendor, make, mocker):
    """Canada checks the token with a vehicle list before every call (test_token): a vendor call each time."""
    vendor.on("POST", r"/tods/api/vhcllst$", {"responseHeader": {"responseCode": 0}, "result": {"vehicles": []}})
    limit = {"responseHeader": {"responseCode": 1}, "error": {"errorCode": "7901", "errorDesc": "Too many requests"}}
    vendor.on("POST", r"/tods/api/lstvhclsts$", lambda **_: reply(limit, status=429))
    backend, info = ready(make, mocker, "canada", "kia", refresh=True)
    checks = len(vendor.hits("POST", r"/vhcllst$"))
    with pytest.raises(RateLimitedError):
        backend.read_status(info)
    assert len(vendor.hits("POST", r"/vhcllst$")) == checks + 1
    assert backend.take_vendor_calls() == 2  # the token check and the status
    assert backend.take_vendor_calls() == 0  # taken


def test_eu_limit_with_its_http_status(eu, make):
    eu.vendor.on("GET", r"/status/latest$", lambda **_: reply({**EU_LIMIT, "msgId": "x"}, status=509))
    backend = make()
    with pytest.raises(RateLimitedError) as caught:
        backend.read_status(vehicle_of(backend, "ev6-id"))
    assert (caught.value.vendor_code, caught.value.http_status) == ("5091", 509)


def test_a_limit_at_login_is_no_wrong_password(eu, make):
    """A login answered with 5091, which a library release reads as a refused login: no wrong-password
    cool-down (which would hide the limit), but the budget's block."""
    eu.vendor.on("POST", r"/auth/login$", lambda **_: reply({**EU_LIMIT, "msgId": "x"}, status=509))

    def login(*_args: Any, **_kwargs: Any) -> Any:
        requests.Session().post("https://prd.eu-ccapi.kia.com:8080/auth/login")
        raise hk.AuthenticationError("Authentication rejected")

    eu.login.side_effect = login
    backend = make()
    with pytest.raises(RateLimitedError):
        backend.list_vehicles()
    with pytest.raises(RateLimitedError):
        backend.list_vehicles()
    assert eu.login.call_count == 2  # no cool-down: the budget's block decides when to ask again


def test_every_request_of_a_read_is_counted(eu, make):
    backend = make()
    info = vehicle_of(backend, "ev6-id")
    backend.take_vendor_calls()
    before = len(eu.vendor.calls)
    backend.read_status(info)
    made = len(eu.vendor.calls) - before
    assert made >= 2  # the status and the parking position at least
    assert backend.take_vendor_calls() == made


def test_the_limit_blocks_the_budget_until_the_reset(vendor, make, mocker, tmp_path: Path):
    """CONTRACT section 8: a vendor's limit answer stops every call until the budget's reset."""
    us_hyundai(vendor)
    vendor.on("GET", r"/rcs/rvs/vehicleStatus$", lambda **_: reply(HATA_LIMIT, status=502))
    backend, info = ready(make, mocker, "usa", "hyundai")
    ledger = BudgetLedger("kia", limit=30, reset=time(0, 0), reserve=2, store=StateStore(tmp_path / "budget"))
    budgeted = BudgetedBackend(backend, ledger)
    with pytest.raises(RateLimitedError):
        budgeted.read_status(info)
    blocked = ledger.blocked_until()
    assert blocked is not None and blocked > datetime.now().astimezone() + timedelta(seconds=1)
    calls = len(vendor.calls)
    with pytest.raises(BudgetExhaustedError):
        budgeted.read_status(info)
    assert len(vendor.calls) == calls


def test_service_unavailable_is_still_a_server_error(eu, make):
    eu.vendor.on(
        "GET", r"/status/latest$", {"retCode": "F", "resCode": "5031", "resMsg": "Service Temporary Unavailable"}
    )
    backend = make()
    with pytest.raises(ServerError):
        backend.read_status(vehicle_of(backend, "ev6-id"))


def test_ok_answers_are_untouched(eu, make):
    backend = make()
    assert backend.read_status(vehicle_of(backend, "ev6-id")).fields["battery_level"] == 76
