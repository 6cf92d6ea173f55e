"""CarData's login: the OAuth device-code flow with PKCE, and the tokens it yields (bmw-cardata-facts §1).

Tokens (access, refresh and id token, the GCID, their expiries) live in ``state_dir`` (``tokens/<account>.json``,
0600) and are never logged. They are renewed about ten minutes before the first of them expires, or when the
API or the stream refused one. The refresh token rotates, so a refresh is serialised (a lock), starts from what
the store holds (another process may have rotated it) and saves the new tokens before anything uses them. A
refresh token BMW no longer takes discards the tokens and starts the device flow again.

Without usable tokens a code is requested, and ONE background thread polls the token endpoint as BMW allows
(``interval``, +5 s on ``slow_down``); callers meanwhile get ``ActionRequiredError(kind="device_code")`` with
the same details while the same code is pending. A code that expires, is declined or is spoilt by BMW's
gateway fault is replaced by a new one, which the login listener hears of; declines are bounded.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import requests
import tenacity

from mqttbridge.backends.base import RetryPolicy
from mqttbridge.errors import ActionRequiredError, AuthError, BadResponseError, ConnectionFailed, ServerError
from mqttbridge.logsetup import register_secret
from mqttbridge.statestore import StateStore

from .tokens import Answer, DeviceCode, Tokens, iso, pkce_pair

log = logging.getLogger(__name__)

SCOPE = "authenticate_user openid cardata:api:read cardata:streaming:read"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_PATH = "/gcdm/oauth/device/code"
TOKEN_PATH = "/gcdm/oauth/token"
#: added to the polling interval on ``slow_down`` (RFC 8628, as the clients do)
SLOW_DOWN_S = 5.0
#: after a declined code (or BMW's gateway fault, which spoils the code): a pause before a new code
DECLINE_PAUSE_S = 60.0
#: declined codes in a row after which the flow stops until ``DECLINE_COOLDOWN_S`` passed or ``login()`` is called
MAX_DECLINES = 3
DECLINE_COOLDOWN_S = 3600.0


class _Again(Exception):
    """The device poll goes on after ``wait`` seconds."""

    def __init__(self, wait: float):
        super().__init__(f"poll again in {wait} s")
        self.wait = wait


class CarDataAuth:
    """One account's tokens and its device-code login."""

    def __init__(
        self,
        account: Any,
        store: StateStore,
        *,
        session: requests.Session,
        clock: Callable[[], float],
        closing: threading.Event,
        wait: Callable[[float], None],
        policy: RetryPolicy,
        listener: Callable[[], Any] = lambda: None,
    ):
        self.account = account
        self.store = store
        self.session = session
        self.clock = clock
        self.closing = closing
        self.wait = wait
        self.policy = policy
        self.listener = listener
        self.base = str(account.auth_url).rstrip("/")
        self.file = f"tokens/{account.name}.json"
        self.identity = hashlib.sha256(f"bmw_cardata|{self.base}|{account.client_id}".encode()).hexdigest()[:16]
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()
        self._tokens: Tokens | None = None
        self._device: DeviceCode | None = None
        self._thread: threading.Thread | None = None
        self._failed: AuthError | None = None
        self._failed_until = 0.0
        self._declines = 0
        #: told of every new set of tokens (the stream re-connects with the new id token)
        self.on_tokens: list[Callable[[Tokens], None]] = []
        register_secret(account.client_id)
        self._tokens = self._read()

    # --- the store ---------------------------------------------------------------------------------------

    def _read(self) -> Tokens | None:
        data = self.store.read_json(self.file)
        if not isinstance(data, dict) or data.get("identity") != self.identity:
            return None
        try:
            tokens = Tokens(**{k: v for k, v in data.items() if k != "identity"})
        except TypeError:
            return None
        tokens.register()
        return tokens

    def _save(self, tokens: Tokens) -> None:
        tokens.register()
        self.store.write_json(self.file, {"identity": self.identity, **asdict(tokens)})
        with self._lock:
            self._tokens = tokens

    def discard(self) -> None:
        with self._lock:
            self._tokens = None
            self.store.delete(self.file)

    def current(self) -> Tokens | None:
        """The tokens held, else those another process (``mqttbridge login``) stored meanwhile."""
        with self._lock:
            if self._tokens is None:
                self._tokens = self._read()
            return self._tokens

    # --- usable tokens -----------------------------------------------------------------------------------

    def tokens(self) -> Tokens:
        """Usable tokens, renewed when due; ``ActionRequiredError`` while a login is needed."""
        tokens = self.current()
        if tokens is None or tokens.refresh_expires_at <= self.clock():
            if tokens is not None:
                self.discard()
            raise self.need_login("no usable CarData tokens")
        if tokens.renew_at <= self.clock():
            tokens = self.renew()
        return tokens

    def login(self) -> None:
        """For ``mqttbridge login``: returns once logged in, ``ActionRequiredError`` while a code is pending."""
        with self._lock:
            if self._failed is not None and not self._flowing():
                self._failed, self._declines = None, 0  # the user asks again: a new flow
        self.tokens()

    def renew(self, rejected: Tokens | None = None) -> Tokens:
        """Refresh the tokens: when due, or at once when ``rejected`` (refused by BMW) is still the current one."""
        with self._refresh_lock:
            with self._lock:
                self._tokens = self._read() or self._tokens  # another process may have rotated them
                current = self._tokens
            if current is None:
                raise self.need_login("no usable CarData tokens")
            if rejected is not None and current.access_token != rejected.access_token:
                return current  # renewed meanwhile
            if rejected is None and current.renew_at > self.clock():
                return current
            form = {
                "grant_type": "refresh_token",
                "refresh_token": current.refresh_token,
                "client_id": self.account.client_id,
            }
            answer = self._retrying()(self._post, TOKEN_PATH, form, "CarData token refresh")
            if answer.status == 200:
                tokens = Tokens.from_answer(answer.body, self.clock(), current)
                self._save(tokens)  # the old refresh token is dead now: the new one is saved first
                log.info("%s: CarData tokens renewed", self.account.name)
            elif answer.status == 401 and answer.error == "invalid_client":
                raise AuthError(
                    f"{self.account.name}: BMW does not know the client_id ({answer.said()}); check it in the "
                    "BMW portal (CarData client)",
                    http_status=401,
                )
            elif 400 <= answer.status < 500:
                self.discard()
                raise self.need_login(
                    f"BMW refused the refresh token ({answer.said()}); the stored tokens were discarded and a "
                    "new device-code login was started"
                )
            else:
                raise BadResponseError(f"CarData token refresh: HTTP {answer.status} ({answer.said()})")
        self._tell_tokens(tokens)
        return tokens

    def _tell_tokens(self, tokens: Tokens) -> None:
        for callback in list(self.on_tokens):
            try:
                callback(tokens)
            except Exception:
                log.exception("%s: a token listener failed (ignored)", self.account.name)

    # --- HTTP --------------------------------------------------------------------------------------------

    def _post(self, path: str, form: dict[str, str], what: str) -> Answer:
        try:
            response = self.session.post(
                self.base + path, data=form, headers={"Accept": "application/json"}, timeout=float(self.account.timeout)
            )
        except requests.RequestException as exc:
            raise ConnectionFailed(f"{what}: {type(exc).__name__}", sent=True) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        answer = Answer(response.status_code, body)
        if response.status_code >= 500 and not (isinstance(body, dict) and "fault" in body):
            raise ServerError(
                f"{what}: HTTP {response.status_code} ({answer.said()})", http_status=response.status_code
            )
        return answer

    def _retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.policy.attempts) | tenacity.stop_when_event_set(self.closing),
            wait=tenacity.wait_exponential(multiplier=self.policy.backoff_initial, max=self.policy.backoff_max),
            retry=tenacity.retry_if_exception_type((ConnectionFailed, ServerError)),
            sleep=self.wait,
            reraise=True,
        )

    # --- the device flow ---------------------------------------------------------------------------------

    def _flowing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def need_login(self, reason: str) -> AuthError:
        """The error for callers while no tokens are usable; starts the flow (and its thread) when none runs."""
        with self._lock:
            if self._failed is not None:
                if self.clock() < self._failed_until or self._failed_until == 0.0:
                    return self._failed
                self._failed, self._declines = None, 0
            device = self._device
            if device is None or device.expires_at <= self.clock():
                device = self._new_code()
            if not self._flowing() and not self.closing.is_set():
                self._thread = threading.Thread(
                    target=self._run_flow, name=f"cardata-login-{self.account.name}", daemon=True
                )
                self._thread.start()
            return self._action(device, reason)

    def _action(self, device: DeviceCode, reason: str) -> ActionRequiredError:
        details = device.details()
        return ActionRequiredError(
            f"{self.account.name}: {reason}; open {details['verification_uri']} and enter the code "
            f"{device.user_code} before {details['expires_at']} (or run `mqttbridge login`)",
            kind="device_code",
            details=details,
        )

    def _new_code(self) -> DeviceCode:
        verifier, challenge = pkce_pair()
        form = {
            "client_id": self.account.client_id,
            "response_type": "device_code",
            "scope": SCOPE,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        answer = self._retrying()(self._post, DEVICE_PATH, form, "CarData device code")
        body = answer.body if isinstance(answer.body, dict) else {}
        if answer.status != 200 or not isinstance(body.get("device_code"), str):
            raise AuthError(
                f"{self.account.name}: BMW refused a device code ({answer.said()}, HTTP {answer.status}); check the "
                "client_id and that it is subscribed to CarData API and CarData Stream in the BMW portal",
                http_status=answer.status,
            )
        register_secret(body["device_code"])
        interval = body.get("interval")
        expires = body.get("expires_in")
        device = DeviceCode(
            user_code=str(body.get("user_code") or ""),
            device_code=body["device_code"],
            verifier=verifier,
            verification_uri=str(body.get("verification_uri") or "https://customer.bmwgroup.com/oneid/link"),
            interval=float(interval) if isinstance(interval, int | float) and interval > 0 else 5.0,
            expires_at=self.clock() + (float(expires) if isinstance(expires, int | float) and expires > 0 else 300.0),
        )
        self._device = device
        log.info(
            "%s: CarData login: enter the code %s at %s", self.account.name, device.user_code, device.verification_uri
        )
        return device

    def _run_flow(self) -> None:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Again),
            wait=lambda state: state.outcome.exception().wait if state.outcome else 0.0,  # type: ignore[union-attr]
            stop=tenacity.stop_when_event_set(self.closing),
            sleep=self.wait,
            reraise=True,
        )
        try:
            retrying(self._poll_once)
        except _Again:
            log.debug("%s: CarData login polling stopped (closing)", self.account.name)
        except Exception as exc:  # the thread ends; the next call needing tokens starts a new flow
            log.warning("%s: CarData login polling failed: %s", self.account.name, exc)
            with self._lock:
                self._device = None

    def _announce(self, device: DeviceCode, reason: str) -> None:
        listener = self.listener()
        if listener is not None:
            try:
                listener.login_required(self._action(device, reason))
            except Exception:
                log.exception("%s: the login listener failed (ignored)", self.account.name)

    def _poll_once(self) -> None:
        if self.closing.is_set():
            return
        if self.current() is not None:  # `mqttbridge login` (another process) stored tokens meanwhile
            return self._completed(None)
        with self._lock:
            device = self._device
        if device is None or device.expires_at <= self.clock():
            with self._lock:
                device = self._new_code()
            self._announce(device, "the previous code expired or was refused; a new code")
            device.polled = True
            raise _Again(device.interval)
        if not device.polled:  # the first poll only after one interval
            device.polled = True
            raise _Again(device.interval)
        form = {
            "client_id": self.account.client_id,
            "device_code": device.device_code,
            "grant_type": DEVICE_GRANT,
            "code_verifier": device.verifier,
        }
        try:
            answer = self._post(TOKEN_PATH, form, "CarData login poll")
        except (ConnectionFailed, ServerError) as exc:
            log.info("%s: %s; polling on", self.account.name, exc)
            raise _Again(device.interval) from None
        error = answer.error
        if answer.status == 200:
            return self._completed(Tokens.from_answer(answer.body, self.clock()))
        if error == "slow_down":
            device.interval += SLOW_DOWN_S
            raise _Again(device.interval)
        if error == "authorization_pending" or (answer.status == 403 and not error):
            raise _Again(device.interval)
        if error == "expired_token":
            with self._lock:
                self._device = None
            raise _Again(0.0)
        if error == "access_denied" or answer.status >= 500:
            what = "declined the login" if error == "access_denied" else f"answered {answer.said()}"
            with self._lock:
                self._device = None
                self._declines += 1
                if self._declines >= MAX_DECLINES:
                    self._failed = AuthError(
                        f"{self.account.name}: BMW {what} {self._declines} times in a row; no new code until "
                        f"{iso(self.clock() + DECLINE_COOLDOWN_S)} or `mqttbridge login`"
                    )
                    self._failed_until = self.clock() + DECLINE_COOLDOWN_S
                    log.warning("%s", self._failed)
                    return None
            log.warning(
                "%s: CarData login: BMW %s for code %s; a new code in %.0f s",
                self.account.name,
                what,
                device.user_code,
                DECLINE_PAUSE_S,
            )
            raise _Again(DECLINE_PAUSE_S)
        with self._lock:  # invalid_client, invalid_request: no code will help
            self._device = None
            self._failed = AuthError(
                f"{self.account.name}: BMW refused the login ({answer.said()}, HTTP {answer.status}); check the "
                "client_id and its CarData subscriptions in the BMW portal, then run `mqttbridge login`",
                http_status=answer.status,
            )
            self._failed_until = 0.0
        log.error("%s", self._failed)
        return None

    def _completed(self, tokens: Tokens | None) -> None:
        if tokens is not None:
            self._save(tokens)
        with self._lock:
            self._device = None
            self._declines = 0
            self._failed = None
            current = self._tokens
        log.info("%s: CarData login completed", self.account.name)
        if current is not None:
            self._tell_tokens(current)
        listener = self.listener()
        if listener is not None:
            try:
                listener.login_completed()
            except Exception:
                log.exception("%s: the login listener failed (ignored)", self.account.name)
