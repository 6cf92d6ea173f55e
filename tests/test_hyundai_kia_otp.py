"""One-time codes: sent once per demand, said where, taken by submit_code at any time.

US Kia's login answers an OTP key; Canada's answers error 7110 and the library asks for the
verification methods; both then send the code (e-mail or SMS) and verify it. The library's real
code runs on both releases with only ``requests`` faked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hyundai_kia_connect_api")
pytestmark = pytest.mark.filterwarnings("ignore:'ssl_version' option is deprecated:FutureWarning")

from hyundai_kia_connect_api import exceptions as hk  # noqa: E402

from mqttbridge.backends.hyundai_kia.session import ACTION_COOLDOWN_S, AUTH_COOLDOWN_S  # noqa: E402
from mqttbridge.backends.hyundai_kia.tokens import token_to_json  # noqa: E402
from mqttbridge.errors import ActionRequiredError, AuthError, UnsupportedError  # noqa: E402
from mqttbridge.logsetup import redact  # noqa: E402

from . import test_hyundai_kia as base  # noqa: E402
from .test_hyundai_kia import PASSWORD, PIN, US_OK, eu_token, reply  # noqa: E402

vendor, eu, make = base.vendor, base.eu, base.make

OTP_KEY = "otp-key-0123456789abcdef"
XID = "xid-0123456789abcdef"
FIRST_SID = "first-sid-0123456789abcdef"
RMTOKEN = "remember-me-token-0123456789abcdef"
FINAL_SID = "final-sid-0123456789abcdef"
CODE = "482913"


class UsKia:
    """US Kia's login: an OTP key until the code is verified, then a session."""

    def __init__(self, fake: base.Vendor, *, email: bool = True) -> None:
        self.fake = fake
        self.code_ok = True
        payload = {
            "otpKey": OTP_KEY,
            "hasEmail": email,
            "hasPhone": not email,
            "email": "d***@example.com",
            "phone": "***-***-1234",
        }
        self.otp = {**US_OK, "payload": payload}
        fake.on("POST", r"/prof/authUser$", self.auth_user)
        fake.on("POST", r"/cmm/sendOTP$", lambda **_: reply({**US_OK, "payload": {}}))
        fake.on("POST", r"/cmm/verifyOTP$", self.verify)
        fake.on(
            "GET",
            r"/ownr/gvl$",
            {
                **US_OK,
                "payload": {
                    "vehicleSummary": [
                        {
                            "vehicleIdentifier": "niro-id",
                            "nickName": "Niro",
                            "modelName": "NIRO EV",
                            "vehicleKey": "vkey-1",
                            "fuelType": 4,
                        }
                    ]
                },
            },
        )

    def auth_user(self, headers: dict[str, str] | None = None, **_: Any) -> Any:
        if headers and headers.get("rmtoken") == RMTOKEN:
            return reply({**US_OK, "payload": {}}, headers={"sid": FINAL_SID})
        return reply(self.otp, headers={"xid": XID})

    def verify(self, json: Any = None, **_: Any) -> Any:
        if self.code_ok and json == {"otp": CODE}:
            return reply(US_OK, headers={"sid": FIRST_SID, "rmtoken": RMTOKEN})
        return reply({"status": {"statusCode": 1, "errorType": 1, "errorCode": 1106, "errorMessage": "Invalid OTP"}})

    def sent(self) -> list[tuple[str, str, Any]]:
        return self.fake.hits("POST", r"/cmm/sendOTP$")

    def logins(self) -> int:
        return len(self.fake.hits("POST", r"/prof/authUser$"))


@pytest.fixture
def us_kia(vendor) -> UsKia:
    return UsKia(vendor)


def demand(backend: Any) -> ActionRequiredError:
    with pytest.raises(ActionRequiredError) as caught:
        backend.list_vehicles()
    return caught.value


def test_the_code_is_sent_once_and_where_it_went_is_said(us_kia, make):
    backend = make(region="usa")
    assert backend.takes_codes()
    first = demand(backend)
    assert first.kind == "otp"
    assert first.details == {"sent_to": "e-mail"}  # nothing secret: no key, no address
    assert "otp/set" in str(first) and "mqttbridge login" in str(first)
    assert len(us_kia.sent()) == 1
    for _ in range(3):  # polls during the cool-down ask the vendor nothing
        again = demand(backend)
        assert (again.kind, again.details) == ("otp", {"sent_to": "e-mail"})
    assert (us_kia.logins(), len(us_kia.sent())) == (1, 1)
    for text in (OTP_KEY, XID):
        assert text not in str(first)


def test_sms_when_the_account_has_no_e_mail(vendor, make):
    fake = UsKia(vendor, email=False)
    error = demand(make(region="usa"))
    assert error.details == {"sent_to": "SMS"}
    assert fake.sent()


def test_the_code_completes_the_login_and_the_token_is_kept(us_kia, make, tmp_path: Path):
    backend = make(region="usa")
    demand(backend)
    make.clock.advance(AUTH_COOLDOWN_S + 5)  # any time: the cool-down does not block a code
    backend.submit_code("otp", f" {CODE} ")
    assert [call[2] for call in us_kia.fake.hits("POST", r"/cmm/verifyOTP$")] == [{"otp": CODE}]
    assert backend.manager.token.access_token == FINAL_SID
    stored = json.loads((tmp_path / "state" / "tokens" / "kia.json").read_text())
    assert stored["token"]["access_token"] == FINAL_SID and stored["token"]["refresh_token"] == RMTOKEN
    assert PASSWORD not in json.dumps(stored) and PIN not in json.dumps(stored)
    for secret in (FINAL_SID, RMTOKEN):
        assert secret not in redact(f"token {secret}")
    logins = us_kia.logins()
    assert [v.vin for v in backend.list_vehicles()] == ["niro-id"]  # no cool-down left, no new login
    assert us_kia.logins() == logins
    restarted = make(region="usa")  # a restart needs no code
    assert [v.vin for v in restarted.list_vehicles()] == ["niro-id"]
    assert us_kia.logins() == logins and len(us_kia.sent()) == 1


