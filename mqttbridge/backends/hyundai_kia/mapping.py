"""The Hyundai/Kia backend's tables: what the library's objects mean in the contract's words.

Everything the backend decides by lookup lives here as data: account words to the library's
numbers, the library's order states to execution states, and its exceptions to ``mqttbridge.errors``
classes (the ``Vehicle`` attributes' table is in ``vehicle_fields``). The code below the tables
only applies them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import requests
from hyundai_kia_connect_api.const import ORDER_STATUS
from hyundai_kia_connect_api.exceptions import (
    APIError,
    AuthenticationError,
    AuthenticationOTPRequired,
    ConsentRequiredError,
    DeviceIDError,
    DuplicateRequestError,
    HyundaiKiaException,
    InvalidAPIResponseError,
    NoDataFound,
    PINMissingError,
    RateLimitingError,
    RequestTimeoutError,
    ServiceTemporaryUnavailable,
    UnsupportedControlError,
)
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from mqttbridge.backends.hyundai_kia.vehicle_fields import (  # noqa: F401 - the field tables, re-exported
    FIELDS,
    SKIPPED,
    Field,
    Kind,
    convert,
    drive_train,
    flag,
    location,
    status_fields,
)
from mqttbridge.errors import (
    ActionRequiredError,
    AuthError,
    BackendError,
    BadResponseError,
    CommandOutcomeUnknown,
    ConnectionFailed,
    MqttBridgeError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnsupportedError,
)
from mqttbridge.logsetup import redact
from mqttbridge.model import DriveTrain, ExecutionStatus

log = logging.getLogger(__name__)

# --- account words -> the library's numbers (const.REGIONS / const.BRANDS) ------------------------

REGIONS: dict[str, int] = {
    "europe": 1,
    "canada": 2,
    "usa": 3,
    "china": 4,
    "australia": 5,
    "india": 6,
    "new_zealand": 7,
    "brazil": 8,
    # the EU's newer CCI/GSPA platform (the OneApp login): const.REGIONS 9 from library 4.29
    "europe_cci": 9,
}
#: the first library release that knows a region (older ones lack it in const.REGIONS)
REGION_SINCE: dict[str, str] = {"europe_cci": "4.29.0"}
#: account brand -> (the library's number, the brand as published)
BRANDS: dict[str, tuple[int, str]] = {
    "kia": (1, "Kia"),
    "hyundai": (2, "Hyundai"),
    "genesis": (3, "Genesis"),
}
#: regions the library serves for some brands only (VehicleManager raises APIError otherwise)
REGION_BRANDS: dict[str, frozenset[str]] = {"new_zealand": frozenset({"kia"})}

# --- commands --------------------------------------------------------------------------------------

#: (command, action) -> the VehicleManager method that sends it (also the record's ``service``)
COMMAND_METHODS: dict[tuple[str, str], str] = {
    ("lock", "LOCK"): "lock",
    ("lock", "UNLOCK"): "unlock",
    ("climate", "ON"): "start_climate",
    ("climate", "OFF"): "stop_climate",
    ("charging", "ON"): "start_charge",
    ("charging", "OFF"): "stop_charge",
    ("charge_limit", "SET"): "set_charge_limits",
}
#: (command, action) -> the VehicleManager method that decides whether it is offered: the commands
#: above, and the forced read behind ``force_refresh`` (a status read the bridge makes)
COMMAND_PROBES: dict[tuple[str, str], str] = {
    **COMMAND_METHODS,
    ("force_refresh", "PRESS"): "force_refresh_vehicle_state",
}
#: commands every car gets, where the library builds their request (``capabilities``); ``refresh``
#: (the cached read) always
BASE_COMMANDS: dict[str, frozenset[str]] = {
    "lock": frozenset({"LOCK", "UNLOCK"}),
    "climate": frozenset({"ON", "OFF"}),
    "refresh": frozenset({"PRESS"}),
    "force_refresh": frozenset({"PRESS"}),
}
#: added for cars with a charging port, where the library builds their request
CHARGING_COMMANDS: dict[str, frozenset[str]] = {
    "charging": frozenset({"ON", "OFF"}),
    "charge_limit": frozenset({"SET"}),
}
CHARGING_DRIVE_TRAINS = frozenset({DriveTrain.BEV, DriveTrain.PHEV})

CLIMATE_DEFAULTS: dict[str, Any] = {"temperature": 21.0, "duration": 5, "defrost": False, "heating": 0}
#: ClimateRequestOptions.heating values (const.HEAT_STATUS) that include the steering wheel; the
#: CCS2 and US Kia payloads take the wheel from ``steering_wheel`` instead, so it is set to match
HEATING_WITH_STEERING_WHEEL = frozenset({1, 3, 4})


@dataclass(frozen=True)
class TemperatureScale:
    """What the region's climate command accepts: the contract's °C are converted to it."""

    unit: str  # "C" or "F"
    low: float
    high: float
    step: float


#: read from each region's start_climate: the EU/CN/IN payload is an index into 14.0 .. 29.5 °C in
#: 0.5 steps, AU/NZ 17.0 .. 26.5, CA 16.0 .. 31.5 (both its tables hold these), BR whole °C,
#: the USA whole °F from 62 to 82
CLIMATE_SCALES: dict[str, TemperatureScale] = {
    "europe": TemperatureScale("C", 14.0, 29.5, 0.5),
    "europe_cci": TemperatureScale("C", 14.0, 29.5, 0.5),  # the same cars; GSPA sends the value as text
    "china": TemperatureScale("C", 14.0, 29.5, 0.5),
    "india": TemperatureScale("C", 14.0, 29.5, 0.5),
    "australia": TemperatureScale("C", 17.0, 26.5, 0.5),
    "new_zealand": TemperatureScale("C", 17.0, 26.5, 0.5),
    "canada": TemperatureScale("C", 16.0, 31.5, 0.5),
    "brazil": TemperatureScale("C", 14.0, 30.0, 1.0),
    "usa": TemperatureScale("F", 62.0, 82.0, 1.0),
}


def vendor_temperature(celsius: float, scale: TemperatureScale) -> float | int:
    """The contract's °C as the region's climate command wants it: on its grid, within its range."""
    value = celsius * 9 / 5 + 32 if scale.unit == "F" else celsius
    value = round(value / scale.step) * scale.step
    value = min(max(value, scale.low), scale.high)
    return int(value) if scale.step >= 1 else float(value)


# --- execution states ------------------------------------------------------------------------------

ORDER_STATES: dict[ORDER_STATUS, ExecutionStatus] = {
    ORDER_STATUS.PENDING: ExecutionStatus.PENDING,
    ORDER_STATUS.SUCCESS: ExecutionStatus.EXECUTED,
    ORDER_STATUS.FAILED: ExecutionStatus.NOT_EXECUTED,
    ORDER_STATUS.TIMEOUT: ExecutionStatus.TIMED_OUT,
    ORDER_STATUS.UNKNOWN: ExecutionStatus.UNKNOWN,
}
#: US Kia's check_action_status answered a bool before library 4.24: True once every payload value is 0 (done)
BOOL_ORDER_STATES: dict[bool, ExecutionStatus] = {True: ExecutionStatus.EXECUTED, False: ExecutionStatus.PENDING}


def execution_state(result: Any) -> tuple[ExecutionStatus, str | None]:
    """check_action_status's answer -> (our status, the vendor's word for the record)."""
    if isinstance(result, bool):
        return BOOL_ORDER_STATES[result], str(result).upper()
    if isinstance(result, ORDER_STATUS):
        return ORDER_STATES[result], result.value
    if result is None:  # regions without an implementation answer None
        return ExecutionStatus.UNKNOWN, None
    log.warning("unknown order status %r from the library; treated as UNKNOWN", result)
    return ExecutionStatus.UNKNOWN, str(result)[:40]


# --- exceptions ------------------------------------------------------------------------------------

OTP_MESSAGE = (
    "the vendor asks for a one-time passcode (OTP) to log in; run `mqttbridge login` to have it sent and type it in"
)
OTP_SENT_MESSAGE = (
    "the vendor asks for a one-time passcode (OTP) to log in and has sent it by {sent_to}; send the code "
    "to the account's otp/set topic or type it into `mqttbridge login` (no new code is asked for before "
    "{until})"
)
OTP_UNSUPPORTED_MESSAGE = (
    "the vendor asks for a one-time passcode (OTP) to log in, which hyundai_kia_connect_api {version} cannot "
    "complete in region {region}; log in once in the official app for this account and complete the "
    "verification there, then restart mqttbridge"
)
CONSENT_MESSAGE = (
    "the vendor wants the account holder to accept new terms or give consent first; log in once in the "
    "official app (or the brand's website) and accept them, then restart mqttbridge"
)


@dataclass(frozen=True)
class ErrorRule:
    """How one library exception becomes ours: the class, what it means, the vendor's resCode."""

    error: type[BackendError]
    meaning: str
    vendor_code: str | None = None
    #: add the library's (redacted, shortened) message; off where it may carry response dumps
    detail: bool = True
    #: ActionRequiredError's kind: what the user must do
    kind: str = "consent"


