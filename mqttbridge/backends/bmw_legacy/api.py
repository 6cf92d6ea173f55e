"""HTTP to the legacy BMW ConnectedDrive API: servers, login, tokens, retries, error mapping.

Only this module knows about HTTP; it hands JSON to the parser and raises ``mqttbridge.errors``
classes. Retries are tenacity's: reads retry connection failures, 5xx and 429; a command POST
retries only what certainly never reached the server (no connection, a 429 refusal, a 401 before
a fresh login), because a resent unlock is worse than a reported failure.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
import tenacity
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from mqttbridge import __version__
from mqttbridge.backends.base import RetryPolicy
from mqttbridge.errors import (
    AccessDeniedError,
    ApiGoneError,
    AuthError,
    BackendError,
    BadResponseError,
    CommandOutcomeUnknown,
    ConnectionFailed,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransientError,
    VehicleUnavailableError,
)
from mqttbridge.logsetup import register_secret
from mqttbridge.statestore import StateStore

log = logging.getLogger(__name__)

SERVERS: dict[str, str] = {
    "rest_of_world": "https://b2vapi.bmwgroup.com",
    "north_america": "https://b2vapi.bmwgroup.us",
    "china": "https://b2vapi.bmwgroup.cn:8592",
}
TOKEN_PATHS: dict[str, str] = {
    "webapi": "/webapi/oauth/token",  # the documented path, until 2018-09
    "gcdm": "/gcdm/oauth/token",  # its replacement
}
API_PATH = "/webapi/v1"
SCOPE = "authenticate_user vehicle_data remote_services"
#: a token is renewed this long before the vendor says it expires
TOKEN_MARGIN_S = 60.0
#: after a refused login, no new attempt for this long: repeated wrong passwords lock accounts
AUTH_COOLDOWN_S = 600.0


@dataclass
class _Token:
    access_token: str
    expires_at: float


def _vendor_message(response: requests.Response) -> str:
    """The vendor's own words for an error, from whichever of its body shapes this is."""
    text = response.text or ""
    content_type = response.headers.get("Content-Type", "")
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("description") or error.get("code") or "")[:200]
        if isinstance(error, str):
            described = body.get("error_description")
            return f"{error}: {described}"[:200] if described else error[:200]
    if "html" in content_type.lower() or text.lstrip().startswith("<"):
        match = re.search(r"<(?:title|h1)[^>]*>([^<]{1,120})<", text, re.IGNORECASE)
        return f"HTML page {match.group(1).strip()!r}" if match else "an HTML page"
    if text:
        return f"a {len(text)}-byte {content_type or 'untyped'} body"
    return "an empty body"


def _retry_after(response: requests.Response, now: float) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def error_for_response(response: requests.Response, what: str, now: float) -> BackendError:
    """The exception class for a non-2xx answer: the table in the README's error section."""
    status = response.status_code
    said = _vendor_message(response)
    message = f"{what}: HTTP {status} ({said})"
    if status == 401:
        return AuthError(message, http_status=status)
    if status == 404:
        return NotFoundError(message, http_status=status)
    if status == 408:
        return VehicleUnavailableError(message, http_status=status)
    if status in (403, 405, 423):
        return AccessDeniedError(message, http_status=status)
    if status == 410:
        return ApiGoneError(f"{what}: HTTP 410 Gone ({said}); BMW retired this API", http_status=status)
    if status == 429:
        return RateLimitedError(message, retry_after=_retry_after(response, now))
    if status >= 500:
        return ServerError(message, http_status=status)
    return BackendError(message, http_status=status)


def _connection_failed(exc: requests.RequestException, what: str) -> ConnectionFailed:
    """Whether the request may have reached the server decides if a command may be resent."""
    sent = True
    if isinstance(exc, requests.ConnectTimeout):
        sent = False
    elif isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(reason, NewConnectionError | ConnectTimeoutError):
            sent = False
    kind = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
    detail = type(exc).__name__
    return ConnectionFailed(f"{what}: {kind} ({detail})", sent=sent)


