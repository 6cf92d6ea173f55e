"""CarData's REST API (bmw-cardata-facts §2): 50 requests a day per BMW account, so every request is counted
and as few as possible are made.

At start: the mappings, once ever per car its basic data (kept in ``state_dir``), and per read one
``telematicData`` call through our one data container. The container is found by listing (name and purpose,
whose tag is a digest of our key set) or created once; its id is kept in ``state_dir`` and reused across
restarts; stale containers of ours (another key set, a duplicate) are deleted. Errors are told apart by
``exveErrorId``: CU-429 (an HTTP 403) is the day's quota, remembered until 00:00 UTC so a restart does not
spend a call to learn it again.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import tenacity

from mqttbridge.backends.base import RetryPolicy
from mqttbridge.errors import (
    AccessDeniedError,
    AuthError,
    BackendError,
    BadResponseError,
    ConnectionFailed,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransientError,
)
from mqttbridge.statestore import StateStore

from .auth import CarDataAuth, Tokens

log = logging.getLogger(__name__)

CONTAINER_NAME = "mqttbridge"
PURPOSE_PREFIX = "mqttbridge "
#: the access token was refused: renew it once and try once more
TOKEN_CODES = frozenset({"CU-100", "CU-101", "CU-102", "CU-127"})
#: what a deleted container may answer on a second delete: already gone
GONE_CODES = frozenset({"CU-122", "CU-105"})


class TokenRefused(AuthError):
    """BMW refused the access token (CU-100/101/102/127, or a bare 401)."""


class ContainerGone(BackendError):
    """CU-105: the container is not ours (any more)."""


class TooManyContainers(BackendError):
    """CU-124: the account already has the 10 containers BMW allows."""


#: a CU-429 this soon after our 00:00 UTC is the old day's answer from a server whose clock is behind ours:
#: the quota resets within minutes, not tomorrow (else one second of clock skew would cost a whole day)
RESET_SKEW_S = 600.0


def seconds_to_midnight_utc(now: float) -> float:
    """Until BMW's quota resets: the next 00:00 UTC, or the end of the skew window just after one."""
    moment = datetime.fromtimestamp(now, UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    since = now - midnight.timestamp()
    if since < RESET_SKEW_S:
        return max(1.0, RESET_SKEW_S - since)
    return max(1.0, (midnight + timedelta(days=1)).timestamp() - now)


def _retry_after(response: requests.Response, now: float) -> float | None:
    value = (response.headers.get("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now) if value else None
    except (TypeError, ValueError):
        return None


def error_for(response: requests.Response, what: str, now: float) -> BackendError:
    """The exception for a CarData error answer, by ``exveErrorId`` first, then by HTTP status."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    code = str(body.get("exveErrorId") or "") or None
    said = f"{code}: {body.get('exveErrorMsg') or ''}".rstrip(": ") if code else f"{len(response.content)}-byte body"
    message = f"{what}: HTTP {status} ({said})"
    if code == "CU-429" or status == 429:
        wait = _retry_after(response, now)
        return RateLimitedError(
            f"{message}; BMW's 50 calls a day are spent until 00:00 UTC",
            retry_after=wait if wait is not None else seconds_to_midnight_utc(now),
            http_status=status,
            vendor_code=code,
        )
    if code in TOKEN_CODES or (status == 401 and code is None):
        return TokenRefused(message, http_status=status, vendor_code=code)
    if code == "CU-103":
        return AuthError(
            f"{message}: the token is not valid for the CarData API; subscribe the CarData client to "
            "'CarData API' in the BMW portal, then log in again (the bridge starts a new login)",
            http_status=status,
            vendor_code=code,
        )
    if code == "CU-104":
        return AccessDeniedError(
            f"{message}: this BMW account is not the car's primary user, or the car is not mapped to it",
            http_status=status,
            vendor_code=code,
        )
    if code == "CU-105":
        return ContainerGone(message, http_status=status, vendor_code=code)
    if code == "CU-124":
        return TooManyContainers(message, http_status=status, vendor_code=code)
    if status >= 500:
        return ServerError(message, http_status=status, vendor_code=code)
    if status == 404:
        return NotFoundError(message, http_status=status, vendor_code=code)
    if status == 403:
        return AccessDeniedError(message, http_status=status, vendor_code=code)
    return BackendError(message, http_status=status, vendor_code=code)


def container_purpose(keys: Sequence[str]) -> str:
    """``mqttbridge <tag>``: the tag changes with the key set only, never with our version."""
    return PURPOSE_PREFIX + hashlib.sha256("\n".join(sorted(set(keys))).encode()).hexdigest()[:12]


class CarDataRest:
    """The REST client of one account; ``take_calls`` says how many requests this thread made."""

    def __init__(
        self,
        account: Any,
        store: StateStore,
        auth: CarDataAuth,
        *,
        keys: Sequence[str],
        session: requests.Session,
        clock: Callable[[], float],
        closing: threading.Event,
        wait: Callable[[float], None],
        policy: RetryPolicy,
    ):
        self.account = account
        self.store = store
        self.auth = auth
        self.keys = sorted(set(keys))
        self.purpose = container_purpose(self.keys)
        self.session = session
        self.clock = clock
        self.closing = closing
        self.wait = wait
        self.policy = policy
        self.base = str(account.api_url).rstrip("/")
        self.file = f"cardata/{account.name}.json"
        self._local = threading.local()
        self._lock = threading.RLock()
        self._container_lock = threading.Lock()
        self._secondary_told: set[str] = set()
        data = store.read_json(self.file)
        self._state: dict[str, Any] = data if isinstance(data, dict) and data.get("identity") == auth.identity else {}
        self._state["identity"] = auth.identity

    # --- counting and the store --------------------------------------------------------------------------

    def take_calls(self) -> int:
        made = int(getattr(self._local, "calls", 0))
        self._local.calls = 0
        return made

    def _save(self, **changes: Any) -> None:
        with self._lock:
            self._state.update(changes)
            self.store.write_json(self.file, dict(self._state))

    # --- requests ----------------------------------------------------------------------------------------

    def _send(self, tokens: Tokens, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {tokens.access_token}", "x-version": "v1", "Accept": "application/json"}
        self._local.calls = int(getattr(self._local, "calls", 0)) + 1
        try:
            response = self.session.request(
                method, self.base + path, headers=headers, timeout=float(self.account.timeout), **kwargs
            )
        except requests.RequestException as exc:
            raise ConnectionFailed(
                f"{what}: {type(exc).__name__}", sent=not isinstance(exc, requests.ConnectTimeout)
            ) from None
        if response.status_code >= 400:
            error = error_for(response, what, self.clock())
            if isinstance(error, RateLimitedError) and error.retry_after:
                self._save(quota_until=self.clock() + error.retry_after)
            raise error
        return response

    def _authorised(self, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        until = float(self._state.get("quota_until") or 0.0)
        if until > self.clock():  # learnt earlier (maybe before a restart): no call spent to hear it again
            raise RateLimitedError(
                f"{what}: BMW's 50 calls a day are spent", retry_after=until - self.clock(), http_status=None
            )
        tokens = self.auth.tokens()
        try:
            return self._send(tokens, method, path, what, **kwargs)
        except TokenRefused as exc:
            log.info("%s: %s; renewing the token once", self.account.name, exc)
        tokens = self.auth.renew(rejected=tokens)
        try:
            return self._send(tokens, method, path, what, **kwargs)
        except TokenRefused as exc:
            raise AuthError(f"{exc}, also with a renewed token", http_status=exc.http_status) from None

    def call(self, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        """One request, retried (few times: each costs quota) on 5xx and lost connections."""
        try:
            return tenacity.Retrying(
                stop=tenacity.stop_after_attempt(self.policy.attempts) | tenacity.stop_when_event_set(self.closing),
                wait=tenacity.wait_exponential(multiplier=self.policy.backoff_initial, max=self.policy.backoff_max),
                retry=tenacity.retry_if_exception_type(TransientError),
                sleep=self.wait,
                reraise=True,
            )(self._authorised, method, path, what, **kwargs)
        except AuthError as exc:
            if exc.vendor_code == "CU-103":
                self.auth.discard()
            raise

    def get_json(self, path: str, what: str, **kwargs: Any) -> Any:
        response = self.call("GET", path, what, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise BadResponseError(f"{what}: HTTP {response.status_code}, not JSON") from None

    # --- the account's cars ------------------------------------------------------------------------------

    def mappings(self) -> list[dict[str, Any]]:
        """The PRIMARY mappings (a JSON array; ``{"mappings": [...]}`` too); other types are logged once."""
        body = self.get_json("/customers/vehicles/mappings", "CarData mappings")
        items = body.get("mappings") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise BadResponseError("CarData mappings: neither a list nor {'mappings': [...]}")
        primary = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("vin"), str):
                continue
            kind = str(item.get("mappingType") or "").upper()
            if kind == "PRIMARY":
                primary.append(item)
            elif item["vin"] not in self._secondary_told:
                self._secondary_told.add(item["vin"])
                log.warning(
                    "%s: car %s is mapped as %s: only its primary user can read it through CarData; not bridged",
                    self.account.name,
                    item["vin"],
                    kind or "unknown",
                )
        return primary

    def basic_data(self, vin: str, *, cached: bool = True) -> dict[str, Any] | None:
        """The car's basic data: fetched once ever, then from ``state_dir``."""
        known = self._state.get("basic", {})
        if cached and isinstance(known.get(vin), dict):
            return dict(known[vin])
        body = self.get_json(f"/customers/vehicles/{vin}/basicData", f"CarData basic data of {vin}")
        if not isinstance(body, dict):
            raise BadResponseError(f"CarData basic data of {vin}: not an object")
        self._save(basic={**known, vin: body})
        return body

    def telematic(self, vin: str) -> Any:
        """``telematicData`` of our container (made again once when BMW says it is gone)."""
        what = f"CarData telematic data of {vin}"
        container = self.container_id()
        try:
            return self.get_json(f"/customers/vehicles/{vin}/telematicData", what, params={"containerId": container})
        except ContainerGone:
            log.warning("%s: our CarData container %s is gone; making a new one", self.account.name, container)
            self._forget(container)
        container = self.container_id(create=True)
        return self.get_json(f"/customers/vehicles/{vin}/telematicData", what, params={"containerId": container})

    # --- the container -----------------------------------------------------------------------------------

    def _forget(self, container: str) -> None:
        with self._container_lock:
            if self._state.get("container_id") == container:
                self._save(container_id=None)

    def container_id(self, *, create: bool = False) -> str:
        """Our container: the stored one, else found by listing (or, after CU-105, ``create``d straight away)."""
        with self._container_lock:
            known = self._state.get("container_id")
            if isinstance(known, str) and known and self._state.get("purpose") == self.purpose:
                return known
            found = None if create else self._find()
            return found or self._create()

    def _list(self) -> list[dict[str, Any]]:
        body = self.get_json("/customers/containers", "CarData container list")
        items = body.get("containers") if isinstance(body, dict) else body
        return [c for c in items if isinstance(c, dict)] if isinstance(items, list) else []

    def _find(self) -> str | None:
        """Lists the containers once: keeps one of ours with our key set, deletes the other ones of ours."""
        ours = [
            c
            for c in self._list()
            if c.get("name") == CONTAINER_NAME
            and str(c.get("purpose") or "").startswith(PURPOSE_PREFIX)
            and str(c.get("state") or "ACTIVE").upper() == "ACTIVE"
        ]
        matching = sorted((c for c in ours if c.get("purpose") == self.purpose), key=lambda c: str(c.get("created")))
        keep = matching[0] if matching else None
        for stale in ours:
            if stale is not keep:
                self._delete(str(stale.get("containerId")))
        if keep is None:
            return None
        self._save(container_id=str(keep.get("containerId")), purpose=self.purpose)
        log.info("%s: reusing the CarData container %s", self.account.name, keep.get("containerId"))
        return str(keep.get("containerId"))

    def _delete(self, container: str) -> None:
        try:
            self.call(
                "DELETE", f"/customers/containers/{container}", f"deleting the stale CarData container {container}"
            )
            log.info("%s: deleted the stale CarData container %s", self.account.name, container)
        except (NotFoundError, ContainerGone):
            pass
        except BackendError as exc:
            if exc.vendor_code not in GONE_CODES:
                raise

    def _create(self, *, cleaned: bool = False) -> str:
        request = {"name": CONTAINER_NAME, "purpose": self.purpose, "technicalDescriptors": self.keys}
        try:
            response = self.call("POST", "/customers/containers", "creating the CarData container", json=request)
        except TooManyContainers:
            if cleaned:
                raise TooManyContainers(
                    "BMW allows 10 CarData containers per account and all are taken by other tools; delete one "
                    "that is no longer used (in that tool, or with DELETE /customers/containers/{id}) and restart",
                    http_status=403,
                    vendor_code="CU-124",
                ) from None
            found = self._find()  # deletes the stale ones of ours, if any
            return found or self._create(cleaned=True)
        try:
            body = response.json()
        except ValueError:
            body = None
        container = body.get("containerId") if isinstance(body, dict) else None
        if not isinstance(container, str) or not container:
            raise BadResponseError("creating the CarData container: the answer has no containerId")
        self._save(container_id=container, purpose=self.purpose)
        log.info("%s: created the CarData container %s (%d keys)", self.account.name, container, len(self.keys))
        return container
