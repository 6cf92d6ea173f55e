"""The Hyundai/Kia/Genesis backend: hyundai_kia_connect_api's VehicleManager behind the Backend interface.

The library does the vendor's HTTP in every region; this module adds what a daemon needs around
it (CONTRACT section 7): one lock per account (VehicleManager is not thread-safe), the token kept
in ``state_dir`` so a restart does not log in again (``tokens``), one-time codes sent once per
demand and taken by ``submit_code``, no login loop after the vendor asked for an OTP or consent,
commands offered only where the library builds their request (``capabilities``), every vendor
request counted and each region's limit answer recognised (``metering``, ``limits``), every
library exception turned into ``mqttbridge.errors`` (table in ``mapping``) and never a resent
command. Importing this package needs the library: the registry turns its absence into an
install hint.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any, TypeVar

from hyundai_kia_connect_api import ClimateRequestOptions, Token, VehicleManager
from hyundai_kia_connect_api.ApiImpl import ApiImpl
from hyundai_kia_connect_api.const import OTP_NOTIFY_TYPE
from hyundai_kia_connect_api.const import REGIONS as LIBRARY_REGIONS
from hyundai_kia_connect_api.exceptions import (
    APIError,
    AuthenticationError,
    AuthenticationOTPRequired,
    ConsentRequiredError,
)

from mqttbridge.backends.base import Backend
from mqttbridge.backends.hyundai_kia.capabilities import builds_request
from mqttbridge.backends.hyundai_kia.limits import limit_answer, rate_limited
from mqttbridge.backends.hyundai_kia.mapping import (
    BASE_COMMANDS,
    BRANDS,
    CHARGING_COMMANDS,
    CHARGING_DRIVE_TRAINS,
    CLIMATE_DEFAULTS,
    CLIMATE_SCALES,
    COMMAND_METHODS,
    COMMAND_PROBES,
    HEATING_WITH_STEERING_WHEEL,
    OTP_SENT_MESSAGE,
    OTP_UNSUPPORTED_MESSAGE,
    REGION_BRANDS,
    REGION_SINCE,
    REGIONS,
    backend_error,
    drive_train,
    execution_state,
    location,
    status_fields,
    vendor_temperature,
)
from mqttbridge.backends.hyundai_kia.metering import Meter, install, metered
from mqttbridge.backends.hyundai_kia.tokens import EXPIRED, register_token, token_from_json, token_to_json
from mqttbridge.errors import (
    ActionRequiredError,
    AuthError,
    ConfigError,
    MqttBridgeError,
    NotFoundError,
    RateLimitedError,
    TransientError,
    UnsupportedError,
)
from mqttbridge.logsetup import register_secret
from mqttbridge.model import CommandRequest, ExecutionStatus, ExecutionUpdate, VehicleInfo, VehicleStatus
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


def library_version() -> str:
    """The installed hyundai_kia_connect_api release, for messages."""
    try:
        return package_version("hyundai_kia_connect_api")
    except PackageNotFoundError:  # pragma: no cover - imported above, so installed somehow
        return "unknown"


@dataclass
class OtpDemand:
    """A one-time code the vendor sent for this account, waiting for ``submit_code``."""

    sent_to: str
    asked_at: float


class HyundaiKiaBackend(Backend):
    """One Kia, Hyundai or Genesis account in one region.

    No call is retried here: each one counts against the vendor's daily limit (5091 locks even
    the official app out), so retrying is the poller's decision, with its back-off and budget.
    """

    provider = "hyundai_kia"

    def __init__(self, account: Any, store: StateStore, **kwargs: Any):
        super().__init__(account, store, **kwargs)
        self.region = str(account.region).lower()
        self.brand = str(account.brand).lower()
        if self.region not in REGIONS or self.brand not in BRANDS:
            raise ConfigError([f"account {account.name}: unknown region {account.region!r} or brand {account.brand!r}"])
        if REGIONS[self.region] not in LIBRARY_REGIONS:
            raise ConfigError(
                [
                    f"account {account.name}: region {self.region} needs hyundai-kia-connect-api "
                    f"{REGION_SINCE.get(self.region, 'newer')} or newer; {library_version()} is installed "
                    "(releases from 4.24 need Python 3.12 or newer)"
                ]
            )
        allowed = REGION_BRANDS.get(self.region)
        if allowed is not None and self.brand not in allowed:
            raise ConfigError(
                [
                    f"account {account.name}: the library serves only "
                    f"{', '.join(sorted(allowed))} in region {self.region}, not {self.brand}"
                ]
            )
        self.brand_name = BRANDS[self.brand][1]
        register_secret(account.password)
        register_secret(account.pin)
        install()  # every vendor request of this backend's threads is counted from now on
        self._lock = threading.RLock()
        self._calls = threading.local()  # vendor requests per thread, for take_vendor_calls
        self._token_file = f"tokens/{account.name}.json"
        self._identity = hashlib.sha256(
            f"hyundai_kia|{self.region}|{self.brand}|{account.username}".encode()
        ).hexdigest()[:16]
        self._saved: dict[str, Any] | None = None
        self._blocked: AuthError | None = None
        self._blocked_until = 0.0
        self._otp: OtpDemand | None = None
        self._follows: dict[str, bool] = {}  # vehicle id -> the library can follow its commands
        token = self._load_token()
        try:
            self.manager = VehicleManager(
                region=REGIONS[self.region],
                brand=BRANDS[self.brand][0],
                username=account.username,
                password=account.password,
                pin=account.pin or "",
                token=token,
            )
        except Exception as exc:  # APIError "Genesis EU CCI/GSPA is not supported yet", or a crash (Genesis in IN)
            detail = str(exc) if isinstance(exc, APIError) else f"{type(exc).__name__} building its API"
            raise ConfigError(
                [
                    f"account {account.name}: hyundai-kia-connect-api {library_version()} refuses {self.brand} "
                    f"in region {self.region}: {detail}"
                ]
            ) from None
        self._restore_device(token)

    # --- tokens ---------------------------------------------------------------------------------

    def _read_token(self) -> Token | None:
        data = self.store.read_json(self._token_file)
        if not isinstance(data, dict) or data.get("identity") != self._identity:
            return None
        stored = data.get("token")
        return token_from_json(stored, self.account) if isinstance(stored, dict) else None

    def _load_token(self) -> Token | None:
        token = self._read_token()
        if token is not None:
            register_token(token)
            self._saved = token_to_json(token)
            log.debug("%s: reusing the stored token", self.account.name)
        return token

    def _restore_device(self, token: Token | None) -> None:
        if token is not None and token.device_id and hasattr(self.manager.api, "device_id"):
            # US Kia makes up a device id per process; its session belongs to the stored one
            self.manager.api.device_id = token.device_id

    def _persist_token(self) -> None:
        """Write the token whenever the library changed it (login, refresh, a new control token)."""
        current = token_to_json(self.manager.token)
        if current == self._saved:
            return
        register_token(self.manager.token)
        if current is None:
            self.store.delete(self._token_file)
        else:
            self.store.write_json(self._token_file, {"identity": self._identity, "token": current})
        self._saved = current

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

    def _invalidate_token(self) -> None:
        """The vendor refused the token: the next check renews it (refresh token, else a login)."""
        if self.manager.token is not None:
            self.manager.token.valid_until = EXPIRED

    # --- vendor requests, counted for the budget --------------------------------------------------

    def take_vendor_calls(self) -> int:
        """The vendor requests this thread's calls made since the last take, all of them (a login, a
        token check, a control token, the several requests of one read), for the account's budget."""
        count = getattr(self._calls, "count", 0)
        self._calls.count = 0
        return count

    def _count(self, meter: Meter) -> None:
        self._calls.count = getattr(self._calls, "count", 0) + meter.requests

    # --- calls ----------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

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

    def _library_vehicle(self, vehicle: VehicleInfo) -> Any:
        """The library's Vehicle for ``vehicle`` (by the id kept in details, else by VIN)."""
        vehicles = self.manager.vehicles
        found = vehicles.get(vehicle.details.get("vehicle_id"))
        if found is None:
            found = next((v for v in vehicles.values() if vehicle.vin in (v.VIN, v.id)), None)
        if found is None:
            raise NotFoundError(f"{self.account.name}: the vendor does not list {vehicle.vin} (any more)")
        return found

    # --- Backend --------------------------------------------------------------------------------

    def _builds(self, car: Any, method: str) -> bool:
        return builds_request(REGIONS[self.region], BRANDS[self.brand][0], car, method)

    def _commands(self, car: Any) -> dict[str, frozenset[str]]:
        """The commands for the car's drive train that the library builds a request for here."""
        wanted = dict(BASE_COMMANDS)
        if drive_train(car.engine_type) in CHARGING_DRIVE_TRAINS:
            wanted.update(CHARGING_COMMANDS)
        commands: dict[str, frozenset[str]] = {}
        for command, actions in wanted.items():
            kept = frozenset(
                action
                for action in actions
                if (command, action) not in COMMAND_PROBES or self._builds(car, COMMAND_PROBES[command, action])
            )
            if kept:
                commands[command] = kept
        return commands

    def _info(self, car: Any) -> VehicleInfo:
        train = drive_train(car.engine_type)
        commands = self._commands(car)
        self._follows[car.id] = self._builds(car, "check_action_status")
        details = {
            "vehicle_id": car.id,
            "name": car.name,
            "model": car.model,
            "year": car.year,
            "registration_date": car.registration_date,
            "engine_type": getattr(car.engine_type, "value", car.engine_type),
            "ccu_ccs2_protocol_support": car.ccu_ccs2_protocol_support,
            "generation": car.generation,
            "region": self.region,
        }
        return VehicleInfo(
            vin=str(car.VIN or car.id),
            model=str(car.model or car.name or self.brand_name),
            brand=self.brand_name,
            drive_train=train,
            datasets=frozenset(),
            commands=commands,
            details={key: value for key, value in details.items() if value is not None},
            # start_climate takes a target temperature: Home Assistant gets a climate entity
            features=frozenset({"climate_temperature"}),
        )

    def list_vehicles(self) -> list[VehicleInfo]:
        return self._call(
            f"{self.account.name}: vehicle list", lambda: [self._info(car) for car in self.manager.vehicles.values()]
        )

    def read_status(self, vehicle: VehicleInfo, *, force: bool = False) -> VehicleStatus:
        """Cached by default (the vendor's copy, no wake-up); ``force`` wakes the car (12 V battery)."""

        def read() -> Any:
            car = self._library_vehicle(vehicle)
            if force:
                self.manager.force_refresh_vehicle_state(car.id)
            else:
                self.manager.update_vehicle_with_cached_state(car.id)
            return car

        kind = "forced status" if force else "status"
        car = self._call(f"{self.account.name}: {kind} of {vehicle.vin}", read)
        return VehicleStatus(vin=vehicle.vin, fields=status_fields(car), location=location(car), fetched_at=self._now())

    def read_dataset(self, vehicle: VehicleInfo, name: str) -> Any:
        raise UnsupportedError(f"the {self.brand_name} backend offers no data set {name!r}")

    def _arguments(self, request: CommandRequest, car: Any) -> tuple[Any, ...]:
        """The library call's arguments after the vehicle id (params were checked by commands.py)."""
        params = request.params
        if request.command == "climate" and request.action == "ON":
            heating = int(params.get("heating", CLIMATE_DEFAULTS["heating"]))
            temperature = float(params.get("temperature", CLIMATE_DEFAULTS["temperature"]))
            options = ClimateRequestOptions(
                set_temp=vendor_temperature(temperature, CLIMATE_SCALES[self.region]),
                duration=int(params.get("duration", CLIMATE_DEFAULTS["duration"])),
                defrost=bool(params.get("defrost", CLIMATE_DEFAULTS["defrost"])),
                heating=heating,
                climate=True,
                steering_wheel=1 if heating in HEATING_WITH_STEERING_WHEEL else 0,
            )
            return (options,)
        if request.command == "charge_limit":
            ac = params.get("ac", car.ev_charge_limits_ac)
            dc = params.get("dc", car.ev_charge_limits_dc)
            if ac is None or dc is None:
                missing = "ac" if ac is None else "dc"
                raise UnsupportedError(
                    f"charge_limit needs {missing} too: its current value is not known yet "
                    '(send both, e.g. {"ac": 80, "dc": 90})'
                )
            return (int(ac), int(dc))
        return ()

    def execute(self, vehicle: VehicleInfo, request: CommandRequest) -> ExecutionUpdate:
        if request.command == "force_refresh":
            raise UnsupportedError("force_refresh is a forced status read (read_status(force=True)), not a command")
        method = COMMAND_METHODS.get((request.command, request.action))
        if method is None or not vehicle.supports(request.command, request.action):
            raise UnsupportedError(f"{vehicle.vin} does not support {request.command} {request.action}")

        def send() -> Any:
            car = self._library_vehicle(vehicle)
            arguments = self._arguments(request, car)
            return getattr(self.manager, method)(car.id, *arguments)

        action_id = self._call(f"{self.account.name}: {method} for {vehicle.vin}", send, command=True)
        if not action_id:
            log.warning(
                "%s: %s for %s returned no action id; its end cannot be followed",
                self.account.name,
                method,
                vehicle.vin,
            )
        return ExecutionUpdate(
            ExecutionStatus.INITIATED, service=method, event_id=str(action_id) if action_id else None
        )

    def execution_status(self, vehicle: VehicleInfo, started: ExecutionUpdate) -> ExecutionUpdate:
        """The library's order state, mapped (``mapping.ORDER_STATES``).

        In Europe the vendor may report PENDING for up to two minutes when the car did not answer,
        even when the car did act; the bridge's CommandRunner times out and reads the car then.
        US Kia answers a bool before library 4.24 (True once done: EXECUTED, else PENDING) and an
        ORDER_STATUS since; both are mapped.
        """
        if not started.event_id:
            return ExecutionUpdate(ExecutionStatus.UNKNOWN, service=started.service)
        if not self._follows.get(str(vehicle.details.get("vehicle_id")), True):
            # the library offers no status of actions here (EU CCI): the runner reads the car at its timeout
            return ExecutionUpdate(ExecutionStatus.UNKNOWN, service=started.service, event_id=started.event_id)

        def check() -> Any:
            car = self._library_vehicle(vehicle)
            return self.manager.check_action_status(car.id, started.event_id, synchronous=False)

        try:
            result = self._call(f"{self.account.name}: {started.service} status for {vehicle.vin}", check)
        except UnsupportedError:  # NotImplementedError from the library: the same, found out late
            return ExecutionUpdate(ExecutionStatus.UNKNOWN, service=started.service, event_id=started.event_id)
        status, word = execution_state(result)
        return ExecutionUpdate(status, service=started.service, event_id=started.event_id, vendor_status=word)

    def close(self) -> None:
        super().close()
        session = getattr(self.manager.api, "session", None)
        if session is not None and hasattr(session, "close"):
            session.close()
