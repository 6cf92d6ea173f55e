"""The Hyundai/Kia/Genesis backend: hyundai_kia_connect_api's VehicleManager behind the Backend interface.

The library does the vendor's HTTP in every region; the backend adds what a daemon needs around it
(CONTRACT section 7). This module reads the cars and sends their commands: commands offered only where
the library builds their request (``capabilities``), the library's objects read through the tables in
``mapping``, never a resent command. Beneath it, ``session`` logs in (one-time codes sent once per
demand, no login loop after the vendor asked for an OTP or consent, every library exception turned
into ``mqttbridge.errors``, each region's limit answer recognised) and ``connection`` keeps the
account's VehicleManager (one lock per account, the token in ``state_dir``, every vendor request
counted). Importing this module needs the library: the registry turns its absence into an install hint.
"""

from __future__ import annotations

import logging
from typing import Any

from hyundai_kia_connect_api import ClimateRequestOptions

from mqttbridge.backends.hyundai_kia.capabilities import builds_request
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
    REGIONS,
    drive_train,
    execution_state,
    location,
    status_fields,
    vendor_temperature,
)
from mqttbridge.backends.hyundai_kia.session import HyundaiKiaSession
from mqttbridge.errors import NotFoundError, UnsupportedError
from mqttbridge.model import CommandRequest, ExecutionStatus, ExecutionUpdate, VehicleInfo, VehicleStatus
from mqttbridge.statestore import StateStore

log = logging.getLogger(__name__)


class HyundaiKiaBackend(HyundaiKiaSession):
    """One Kia, Hyundai or Genesis account in one region.

    No call is retried here: each one counts against the vendor's daily limit (5091 locks even
    the official app out), so retrying is the poller's decision, with its back-off and budget.
    """

    provider = "hyundai_kia"

    def __init__(self, account: Any, store: StateStore, **kwargs: Any):
        super().__init__(account, store, **kwargs)
        self._follows: dict[str, bool] = {}  # vehicle id -> the library can follow its commands

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