#: library (and requests) exception class -> rule; the most specific class in the MRO wins
ERRORS: dict[type[BaseException], ErrorRule] = {
    AuthenticationOTPRequired: ErrorRule(ActionRequiredError, OTP_MESSAGE, detail=False, kind="otp"),
    ConsentRequiredError: ErrorRule(ActionRequiredError, CONSENT_MESSAGE, detail=False),
    AuthenticationError: ErrorRule(AuthError, "login refused; check username and password (and pin)"),
    PINMissingError: ErrorRule(AuthError, "this region needs the account's PIN: set `pin` in the account"),
    RateLimitingError: ErrorRule(RateLimitedError, "the vendor's request limit is exceeded", vendor_code="5091"),
    ServiceTemporaryUnavailable: ErrorRule(
        ServerError, "the vendor's service is temporarily unavailable", vendor_code="5031"
    ),
    RequestTimeoutError: ErrorRule(ServerError, "the vendor could not reach the car in time"),
    DeviceIDError: ErrorRule(
        ServerError, "the vendor rejected the device registration; it is renewed on the next call", vendor_code="4002"
    ),
    DuplicateRequestError: ErrorRule(
        BackendError, "an identical request is still pending at the vendor", vendor_code="4004"
    ),
    UnsupportedControlError: ErrorRule(UnsupportedError, "the car does not support this action", vendor_code="4005"),
    NoDataFound: ErrorRule(NotFoundError, "the vendor has no data for this car", vendor_code="5921"),
    InvalidAPIResponseError: ErrorRule(BadResponseError, "the vendor's answer has an unknown format"),
    APIError: ErrorRule(BackendError, "the vendor reported an error"),
    HyundaiKiaException: ErrorRule(BackendError, "the library reported an error"),
    requests.ConnectionError: ErrorRule(ConnectionFailed, "connection failed", detail=False),
    requests.Timeout: ErrorRule(ConnectionFailed, "timed out", detail=False),
    requests.exceptions.InvalidJSONError: ErrorRule(BadResponseError, "the vendor's answer is not JSON", detail=False),
    requests.RequestException: ErrorRule(BackendError, "the HTTP request failed", detail=False),
    NotImplementedError: ErrorRule(UnsupportedError, "the library does not offer this in the account's region"),
    KeyError: ErrorRule(BadResponseError, "the vendor's answer lacks an expected item", detail=False),
    IndexError: ErrorRule(BadResponseError, "the vendor's answer lacks an expected item", detail=False),
    TypeError: ErrorRule(BadResponseError, "the vendor's answer has an unexpected shape", detail=False),
    ValueError: ErrorRule(BadResponseError, "the vendor's answer has an unexpected value", detail=False),
}

