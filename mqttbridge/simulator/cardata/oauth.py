"""BMW's device-code flow with PKCE and rotating refresh tokens, on the simulator's clock.

Statuses follow BMW's swagger, not RFC 8628: ``authorization_pending`` is a 403, ``expired_token`` a
401. Each client ID is one BMW account (GCID); every issued id_token becomes that account's stream
password through ``on_id_token``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .bodies import Bodies
from .clock import SimClock

logger = logging.getLogger(__name__)

__all__ = ["AccessToken", "Account", "DeviceCode", "OAuth"]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: the scopes a portal client subscribed to both services holds, in the order a real grant listed them
SUBSCRIBED = ("cardata:api:read", "openid", "cardata:streaming:read", "authenticate_user")
ACCESS_LIFETIME = 3599
ID_LIFETIME = 3600
REFRESH_LIFETIME = 14 * 86400
DEVICE_LIFETIME = 300
INTERVAL = 5
_GCID_NAMESPACE = uuid.UUID("6f1c1d0e-5a55-4c3b-9a0e-7c1d5e2b9a01")
_ALNUM = string.ascii_letters + string.digits

OAuthAnswer = tuple[int, bytes]


@dataclass
class Account:
    """One BMW account: a GCID, reached through one portal client ID."""

    client_id: str
    gcid: str
    id_token: str | None = None
    id_token_exp: float = 0.0


@dataclass
class DeviceCode:
    device_code: str
    user_code: str
    client_id: str
    challenge: str
    scope: tuple[str, ...]
    expires_at: float
    interval: int
    last_poll: float | None = None
    state: str = "pending"  # pending | approved | denied | used


@dataclass
class AccessToken:
    gcid: str
    client_id: str
    expires_at: float
    scope: tuple[str, ...]


@dataclass
class _Refresh:
    client_id: str
    expires_at: float
    scope: tuple[str, ...]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_challenge(verifier: str) -> str:
    """BASE64URL(SHA-256(verifier)) without padding (S256)."""
    return _b64(hashlib.sha256(verifier.encode("ascii", "replace")).digest())


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


class OAuth:
    """The token side of the simulated vendor: accounts, device codes, access and refresh tokens."""

    def __init__(
        self,
        clock: SimClock,
        bodies: Bodies,
        issuer: Callable[[], str],
        on_id_token: Callable[[Account], None] = lambda _a: None,
        refresh_lifetime: float = REFRESH_LIFETIME,
    ):
        self._clock = clock
        self._bodies = bodies
        self._issuer = issuer
        self._on_id_token = on_id_token
        self.refresh_lifetime = refresh_lifetime
        self._secret = secrets.token_bytes(32)
        self.accounts: dict[str, Account] = {}
        self.revoked: set[str] = set()
        self.codes: dict[str, DeviceCode] = {}
        self.access: dict[str, AccessToken] = {}
        self._refresh: dict[str, _Refresh] = {}

    # -- accounts ----------------------------------------------------------------------------------

    def account(self, client_id: str) -> Account:
        account = self.accounts.get(client_id)
        if account is None:
            gcid = str(uuid.uuid5(_GCID_NAMESPACE, client_id))
            account = self.accounts[client_id] = Account(client_id, gcid)
        return account

    def revoke_client(self, client_id: str) -> None:
        """The owner deleted the portal client: it is unknown and its refresh tokens die."""
        self.revoked.add(client_id)
        for token in [t for t, r in self._refresh.items() if r.client_id == client_id]:
            del self._refresh[token]

    def _jwt(self, payload: dict[str, object]) -> str:
        header = _b64(json.dumps({"typ": "JWT", "alg": "HS256", "kid": "simulated"}, separators=(",", ":")).encode())
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        signature = hmac.new(self._secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{_b64(signature)}"

    # -- device code -------------------------------------------------------------------------------

    def device_code(self, form: dict[str, str]) -> OAuthAnswer:
        client_id = form.get("client_id", "")
        scope = form.get("scope", "").split()
        if (
            not client_id
            or form.get("response_type") != "device_code"
            or not form.get("code_challenge")
            or form.get("code_challenge_method") != "S256"
            or any(s.startswith("cardata:streaming:vehicle.") for s in scope)
        ):
            return self._bodies.oauth("invalid_request")
        if client_id in self.revoked:  # [IOB]: a 400 here means a revoked or unsubscribed client
            return self._bodies.oauth("invalid_request")
        self.account(client_id)
        now = self._clock.now()
        # without a requested scope the token lacks cardata:api:read (observed: every REST call is CU-103)
        granted = tuple(s for s in SUBSCRIBED if s in scope) if scope else SUBSCRIBED[1:]
        user_code = "".join(secrets.choice(string.ascii_letters) for _ in range(8))
        jwt = self._jwt(
            {"user_code": user_code, "iat": int(now), "exp": int(now) + DEVICE_LIFETIME, "jti": _random(16)}
        )
        self.codes[jwt] = DeviceCode(
            jwt, user_code, client_id, form["code_challenge"], granted, now + DEVICE_LIFETIME, INTERVAL
        )
        logger.info("device code for client %s…: user code %s", client_id[:8], user_code)
        answer = {
            "user_code": user_code,
            "device_code": jwt,
            "interval": INTERVAL,
            "verification_uri": f"{self._issuer()}/oneid/link",
            "expires_in": DEVICE_LIFETIME,
        }
        return 200, json.dumps(answer, separators=(",", ":")).encode()

    def pending(self) -> list[dict[str, object]]:
        now = self._clock.now()
        return [
            {"user_code": c.user_code, "client_id": c.client_id, "expires_in": int(c.expires_at - now)}
            for c in self.codes.values()
            if c.state == "pending" and c.expires_at > now
        ]

    def approve(self, user_code: str, deny: bool = False) -> bool:
        """The user typed ``user_code`` on BMW's page and approved (or declined)."""
        now = self._clock.now()
        for code in self.codes.values():
            if code.user_code == user_code and code.state == "pending" and code.expires_at > now:
                code.state = "denied" if deny else "approved"
                logger.info("user code %s %s", user_code, code.state)
                return True
        return False

    # -- token endpoint ----------------------------------------------------------------------------

    def token(self, form: dict[str, str]) -> OAuthAnswer:
        grant = form.get("grant_type")
        client_id = form.get("client_id", "")
        if grant not in (DEVICE_GRANT, "refresh_token") or not client_id:
            return self._bodies.oauth("invalid_request")
        if client_id in self.revoked:
            return self._bodies.oauth("invalid_client")
        if grant == "refresh_token":
            return self._refresh_grant(client_id, form.get("refresh_token", ""))
        return self._device_grant(client_id, form)

    def _device_grant(self, client_id: str, form: dict[str, str]) -> OAuthAnswer:
        code = self.codes.get(form.get("device_code", ""))
        verifier = form.get("code_verifier", "")
        if code is None or code.client_id != client_id or code.state == "used" or not verifier:
            return self._bodies.oauth("invalid_grant" if verifier else "invalid_request")
        now = self._clock.now()
        if now >= code.expires_at:
            return self._bodies.oauth("expired_token")
        last, code.last_poll = code.last_poll, now
        if last is not None and now - last < code.interval:
            return self._bodies.oauth("slow_down")
        if not hmac.compare_digest(pkce_challenge(verifier), code.challenge):
            return self._bodies.oauth("invalid_grant")
        if code.state == "denied":
            return self._bodies.oauth("access_denied")
        if code.state == "pending":
            return self._bodies.oauth("authorization_pending")
        code.state = "used"
        return self._issue(client_id, code.scope)

    def _refresh_grant(self, client_id: str, token: str) -> OAuthAnswer:
        if not token:
            return self._bodies.oauth("invalid_request")
        held = self._refresh.get(token)
        if held is None or held.client_id != client_id or self._clock.now() >= held.expires_at:
            return self._bodies.oauth("invalid_grant")
        del self._refresh[token]  # rotation: the old refresh token is dead from now on
        return self._issue(client_id, held.scope)

    def _issue(self, client_id: str, scope: tuple[str, ...]) -> OAuthAnswer:
        account = self.account(client_id)
        now = self._clock.now()
        access, refresh = _random(53), _random(46)
        self.access[access] = AccessToken(account.gcid, client_id, now + ACCESS_LIFETIME, scope)
        self._refresh[refresh] = _Refresh(client_id, now + self.refresh_lifetime, scope)
        answer: dict[str, object] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ACCESS_LIFETIME,
            "refresh_token": refresh,
            "scope": " ".join(scope),
        }
        if "openid" in scope:
            exp = int(now) + ID_LIFETIME
            answer["id_token"] = self._jwt(
                {
                    "sub": account.gcid,
                    "gcid": account.gcid,
                    "iss": self._issuer(),
                    "aud": client_id,
                    "tokenName": "id_token",
                    "iat": int(now),
                    "exp": exp,
                    "dynamic_scopes": [f"read:streaming/*/{account.gcid}.*"],
                }
            )
            account.id_token, account.id_token_exp = str(answer["id_token"]), float(exp)
            self._on_id_token(account)
        answer["gcid"] = account.gcid
        logger.info("tokens issued for account %s…", account.gcid[:8])
        return 200, json.dumps(answer, separators=(",", ":")).encode()

    def bearer(self, token: str) -> AccessToken | None:
        """The access token's record, expired or not (an expired token still names its account)."""
        return self.access.get(token)

    def expired(self, record: AccessToken) -> bool:
        return self._clock.now() >= record.expires_at
