"""CarData login: the device-code flow with PKCE in a daemon, token rotation, a dead refresh token."""

from __future__ import annotations

import os
import stat
import threading
import time
from typing import Any

import pytest

from mqttbridge.backends.bmw_cardata import auth as auth_module
from mqttbridge.backends.bmw_cardata.backend import CarDataBackend
from mqttbridge.backends.bmw_cardata.tokens import RENEW_MARGIN_S, Tokens
from mqttbridge.errors import ActionRequiredError, AuthError
from mqttbridge.statestore import StateStore
from tests.cardata_fake import FakeCarData, fixture

WAIT = 20.0


class Listener:
    def __init__(self) -> None:
        self.required: list[ActionRequiredError] = []
        self.completed = threading.Event()
        self.new_code = threading.Event()

    def login_required(self, exc: ActionRequiredError) -> None:
        self.required.append(exc)
        self.new_code.set()

    def login_completed(self) -> None:
        self.completed.set()


@pytest.fixture
def fake():
    server = FakeCarData().start()
    yield server
    server.stop()


def make(fake: FakeCarData, tmp_path: Any, waits: list[float] | None = None) -> CarDataBackend:
    record = waits if waits is not None else []

    def sleep(seconds: float) -> None:  # the poll thread's pause: recorded, barely waited
        record.append(seconds)
        time.sleep(0.002)

    backend = CarDataBackend(fake.account(), StateStore(tmp_path), clock=fake.clock, sleep=sleep)
    backend.login_listener = Listener()
    return backend


def pending(backend: CarDataBackend) -> ActionRequiredError:
    with pytest.raises(ActionRequiredError) as caught:
        backend.list_vehicles()
    assert caught.value.kind == "device_code"
    return caught.value


def test_approved_login_stores_the_tokens_and_tells_the_listener(fake, tmp_path):
    backend = make(fake, tmp_path)
    try:
        first = pending(backend)
        details = first.details
        assert details["user_code"] == "CODE0001"
        assert details["verification_uri"] == "https://customer.bmwgroup.com/oneid/link"
        assert details["verification_uri_complete"] == "https://customer.bmwgroup.com/oneid/link?user_code=CODE0001"
        assert str(details["expires_at"]).endswith("Z")
        assert pending(backend).details == details  # the same code while it is pending
        with pytest.raises(ActionRequiredError):
            backend.login()  # what `mqttbridge login` sees meanwhile
        assert not fake.rest_calls()  # nothing spent before the login
        fake.approved = True
        assert backend.login_listener.completed.wait(WAIT)
        backend.login()  # returns: logged in
        assert len(backend.list_vehicles()) == 2
        token_file = tmp_path / "tokens" / "bmw.json"
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
        assert "refresh-1-xxxxxxxx" in token_file.read_text()
        assert len(fake.codes) == 1
        assert all(r.form.get("code_verifier") for r in fake.requests if r.form.get("device_code"))
    finally:
        backend.close()


def test_pending_and_slow_down_poll_as_bmw_allows(fake, tmp_path):
    waits: list[float] = []
    fake.device_script = [
        (403, fixture("auth/token_error_authorization_pending_doc.json")),
        (400, fixture("auth/token_error_slow_down_doc.json")),
        (403, fixture("auth/token_error_authorization_pending_doc.json")),
        "approve",
    ]
    backend = make(fake, tmp_path, waits)
    try:
        pending(backend)
        assert backend.login_listener.completed.wait(WAIT)
        assert waits[:2] == [5.0, 5.0]  # the interval before the first poll and after a pending one
        assert 10.0 in waits  # slow_down: +5 s from then on
        assert min(waits) >= 5.0
        assert not backend.login_listener.required  # no new code was needed
    finally:
        backend.close()


def test_an_expired_code_is_replaced_and_announced(fake, tmp_path):
    fake.device_script = [(401, fixture("auth/token_error_expired_token_doc.json"))]
    backend = make(fake, tmp_path)
    try:
        first = pending(backend)
        assert backend.login_listener.new_code.wait(WAIT)
        announced = backend.login_listener.required[0]
        assert announced.kind == "device_code"
        assert announced.details["user_code"] == "CODE0002" != first.details["user_code"]
        assert pending(backend).details == announced.details
        fake.approved = True
        assert backend.login_listener.completed.wait(WAIT)
    finally:
        backend.close()