class _Wait:
    """tenacity wait: the vendor's Retry-After when it gave one, else exponential back-off with jitter."""

    def __init__(self, policy: RetryPolicy):
        self._backoff = tenacity.wait_exponential(
            multiplier=policy.backoff_initial, max=policy.backoff_max
        ) + tenacity.wait_random(0, policy.backoff_initial)

    def __call__(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return exc.retry_after
        return self._backoff(state)


class BmwApi:
    """One account's session with the legacy API."""

    def __init__(
        self,
        account: Any,
        store: StateStore,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        policy: RetryPolicy | None = None,
        closing: threading.Event | None = None,
    ):
        self.account = account
        #: once set (the backend is closing), no further retry is made
        self._closing = closing or threading.Event()
        self.server = (account.base_url or SERVERS[account.region]).rstrip("/")
        self.token_path = TOKEN_PATHS[account.token_endpoint]
        self.timeout = float(account.timeout)
        self.policy = policy or RetryPolicy()
        self._session = session or requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._store = store
        self._token_file = f"tokens/{account.name}.json"
        self._identity = hashlib.sha256(
            f"bmw_legacy|{self.server}|{self.token_path}|{account.username}".encode()
        ).hexdigest()[:16]
        self._token: _Token | None = None
        self._token_loaded = False
        self._login_lock = threading.Lock()
        self._auth_error: AuthError | None = None
        self._auth_error_until = 0.0
        self.logins = 0
        for secret in (account.password, account.api_key, account.api_secret, account.security_answer):
            register_secret(secret)

    # --- tokens -----------------------------------------------------------------------------

    def _load_token(self) -> None:
        self._token_loaded = True
        data = self._store.read_json(self._token_file)
        if not isinstance(data, dict) or data.get("identity") != self._identity:
            return
        token, expires_at = data.get("access_token"), data.get("expires_at")
        if isinstance(token, str) and isinstance(expires_at, int | float):
            register_secret(token)
            self._token = _Token(token, float(expires_at))
            log.debug("%s: reusing the stored token", self.account.name)

    def _valid_token(self) -> _Token | None:
        if not self._token_loaded:
            self._load_token()
        token = self._token
        if token and token.expires_at - TOKEN_MARGIN_S > self._clock():
            return token
        return None

    def token(self) -> str:
        """A valid access token: the stored one until it expires, else one fresh login."""
        token = self._valid_token()
        if token:
            return token.access_token
        with self._login_lock:  # concurrent readers wait for one login instead of each doing one
            token = self._valid_token()
            if token:
                return token.access_token
            return self._login().access_token

    def invalidate(self, rejected: str) -> None:
        """Forget the token the vendor rejected (only that one: another thread may hold a newer)."""
        with self._login_lock:
            if self._token and self._token.access_token == rejected:
                self._token = None
                self._store.delete(self._token_file)

    def _login(self) -> _Token:
        now = self._clock()
        if self._auth_error is not None and now < self._auth_error_until:
            wait = int(self._auth_error_until - now)
            raise AuthError(f"{self._auth_error} (not trying again for {wait} s, to spare the account)")
        basic = base64.b64encode(f"{self.account.api_key}:{self.account.api_secret}".encode()).decode()
        form = {
            "grant_type": "password",
            "username": self.account.username,
            "password": self.account.password,
            "scope": SCOPE,
        }
        what = f"login to {self.server}{self.token_path}"

        try:  # no retry loop of its own: the request that needed the token retries as a whole
            response = self._send(
                "POST", self.server + self.token_path, what, headers={"Authorization": f"Basic {basic}"}, data=form
            )
        except AuthError as exc:
            self._refused(exc)
            raise
        except BackendError as exc:
            if exc.http_status in (400, 403):  # OAuth's invalid_grant / invalid_client
                refused = AuthError(str(exc), http_status=exc.http_status)
                self._refused(refused)
                raise refused from None
            raise
        body = self._json(response, what)
        access = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access:
            raise BadResponseError(f"{what}: the answer holds no access_token")
        register_secret(access)
        register_secret(body.get("refresh_token") if isinstance(body.get("refresh_token"), str) else None)
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 3600.0
        self._token = _Token(access, self._clock() + lifetime)
        self._auth_error = None
        self.logins += 1
        log.info("%s: logged in (token valid for %d s)", self.account.name, int(lifetime))
        self._store.write_json(
            self._token_file,
            {"identity": self._identity, "access_token": access, "expires_at": self._token.expires_at},
        )
        return self._token

    def _refused(self, exc: AuthError) -> None:
        self._auth_error = exc
        self._auth_error_until = self._clock() + AUTH_COOLDOWN_S
        self._token = None
        self._store.delete(self._token_file)

    # --- requests ---------------------------------------------------------------------------

    def _send(
        self, method: str, url: str, what: str, *, session: requests.Session | None = None, **kwargs: Any
    ) -> requests.Response:
        headers = {"Accept": "application/json", "User-Agent": f"mqttbridge/{__version__}"}
        headers.update(kwargs.pop("headers", {}))
        try:
            response = (session or self._session).request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise _connection_failed(exc, what) from None
        if response.status_code >= 400:
            raise error_for_response(response, what, self._clock())
        return response

    def _retrying(self, *, idempotent: bool, attempts: int | None = None) -> tenacity.Retrying:
        policy = self.policy

        def should_retry(exc: BaseException) -> bool:
            if isinstance(exc, RateLimitedError):
                return exc.retry_after is None or exc.retry_after <= policy.max_retry_after
            if isinstance(exc, ConnectionFailed):
                return idempotent or not exc.sent
            return idempotent and isinstance(exc, TransientError)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0
            log.warning("%s; retry %d in %.1f s", exc, state.attempt_number, wait)

        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts or policy.attempts) | tenacity.stop_when_event_set(self._closing),
            wait=_Wait(policy),
            retry=tenacity.retry_if_exception(should_retry),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

    @staticmethod
    def _json(response: requests.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise BadResponseError(
                f"{what}: HTTP {response.status_code} with {_vendor_message(response)}, not JSON"
            ) from None

    def _authorised(
        self, method: str, path: str, what: str, *, session: requests.Session | None = None, **kwargs: Any
    ) -> requests.Response:
        """One request with the Bearer token; on a 401 one fresh login and one more try."""
        url = f"{self.server}{API_PATH}{path}"
        extra = dict(kwargs.pop("headers", {}))
        token = self.token()
        try:
            return self._send(
                method, url, what, session=session, headers={**extra, "Authorization": f"Bearer {token}"}, **kwargs
            )
        except AuthError:
            log.info("%s: token refused; logging in again", self.account.name)
            self.invalidate(token)
        token = self.token()
        return self._send(
            method, url, what, session=session, headers={**extra, "Authorization": f"Bearer {token}"}, **kwargs
        )

    def get(self, path: str, what: str, params: Mapping[str, str] | None = None, attempts: int | None = None) -> Any:
        response = self._retrying(idempotent=True, attempts=attempts)(
            self._authorised, "GET", path, what, params=params
        )
        return self._json(response, what)

    def post_command(self, path: str, what: str, form: Mapping[str, str]) -> Any:
        """A command POST, each attempt on a new connection: a stale pooled one would turn a
        harmless refusal into doubt about whether the car got the command."""

        def attempt() -> requests.Response:
            with requests.Session() as fresh:
                return self._authorised(
                    "POST", path, what, data=dict(form), session=fresh, headers={"Connection": "close"}
                )

        try:
            response = self._retrying(idempotent=False)(attempt)
        except ConnectionFailed as exc:
            if exc.sent:
                raise CommandOutcomeUnknown(
                    f"{exc}; the command may have reached the vendor, so it is not sent again"
                ) from None
            raise
        return self._json(response, what)

    def close(self) -> None:
        self._session.close()


def device_time(now: datetime | None = None) -> str:
    """The ``deviceTime`` query bimmer_connected sent with status reads (local time, no zone)."""
    return (now or datetime.now()).strftime("%Y-%m-%dT%H:%M:%S")
