"""Error bodies: the real ones from the fixtures, byte for byte, where a capture exists.

Without ../shared (a user's clone) the same fields are built here from the facts file's tables; codes
without any capture get the documented ``exveErrorId`` with the guide's meaning as the message.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

__all__ = ["API_STATUS", "OAUTH_STATUS", "Bodies"]

#: the token endpoint's statuses (BMW's device-flow swagger; note the 403 for authorization_pending)
OAUTH_STATUS: dict[str, int] = {
    "authorization_pending": 403,
    "access_denied": 403,
    "slow_down": 400,
    "invalid_request": 400,
    "invalid_grant": 400,
    "invalid_client": 401,
    "expired_token": 401,
    "gateway_fault": 500,
}
_OAUTH_FILES = {
    "authorization_pending": "auth/token_error_authorization_pending_doc.json",
    "access_denied": "auth/token_error_access_denied.json",
    "slow_down": "auth/token_error_slow_down_doc.json",
    "invalid_request": "auth/token_error_invalid_request_refresh.json",
    "invalid_grant": "auth/token_error_invalid_grant.json",
    "invalid_client": "auth/token_error_invalid_client_doc.json",
    "expired_token": "auth/token_error_expired_token_doc.json",
    "gateway_fault": "auth/token_error_gateway_fault_500.json",
}
_OAUTH_TEXT = {
    "authorization_pending": "The user has not yet completed authorization",
    "access_denied": "The user has declined authorization",
    "slow_down": "The polling interval has not elapsed since the last request",
    "invalid_request": "The request is missing a required parameter, includes an unsupported parameter value "
    "(other than grant type), repeats a parameter, includes multiple credentials, utilizes more than one "
    "mechanism for authenticating the client, or is otherwise malformed",
    "invalid_grant": "The provided access grant is invalid, expired, or revoked.",
    "invalid_client": "Client authentication failed (e.g., unknown client, no client authentication included, "
    "or unsupported authentication method).",
    "expired_token": "The code is expired",
}

#: HTTP status per exveErrorId: observed ones (CU-127, CU-429, CU-105, CU-103 are 403), else a guess
API_STATUS: dict[str, int] = {
    "CU-100": 401,
    "CU-101": 401,
    "CU-102": 401,
    "CU-103": 403,
    "CU-104": 403,
    "CU-105": 403,
    "CU-120": 400,
    "CU-121": 400,
    "CU-122": 400,
    "CU-124": 400,
    "CU-125": 400,
    "CU-126": 404,
    "CU-127": 403,
    "CU-400": 400,
    "CU-401": 400,
    "CU-402": 400,
    "CU-429": 403,
    "CU-500": 500,
    "CU-503": 503,
}
_API_FILES = {
    "CU-127": "rest/error_403_cu127_invalid_token.json",
    "CU-105": "constructed/error_403_cu105_container.json",
    "CU-429": "constructed/error_403_cu429_rate_limit.json",
    "CU-103": "constructed/error_403_cu103_scope.json",
}
_API_TEXT = {
    "CU-100": "No token provided",
    "CU-101": "Authentication error",
    "CU-102": "Token expired",
    "CU-103": "Token-scope is not CarData",
    "CU-104": "No permission for specified VIN",
    "CU-105": "No permission for specified containerId",
    "CU-120": "VIN format invalid",
    "CU-121": "containerId format invalid",
    "CU-122": "Container already set for deletion",
    "CU-124": "Maximum number of containers reached",
    "CU-125": "Pagination token expired",
    "CU-126": "No vehicle image found",
    "CU-127": "invalid_token",
    "CU-400": "Bad request",
    "CU-401": "Parameter invalid",
    "CU-402": "Telematic key invalid",
    "CU-429": "API rate limit reached",
    "CU-500": "Internal server error",
    "CU-503": "Partner system unavailable",
}


class Bodies:
    """Error bodies, read once from the fixtures when they are there."""

    def __init__(self, fixtures: Path | None):
        self._oauth: dict[str, bytes] = {}
        self._api: dict[str, bytes] = {}
        if fixtures is not None:
            for name, rel in _OAUTH_FILES.items():
                if (fixtures / rel).is_file():
                    self._oauth[name] = (fixtures / rel).read_bytes()
            for code, rel in _API_FILES.items():
                if (fixtures / rel).is_file():
                    self._api[code] = (fixtures / rel).read_bytes()

    def oauth(self, error: str) -> tuple[int, bytes]:
        """(status, body) of a token-endpoint error; unknown names get the OAuth shape with no text."""
        status = OAUTH_STATUS.get(error, 400)
        if error in self._oauth:
            return status, self._oauth[error]
        if error == "gateway_fault":
            fault = {"faultstring": "Invalid Access Token", "detail": {"errorcode": "simulated"}}
            return status, json.dumps({"fault": fault}).encode()
        body = {"error": error, "error_description": _OAUTH_TEXT.get(error, error)}
        return status, json.dumps(body, separators=(",", ":")).encode()

    def api(self, code: str, status: int | None = None, note: str | None = None) -> tuple[int, bytes]:
        """(status, body) of a REST error in BMW's CustomerErrorResponse shape."""
        final = status or API_STATUS.get(code, 400)
        if code in self._api:
            return final, self._api[code]
        body = {
            "exveErrorId": code,
            "exveErrorMsg": _API_TEXT.get(code, "Error"),
            "exveErrorRef": str(uuid.uuid4()),
            "exveNote": note or f"{_API_TEXT.get(code, 'Error')} (simulated).",
        }
        return final, json.dumps(body, separators=(",", ":")).encode()
