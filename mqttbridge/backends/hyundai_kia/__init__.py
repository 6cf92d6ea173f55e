"""The Hyundai/Kia/Genesis backend: hyundai_kia_connect_api's VehicleManager behind the Backend interface.

The library does the vendor's HTTP in every region; this module adds what a daemon needs around
it (CONTRACT section 7): one lock per account (VehicleManager is not thread-safe), the token kept
in ``state_dir`` so a restart does not log in again, no login loop after the vendor asked for an
OTP or consent, every library exception turned into ``mqttbridge.errors`` (table in ``mapping``)
and never a resent command. Importing this package needs the library: the registry turns its
absence into an install hint.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from hyundai_kia_connect_api import ClimateRequestOptions, Token, VehicleManager
from hyundai_kia_connect_api.exceptions import (
    AuthenticationError,
    AuthenticationOTPRequired,
    ConsentRequiredError,
)

from mqttbridge.backends.base import Backend
from mqttbridge.backends.hyundai_kia.mapping import (
    BASE_COMMANDS,
    BRANDS,
    CHARGING_COMMANDS,
    CHARGING_DRIVE_TRAINS,
    CLIMATE_DEFAULTS,
    CLIMATE_SCALES,
    COMMAND_METHODS,
    HEATING_WITH_STEERING_WHEEL,
    REGION_BRANDS,
    REGIONS,
    backend_error,
    drive_train,
    execution_state,
    location,
    status_fields,
    vendor_temperature,
)
from mqttbridge.backends.hyundai_kia.tokens import EXPIRED, register_token, token_from_json, token_to_json
from mqttbridge.errors import AuthError, ConfigError, NotFoundError, UnsupportedError
from mqttbridge.logsetup import register_secret
from mqttbridge.model import CommandRequest, ExecutionStatus, ExecutionUpdate, VehicleInfo, VehicleStatus
from mqttbridge.statestore import StateStore

log = logging.getLogger(__name__)

T = TypeVar("T")

#: after a refused login, no new attempt for this long: repeated wrong passwords lock accounts
AUTH_COOLDOWN_S = 600.0
#: after an OTP or consent demand: nothing changes until the user acts, so ask the vendor rarely
ACTION_COOLDOWN_S = 3600.0


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
        self._lock = threading.RLock()
        self._token_file = f"tokens/{account.name}.json"
        self._identity = hashlib.sha256(
            f"hyundai_kia|{self.region}|{self.brand}|{account.username}".encode()
        ).hexdigest()[:16]
        self._saved: dict[str, Any] | None = None
        self._blocked: AuthError | None = None
        self._blocked_until = 0.0
        token = self._load_token()
        self.manager = VehicleManager(
            region=REGIONS[self.region],
            brand=BRANDS[self.brand][0],
            username=account.username,
            password=account.password,
            pin=account.pin or "",
            token=token,
        )
        if token is not None and token.device_id and hasattr(self.manager.api, "device_id"):
            # US Kia makes up a device id per process; its session belongs to the stored one
            self.manager.api.device_id = token.device_id

    # --- tokens ---------------------------------------------------------------------------------

    def _load_token(self) -> Token | None:
        data = self.store.read_json(self._token_file)
        if not isinstance(data, dict) or data.get("identity") != self._identity:
            return None
        stored = data.get("token")
        token = token_from_json(stored, self.account) if isinstance(stored, dict) else None
        if token is not None:
            register_token(token)
            self._saved = token_to_json(token)
            log.debug("%s: reusing the stored token", self.account.name)
        return token

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

    def _invalidate_token(self) -> None:
        """The vendor refused the token: the next check renews it (refresh token, else a login)."""
        if self.manager.token is not None:
            self.manager.token.valid_until = EXPIRED

    # --- calls ----------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _ensure_session(self) -> None:
        """A valid token and the vehicle list, at most one login; refused logins cool down first."""
        now = self.clock()
        if self._blocked is not None:
            if now < self._blocked_until:
                wait = int(self._blocked_until - now)
                raise type(self._blocked)(
                    f"{self._blocked} (not asking the vendor again for {wait} s; restart mqttbridge after fixing it)"
                )
            self._blocked = None
        try:
            self.manager.check_and_refresh_token()
        except Exception as exc:
            self._block(exc, f"{self.account.name}: login to {self.brand_name} {self.region}")
        finally:
            self._persist_token()

    def _block(self, exc: Exception, what: str) -> None:
        """Raise ``exc`` as ours; a refused login or a demand on the user also starts the cool-down."""
        error = backend_error(exc, what)
        if isinstance(error, AuthError):
            action = isinstance(exc, AuthenticationOTPRequired | ConsentRequiredError)
            self._blocked = error
            self._blocked_until = self.clock() + (ACTION_COOLDOWN_S if action else AUTH_COOLDOWN_S)
            log.error("%s", error)
        raise error from None

    def _call(self, what: str, work: Callable[[], T], *, command: bool = False) -> T:
        """``work`` with a valid session; a refused token is renewed and the work tried once more
        (the vendor did not act on a request it refused for its token)."""
        with self._lock:
            try:
                self._ensure_session()
                try:
                    return work()
                except AuthenticationError as exc:
                    if isinstance(exc, AuthenticationOTPRequired | ConsentRequiredError):
                        raise
                    log.info("%s: the vendor refused the token; renewing it", self.account.name)
                    self._invalidate_token()
                self._ensure_session()
                try:
                    return work()
                except AuthenticationError:
                    self._invalidate_token()
                    raise
            except Exception as exc:
                if isinstance(exc, AuthenticationOTPRequired | ConsentRequiredError):
                    self._block(exc, what)  # raises; a re-login inside the library asked for it
                raise backend_error(exc, what, command=command) from None
            finally:
                self._persist_token()

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

    def _info(self, car: Any) -> VehicleInfo:
        train = drive_train(car.engine_type)
        commands = dict(BASE_COMMANDS)
        if train in CHARGING_DRIVE_TRAINS:
            commands.update(CHARGING_COMMANDS)
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

        def check() -> Any:
            car = self._library_vehicle(vehicle)
            return self.manager.check_action_status(car.id, started.event_id, synchronous=False)

        result = self._call(f"{self.account.name}: {started.service} status for {vehicle.vin}", check)
        status, word = execution_state(result)
        return ExecutionUpdate(status, service=started.service, event_id=started.event_id, vendor_status=word)

    def close(self) -> None:
        super().close()
        session = getattr(self.manager.api, "session", None)
        if session is not None and hasattr(session, "close"):
            session.close()