def test_a_wrong_code_is_a_plain_auth_error_and_may_be_sent_again(us_kia, make):
    backend = make(region="usa")
    demand(backend)
    with pytest.raises(AuthError) as caught:
        backend.submit_code("otp", "000000")
    assert not isinstance(caught.value, ActionRequiredError)
    assert "not accepted" in str(caught.value) and "000000" not in str(caught.value)
    backend.submit_code("otp", CODE)
    assert backend.manager.token.access_token == FINAL_SID
    assert len(us_kia.sent()) == 1


def test_no_code_is_taken_without_a_demand(us_kia, make):
    backend = make(region="usa")
    with pytest.raises(AuthError, match="no login is waiting"):
        backend.submit_code("otp", CODE)
    assert not us_kia.fake.hits("POST", r"/cmm/verifyOTP$")


def test_a_new_code_only_after_the_cool_down(us_kia, make):
    backend = make(region="usa")
    demand(backend)
    make.clock.advance(ACTION_COOLDOWN_S - 10)
    demand(backend)
    assert len(us_kia.sent()) == 1
    make.clock.advance(20)
    demand(backend)
    assert (us_kia.logins(), len(us_kia.sent())) == (2, 2)  # one new login, one new code


def test_a_token_stored_by_mqttbridge_login_ends_the_demand(us_kia, make):
    daemon = make(region="usa")
    demand(daemon)
    terminal = make(region="usa")  # `mqttbridge login` in another process
    demand(terminal)
    terminal.submit_code("otp", CODE)
    assert [v.vin for v in daemon.list_vehicles()] == ["niro-id"]  # picked up, cool-down or not
    assert daemon.manager.token.access_token == FINAL_SID


def test_login_is_the_same_demand(us_kia, make):
    backend = make(region="usa")
    with pytest.raises(ActionRequiredError) as caught:
        backend.login()
    assert caught.value.kind == "otp"
    backend.submit_code("otp", CODE)
    backend.login()  # now logged in: nothing to do
    assert len(us_kia.sent()) == 1


def test_canada_otp(vendor, make):
    ok = {"responseHeader": {"responseCode": 0}}
    vendor.on(
        "POST",
        r"/tods/api/v2/login$",
        {"responseHeader": {"responseCode": 1}, "error": {"errorCode": "7110", "errorDesc": "OTP required"}},
    )
    vendor.on(
        "POST",
        r"/tods/api/mfa/selverifmeth$",
        {**ok, "result": {"userInfoUuid": "uuid-0123456789", "emailList": ["driver@example.com"], "userPhone": None}},
    )
    vendor.on("POST", r"/tods/api/mfa/sendotp$", {**ok, "result": {"otpKey": OTP_KEY}})
    vendor.on(
        "POST",
        r"/tods/api/mfa/validateotp$",
        {**ok, "result": {"verifiedOtp": True, "otpValidationKey": "validation-key-01234"}},
    )
    vendor.on(
        "POST",
        r"/tods/api/mfa/genmfatkn$",
        {
            **ok,
            "result": {
                "token": {
                    "accessToken": "ca-access-0123456789",
                    "refreshToken": "ca-refresh-0123456789",
                    "expireIn": 86400,
                }
            },
        },
    )
    vendor.on("POST", r"/tods/api/vhcllst$", {**ok, "result": {"vehicles": []}})
    backend = make(region="canada")
    assert backend.takes_codes()
    error = demand(backend)
    assert (error.kind, error.details) == ("otp", {"sent_to": "e-mail"})
    assert [call[2]["otpMethod"] for call in vendor.hits("POST", r"/mfa/sendotp$")] == ["E"]
    backend.submit_code("otp", CODE)
    assert vendor.hits("POST", r"/mfa/validateotp$")[0][2]["otpNo"] == CODE
    assert backend.manager.token.access_token == "ca-access-0123456789"
    assert backend.list_vehicles() == []


def test_where_the_library_cannot_take_a_code_it_says_so(eu, make):
    """The EU classes have no OTP login: the message says what to do, and submit_code refuses."""
    eu.login.side_effect = hk.AuthenticationOTPRequired("OTP required")
    backend = make()
    assert not backend.takes_codes()
    error = demand(backend)
    assert error.kind == "otp"
    assert "cannot complete" in str(error) and "official app" in str(error)
    demand(backend)
    assert eu.login.call_count == 1
    with pytest.raises(UnsupportedError, match="cannot complete"):
        backend.submit_code("otp", CODE)


def test_consent_stays_consent(eu, make):
    eu.login.side_effect = hk.ConsentRequiredError("Account consent is required.")
    backend = make()
    assert demand(backend).kind == "consent"
    assert demand(backend).kind == "consent"
    with pytest.raises(UnsupportedError):
        backend.submit_code("consent", CODE)


def test_a_stored_token_from_elsewhere_also_ends_a_wrong_password_pause(eu, make):
    eu.login.side_effect = hk.AuthenticationError("Authentication rejected")
    backend = make()
    with pytest.raises(AuthError):
        backend.list_vehicles()
    other = make()
    other.store.write_json("tokens/kia.json", {"identity": other._identity, "token": token_to_json(eu_token())})
    assert backend.list_vehicles()
    assert eu.login.call_count == 1
