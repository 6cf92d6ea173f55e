"""The exceptions the bridge raises, each one a decision about what to do next.

Callers branch on the class, never on message text: a ``TransientError`` may be retried, an
``AuthError`` must not be (it would lock the account), a ``CommandOutcomeUnknown`` must be reported,
never resent.
"""

from __future__ import annotations


class MqttBridgeError(Exception):
    """Base class; its message is meant for the user and never holds a secret."""


class ConfigError(MqttBridgeError):
    """The configuration is invalid; ``problems`` holds one ``path: message`` line each."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class BackendError(MqttBridgeError):
    """A vendor call failed. ``http_status`` and ``vendor_code`` when the vendor said so."""

    retryable = False

    def __init__(self, message: str, *, http_status: int | None = None, vendor_code: str | None = None):
        super().__init__(message)
        self.http_status = http_status
        self.vendor_code = vendor_code


class TransientError(BackendError):
    """Connection failures and 5xx answers: worth retrying with back-off."""

    retryable = True


class ConnectionFailed(TransientError):
    """No HTTP answer at all. ``sent`` tells whether the request may have reached the server."""

    def __init__(self, message: str, *, sent: bool):
        super().__init__(message)
        self.sent = sent


class ServerError(TransientError):
    """The vendor answered 5xx (the legacy API's 'server panic' 500s are common after commands)."""


class RateLimitedError(BackendError):
    """The vendor's own limit (HTTP 429). ``retry_after`` seconds when the vendor said so."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        http_status: int | None = 429,
        vendor_code: str | None = None,
    ):
        super().__init__(message, http_status=http_status, vendor_code=vendor_code)
        self.retry_after = retry_after


class BudgetExhaustedError(BackendError):
    """Our own call budget says no (CONTRACT section 8); ``until`` is when it allows calls again."""

    def __init__(self, message: str, *, until: object = None):
        super().__init__(message)
        self.until = until


class AuthError(BackendError):
    """Login refused (wrong credentials, client disabled). Retrying would only lock the account."""


class ActionRequiredError(AuthError):
    """The vendor wants the user to do something first (a one-time password, new terms to accept).

    ``kind`` says what (CONTRACT section 9's login topic): ``"otp"`` (a one-time code the user sends to
    ``<base>/bridge/accounts/<name>/otp/set`` or types into ``mqttbridge login``; ``details`` may say
    where it was sent, e.g. ``{"sent_to": "e-mail"}``), ``"consent"`` (only the vendor's app can do it),
    ``"device_code"`` (a link and a code to enter there). ``details`` is published: never a secret.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str = "consent",
        details: dict[str, object] | None = None,
        http_status: int | None = None,
        vendor_code: str | None = None,
    ):
        super().__init__(message, http_status=http_status, vendor_code=vendor_code)
        self.kind = kind
        self.details = dict(details or {})


class AccessDeniedError(BackendError):
    """The account may not do this (403, 405 mobile access disabled, 423 account locked)."""


class NotFoundError(BackendError):
    """The vendor does not know this vehicle or resource (404)."""


class VehicleUnavailableError(BackendError):
    """The car cannot be reached right now (408)."""


class ApiGoneError(BackendError):
    """HTTP 410: the vendor retired this API (BMW did so on 2021-11-10)."""


class BadResponseError(BackendError):
    """The vendor answered something we cannot read (not JSON, wrong shape)."""


class CommandOutcomeUnknown(BackendError):
    """A command request may have reached the vendor but we got no usable answer: report, never resend."""


class UnsupportedError(BackendError):
    """The vehicle or the backend does not offer this data set or command."""
