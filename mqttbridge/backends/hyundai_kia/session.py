"""Logging in to a Hyundai/Kia/Genesis account around every library call, and no more than needed.

Why a module of its own: a refused login locks accounts when repeated, so each refusal cools down
before the next attempt; an OTP or consent demand waits for the user (a one-time code is sent once
per demand and taken by ``submit_code`` at any time); a token another process stored (``mqttbridge
login``) replaces a refused login. ``_call`` runs each request of ``backend`` with a valid session
and turns whatever the library raised into ``mqttbridge.errors`` (table in ``mapping``), a limit
answer among its requests first (``limits``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from hyundai_kia_connect_api.ApiImpl import ApiImpl
from hyundai_kia_connect_api.const import OTP_NOTIFY_TYPE
from hyundai_kia_connect_api.exceptions import (
    AuthenticationError,
    AuthenticationOTPRequired,
    ConsentRequiredError,
)

from mqttbridge.backends.hyundai_kia.connection import HyundaiKiaConnection, library_version
from mqttbridge.backends.hyundai_kia.limits import limit_answer, rate_limited
from mqttbridge.backends.hyundai_kia.mapping import OTP_SENT_MESSAGE, OTP_UNSUPPORTED_MESSAGE, backend_error
from mqttbridge.backends.hyundai_kia.metering import Meter, metered
from mqttbridge.backends.hyundai_kia.tokens import register_token, token_to_json
from mqttbridge.errors import (
    ActionRequiredError,
    AuthError,
    MqttBridgeError,
    RateLimitedError,
    TransientError,
    UnsupportedError,
)
from mqttbridge.statestore import StateStore

log = logging.getLogger(__name__)

T = TypeVar("T")

#: after a refused login, no new attempt for this long: repeated wrong passwords lock accounts
AUTH_COOLDOWN_S = 600.0
#: after an OTP or consent demand: nothing changes until the user acts, so ask the vendor rarely
#: (a code sent is not replaced by a new one before this; submit_code is taken at any time)
ACTION_COOLDOWN_S = 3600.0
#: the library calls that a one-time code login needs from the region's API class
OTP_METHODS = ("send_otp", "verify_otp_and_complete_login")


@dataclass
class OtpDemand:
    """A one-time code the vendor sent for this account, waiting for ``submit_code``."""

    sent_to: str
    asked_at: float


class HyundaiKiaSession(HyundaiKiaConnection):
    """The login life cycle of one account: cool-downs after refusals, one-time codes, ``_call``."""

    def __init__(self, account: Any, store: StateStore, **kwargs: Any):
        super().__init__(account, store, **kwargs)
        self._blocked: AuthError | None = None
        self._blocked_until = 0.0
        self._otp: OtpDemand | None = None

    def _adopt_stored_token(self) -> bool:
        """A token another process stored (``mqttbridge login`` after a code) replaces a refused login."""
        token = self._read_token()
        if token is None or token_to_json(token) == self._saved:
            return False
        register_token(token)
        self.manager.token = token
        self._saved = token_to_json(token)
        self._restore_device(token)
        self._blocked, self._blocked_until, self._otp = None, 0.0, None
        log.info("%s: using the token stored by another mqttbridge process (mqttbridge login)", self.account.name)
        return True

    # --- calls ----------------------------------------------------------------------------------

    def _still_blocked(self, now: float) -> AuthError:
        """The refusal that started the cool-down, said again without asking the vendor."""
        blocked = self._blocked
        assert blocked is not None
        wait = int(self._blocked_until - now)
        if isinstance(blocked, ActionRequiredError):
            return ActionRequiredError(
                f"{blocked} (not asking the vendor again for {wait} s)",
                kind=blocked.kind,
                details=blocked.details,
                vendor_code=blocked.vendor_code,
            )
        return type(blocked)(
            f"{blocked} (not asking the vendor again for {wait} s; restart mqttbridge after fixing it)",
            vendor_code=blocked.vendor_code,
        )

    def _ensure_session(self, meter: Meter) -> None:
        """A valid token and the vehicle list, at most one login; refused logins cool down first."""
        what = f"{self.account.name}: login to {self.brand_name} {self.region}"
        if self._blocked is not None or self.manager.token is None:
            self._adopt_stored_token()
        if self._blocked is not None:
            now = self.clock()
            if now < self._blocked_until:
                raise self._still_blocked(now)
            self._blocked = None
        try:
            self.manager.check_and_refresh_token()
        except Exception as exc:
            answer = limit_answer(meter.exchanges)
            if answer is not None:
                raise rate_limited(answer, what) from None
            if isinstance(exc, AuthenticationOTPRequired):
                self._otp_demand(meter, what)
                return  # the library logged in without a code after all
            self._block(exc, what)
        finally:
            self._persist_token()

    def _block(self, exc: Exception, what: str) -> None:
        """Raise ``exc`` as ours; a refused login or a demand on the user also starts the cool-down."""
        error = backend_error(exc, what)
        if isinstance(error, AuthError):
            action = isinstance(error, ActionRequiredError)
            self._blocked = error
            self._blocked_until = self.clock() + (ACTION_COOLDOWN_S if action else AUTH_COOLDOWN_S)
            log.error("%s", error)
        raise error from None

    def _demand(self, error: ActionRequiredError) -> None:
        self._blocked = error
        self._blocked_until = self.clock() + ACTION_COOLDOWN_S
        log.error("%s", error)
        raise error

    def _otp_demand(self, meter: Meter, what: str) -> None:
        """The vendor wants a one-time code: have it sent once (e-mail, else SMS) and say where.

        Raises ActionRequiredError(kind="otp"); returns only when the library logged in without one.
        """
        unsupported = OTP_UNSUPPORTED_MESSAGE.format(version=library_version(), region=self.region)
        if not self.takes_codes():
            self._demand(ActionRequiredError(f"{what}: {unsupported}", kind="otp"))
        if getattr(self.manager, "otp_request", None) is None:  # a refresh asked for it: the login has the request
            try:
                if self.manager.login() is True:
                    return
            except Exception as exc:
                answer = limit_answer(meter.exchanges)
                if answer is not None:
                    raise rate_limited(answer, what) from None
                self._block(exc, what)
        request = getattr(self.manager, "otp_request", None)
        if request is None:
            self._demand(ActionRequiredError(f"{what}: {unsupported}", kind="otp"))
        email = bool(getattr(request, "has_email", False)) or not getattr(request, "has_sms", False)
        channel, sent_to = (OTP_NOTIFY_TYPE.EMAIL, "e-mail") if email else (OTP_NOTIFY_TYPE.SMS, "SMS")
        try:
            self.manager.send_otp(channel)
        except Exception as exc:
            answer = limit_answer(meter.exchanges)
            if answer is not None:
                raise rate_limited(answer, what) from None
            self._block(exc, f"{what}: sending the one-time code by {sent_to}")
        self._otp = OtpDemand(sent_to=sent_to, asked_at=self.clock())
        until = (self._now() + timedelta(seconds=ACTION_COOLDOWN_S)).isoformat(timespec="minutes")
        message = OTP_SENT_MESSAGE.format(sent_to=sent_to, until=until)
        self._demand(ActionRequiredError(f"{what}: {message}", kind="otp", details={"sent_to": sent_to}))

    def _failure(self, exc: Exception, meter: Meter, what: str, *, command: bool = False) -> MqttBridgeError:
        """A failed library call as ours: a limit answer among its requests first, whatever was raised."""
        answer = limit_answer(meter.exchanges)
        if answer is not None:
            return rate_limited(answer, what)
        return backend_error(exc, what, command=command)

    def _call(self, what: str, work: Callable[[], T], *, command: bool = False) -> T:
        """``work`` with a valid session; a refused token is renewed and the work tried once more
        (the vendor did not act on a request it refused for its token)."""
        with self._lock, metered() as meter:
            try:
                self._ensure_session(meter)
                try:
                    return work()
                except AuthenticationError as exc:
                    if isinstance(exc, AuthenticationOTPRequired | ConsentRequiredError):
                        raise
                    if limit_answer(meter.exchanges) is not None:
                        raise  # a limit answer the library took for a refused token: no renewal
                    log.info("%s: the vendor refused the token; renewing it", self.account.name)
                    self._invalidate_token()
                self._ensure_session(meter)
                try:
                    return work()
                except AuthenticationError:
                    self._invalidate_token()
                    raise
            except MqttBridgeError:
                raise
            except Exception as exc:
                error = self._failure(exc, meter, what, command=command)
                if isinstance(exc, AuthenticationOTPRequired) and not isinstance(error, RateLimitedError):
                    self._otp_demand(meter, what)  # a re-login inside the library asked for it
                if isinstance(exc, ConsentRequiredError) and not isinstance(error, RateLimitedError):
                    self._block(exc, what)
                raise error from None
            finally:
                self._persist_token()
                self._count(meter)

    # --- one-time codes -------------------------------------------------------------------------

    def takes_codes(self) -> bool:
        """Whether the library can complete a one-time code login in this region (US Kia, Canada)."""
        api = type(self.manager.api)
        return all(getattr(api, name, None) is not getattr(ApiImpl, name, None) for name in OTP_METHODS)

    def login(self) -> None:
        """Log in now (``mqttbridge login``): the stored token when the vendor takes it, else a login; an
        OTP demand raises ActionRequiredError(kind="otp") once the code is sent, at most once an hour."""
        self._call(f"{self.account.name}: login", lambda: None)

    def submit_code(self, kind: str, code: str) -> None:
        """Complete the login that asked for a one-time code; at any time, whatever the cool-down."""
        name = self.account.name
        if kind != "otp":
            raise UnsupportedError(f"{name}: a {kind} demand is answered in the vendor's app, not with a code")
        if not self.takes_codes():
            message = OTP_UNSUPPORTED_MESSAGE.format(version=library_version(), region=self.region)
            raise UnsupportedError(f"{name}: {message}")
        what = f"{name}: one-time code"
        with self._lock, metered() as meter:
            if self._otp is None or getattr(self.manager, "otp_request", None) is None:
                raise AuthError(
                    f"{name}: no login is waiting for a one-time code (it was completed, or mqttbridge restarted "
                    "since it was sent); `mqttbridge login` asks the vendor for a new one"
                )
            before = self.manager.token
            try:
                self.manager.verify_otp_and_complete_login(code.strip())
            except Exception as exc:
                if self.manager.token is None or self.manager.token is before:
                    error = self._failure(exc, meter, what)
                    if isinstance(error, TransientError | RateLimitedError):
                        raise error from None
                    raise AuthError(
                        f"{name}: the one-time code was not accepted (wrong, or expired); send it again, or "
                        "get a new one with `mqttbridge login`"
                    ) from None
                # logged in; only the vehicle list after it failed: the next call lists them
                log.warning("%s: logged in, but listing the vehicles failed: %s", name, type(exc).__name__)
            finally:
                self._persist_token()
                self._count(meter)
            self.manager.otp_request = None
            self._otp, self._blocked, self._blocked_until = None, None, 0.0
            log.info("%s: logged in with the one-time code", name)