_MAX_DETAIL = 160


def _rule(exc: BaseException) -> ErrorRule | None:
    for cls in type(exc).__mro__:
        rule = ERRORS.get(cls)
        if rule is not None:
            return rule
    return None


def _sent(exc: BaseException) -> bool:
    """Whether the request may have reached the vendor (decides if a command's fate is unknown)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(reason, NewConnectionError | ConnectTimeoutError):
            return False
    return True


def _detail(exc: BaseException) -> str:
    text = " ".join(redact(str(exc)).split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def backend_error(exc: BaseException, what: str, *, command: bool = False) -> MqttBridgeError:
    """Any exception from a library call as one of ours, with a message safe to publish.

    ``command``: the call sent a command, so an answer lost on the way (a dropped connection, a
    read timeout, an unreadable reply) means it may have been carried out: CommandOutcomeUnknown,
    never a retry.
    """
    if isinstance(exc, MqttBridgeError):
        return exc
    if isinstance(exc, RequestTimeoutError) and isinstance(exc.__cause__, requests.Timeout):
        exc = exc.__cause__  # ApiImplSession wraps the HTTP timeout: it is a connection problem
    rule = _rule(exc)
    if rule is None:
        return BackendError(f"{what}: unexpected {type(exc).__name__} from the hyundai_kia_connect_api library")
    detail = _detail(exc) if rule.detail else ""
    message = f"{what}: {rule.meaning}" + (f" ({detail})" if detail else f" ({type(exc).__name__})")
    error: BackendError
    if rule.error is ConnectionFailed:
        error = ConnectionFailed(message, sent=_sent(exc))
    elif rule.error is RateLimitedError:
        error = RateLimitedError(message, retry_after=None, http_status=None, vendor_code=rule.vendor_code)
    elif rule.error is ActionRequiredError:
        error = ActionRequiredError(message, kind=rule.kind, vendor_code=rule.vendor_code)
    else:
        error = rule.error(message, vendor_code=rule.vendor_code)
    if command and (isinstance(error, BadResponseError) or (isinstance(error, ConnectionFailed) and error.sent)):
        return CommandOutcomeUnknown(f"{message}; the command may have reached the car, so it is not sent again")
    return error