def test_a_declined_code_gets_a_new_one_after_a_pause_and_declines_are_bounded(fake, tmp_path):
    waits: list[float] = []
    denied = (403, fixture("auth/token_error_access_denied.json"))
    fault = (500, fixture("auth/token_error_gateway_fault_500.json"))
    fake.device_script = [denied, fault, denied]
    backend = make(fake, tmp_path, waits)
    try:
        pending(backend)
        thread = backend.auth._thread
        assert thread is not None
        thread.join(WAIT)
        assert not thread.is_alive()
        assert auth_module.DECLINE_PAUSE_S in waits
        assert len(backend.login_listener.required) == 2  # a new code after each of the first two
        with pytest.raises(AuthError, match="3 times") as caught:
            backend.list_vehicles()
        assert not isinstance(caught.value, ActionRequiredError)
        assert len(fake.codes) == 3
        fake.approved = True
        with pytest.raises(ActionRequiredError):
            backend.login()  # the user asks again: a new flow
        assert backend.login_listener.completed.wait(WAIT)
    finally:
        backend.close()


def logged_in(fake: FakeCarData, store: StateStore, *, expires_in: float = 3599) -> Tokens:
    answer = fake.issue()
    answer["expires_in"] = expires_in
    tokens = Tokens.from_answer(answer, fake.clock())
    backend = CarDataBackend(fake.account(), store, clock=fake.clock)
    backend.auth._save(tokens)
    backend.close()
    return tokens


def test_tokens_are_renewed_before_expiry_with_rotation(fake, tmp_path):
    store = StateStore(tmp_path)
    old = logged_in(fake, store)
    backend = CarDataBackend(fake.account(), store, clock=fake.clock)
    other = CarDataBackend(fake.account(), store, clock=fake.clock)  # a second process on the same store
    try:
        assert backend.auth.tokens() == old  # far from expiry: no refresh
        fake.clock.advance(3600 - RENEW_MARGIN_S + 1)
        new = backend.auth.tokens()
        assert new.refresh_token != old.refresh_token
        assert old.refresh_token not in fake.refresh_valid  # rotated away
        assert new.refresh_token in (tmp_path / "tokens" / "bmw.json").read_text()  # saved
        # the other process still holds the old tokens in memory: it starts from the store, not invalid_grant
        assert other.auth.tokens().refresh_token == new.refresh_token
        assert fake.count("POST", "/gcdm/oauth/token") == 1
    finally:
        backend.close()
        other.close()


def test_a_rejected_access_token_is_renewed_once(fake, tmp_path):
    store = StateStore(tmp_path)
    old = logged_in(fake, store)
    fake.access_valid.discard(old.access_token)  # BMW forgot it (CU-127)
    backend = CarDataBackend(fake.account(), store, clock=fake.clock)
    try:
        assert [m["vin"] for m in backend.rest.mappings()]
        assert fake.count("POST", "/gcdm/oauth/token") == 1
        assert backend.take_vendor_calls() == 2  # the refused request counts too
    finally:
        backend.close()


@pytest.mark.parametrize(
    "answer", ["auth/token_error_invalid_grant.json", "auth/token_error_invalid_request_refresh.json"]
)
def test_a_dead_refresh_token_starts_the_login_again_and_says_so(fake, tmp_path, answer):
    store = StateStore(tmp_path)
    logged_in(fake, store)
    fake.refresh_answer = (400, fixture(answer))
    backend = make(fake, tmp_path)
    try:
        fake.clock.advance(3600)
        with pytest.raises(ActionRequiredError, match="refused the refresh token") as caught:
            backend.list_vehicles()
        assert caught.value.details["user_code"] == "CODE0001"
        assert not (tmp_path / "tokens" / "bmw.json").exists()
        assert not fake.rest_calls()
        fake.refresh_answer = None
        fake.approved = True
        assert backend.login_listener.completed.wait(WAIT)
        assert backend.list_vehicles()
    finally:
        backend.close()


def test_close_ends_the_polling_thread(fake, tmp_path):
    backend = CarDataBackend(fake.account(), StateStore(tmp_path), clock=fake.clock)  # the real, closable wait
    pending(backend)
    thread = backend.auth._thread
    assert thread is not None and thread.is_alive()
    backend.close()
    thread.join(WAIT)
    assert not thread.is_alive()
