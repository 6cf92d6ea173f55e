"""CarData's tokens and device codes as data (bmw-cardata-facts §1.2, §1.5): what the token endpoint answered,
when each token runs out, and the PKCE pair of a device code."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mqttbridge.errors import BadResponseError
from mqttbridge.logsetup import register_secret

#: tokens are renewed this long before the first of access and id token expires (the stream needs the id token)
RENEW_MARGIN_S = 600.0
#: the lifetimes BMW documents, for answers that omit them
ACCESS_LIFETIME_S = 3600.0
REFRESH_LIFETIME_S = 14 * 24 * 3600.0


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier from ``secrets`` and its S256 challenge (BASE64URL of SHA-256, no padding)."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (unverified: only to know when the stream's password runs out)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    id_token: str
    gcid: str
    access_expires_at: float
    id_expires_at: float
    refresh_expires_at: float
    scope: str = ""

    @property
    def renew_at(self) -> float:
        return min(self.access_expires_at, self.id_expires_at) - RENEW_MARGIN_S

    @classmethod
    def from_answer(cls, body: Any, now: float, previous: Tokens | None = None) -> Tokens:
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise BadResponseError("CarData token answer: no access_token")
        old = previous
        refresh = body.get("refresh_token") or (old.refresh_token if old else None)
        id_token = body.get("id_token") or (old.id_token if old else None)
        gcid = body.get("gcid") or (old.gcid if old else None)
        if not (isinstance(refresh, str) and isinstance(id_token, str) and isinstance(gcid, str)):
            raise BadResponseError("CarData token answer: no refresh_token, id_token or gcid (was openid granted?)")
        lifetime = body.get("expires_in")
        access_life = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else ACCESS_LIFETIME_S
        access_at = now + access_life
        return cls(
            access_token=body["access_token"],
            refresh_token=refresh,
            id_token=id_token,
            gcid=gcid,
            access_expires_at=access_at,
            id_expires_at=jwt_expiry(id_token) or access_at,
            refresh_expires_at=now + REFRESH_LIFETIME_S,
            scope=str(body.get("scope") or ""),
        )

    def register(self) -> None:
        for secret in (self.access_token, self.refresh_token, self.id_token):
            register_secret(secret)


@dataclass
class DeviceCode:
    user_code: str
    device_code: str
    verifier: str
    verification_uri: str
    interval: float
    expires_at: float
    polled: bool = False

    def details(self) -> dict[str, object]:
        sep = "&" if "?" in self.verification_uri else "?"
        return {
            "user_code": self.user_code,
            "verification_uri": self.verification_uri,
            "verification_uri_complete": f"{self.verification_uri}{sep}user_code={self.user_code}",
            "expires_at": iso(self.expires_at),
        }


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any

    @property
    def error(self) -> str:
        return str(self.body.get("error") or "") if isinstance(self.body, dict) else ""

    def said(self) -> str:
        if isinstance(self.body, dict):
            if self.error:
                return f"{self.error}: {self.body.get('error_description') or ''}".rstrip(": ")
            fault = self.body.get("fault")
            if isinstance(fault, dict):
                return f"gateway fault {fault.get('faultstring') or ''}".strip()
        return "no readable body"
