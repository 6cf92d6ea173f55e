"""CarData's telematic keys as data: what the bridge asks for, how words map, which entities HA gets.

Key names, types and units are facts from BMW's telematics data catalogue and real answers
(``shared/docs/bmw-cardata-facts.md`` section 4); ``mapping`` turns entries into published fields
with these tables, so a new key or word is a line here, not code. A published name is the snake_case
of the key's path after ``vehicle.`` (``mapping.field_name``).
"""

from __future__ import annotations

from mqttbridge.fields import LID_ABSENT, LID_OPEN, FieldSpec

# --- the keys behind the contract's common fields (CONTRACT section 9, "Fields") --------------------

SOC_HEADER = "vehicle.drivetrain.batteryManagement.header"
SOC_DISPLAYED = "vehicle.powertrain.electric.battery.stateOfCharge.displayed"
SOC_TARGET = "vehicle.powertrain.electric.battery.stateOfCharge.target"
RANGE_KOMBI = "vehicle.drivetrain.electricEngine.kombiRemainingElectricRange"
RANGE_ELECTRIC = "vehicle.drivetrain.electricEngine.remainingElectricRange"
RANGE_LAST = "vehicle.drivetrain.lastRemainingRange"
FUEL_REMAINING = "vehicle.drivetrain.fuelSystem.remainingFuel"
FUEL_PERCENT = "vehicle.drivetrain.fuelSystem.level"
ODOMETER = "vehicle.vehicle.travelledDistance"
_NAV = "vehicle.cabin.infotainment.navigation.currentLocation"
LATITUDE = f"{_NAV}.latitude"
LONGITUDE = f"{_NAV}.longitude"
HEADING = f"{_NAV}.heading"
DOOR_STATUS = "vehicle.cabin.door.status"
#: REST-only, BMW's newer lock word; used when ``door.status`` (only "sporadically recorded") has none
DOOR_LOCK_STATUS = "vehicle.cabin.door.lock.status"
CHARGING_STATUS = "vehicle.drivetrain.electricEngine.charging.status"
#: already in the contract's words; the i4's REST answer has it and no ``charging.status``
CHARGING_HV_STATUS = "vehicle.drivetrain.electricEngine.charging.hvStatus"
CHARGING_PORT = "vehicle.body.chargingPort.status"
PLUGGED = "vehicle.powertrain.tractionBattery.charging.port.anyPosition.isPlugged"
BATTERY_12V = "vehicle.electricalSystem.battery.voltage"

#: common field -> its source keys, first with a value wins (the later ones are fallbacks)
COMMON_SOURCES: dict[str, tuple[str, ...]] = {
    "battery_level": (SOC_HEADER, SOC_DISPLAYED),
    "range_electric": (RANGE_KOMBI, RANGE_ELECTRIC),
    "range_fuel": (RANGE_LAST,),
    "fuel_level": (FUEL_REMAINING,),
    "odometer": (ODOMETER,),
    "door_lock_state": (DOOR_STATUS, DOOR_LOCK_STATUS),
    "charging_status": (CHARGING_STATUS, CHARGING_HV_STATUS),
    "plugged_in": (CHARGING_PORT, PLUGGED),
    "battery_12v": (BATTERY_12V,),
}
#: keys folded into ``location``
LOCATION_KEYS = (LATITUDE, LONGITUDE, HEADING)
#: keys that mean nothing without a fuel tank (an i3 BEV sends lastRemainingRange and remainingFuel as 0)
FUEL_ONLY_KEYS = frozenset({RANGE_LAST, FUEL_REMAINING, FUEL_PERCENT})
#: a common field's source keys are never also published under their own names
CONSUMED_KEYS = frozenset(key for keys in COMMON_SOURCES.values() for key in keys) | frozenset(LOCATION_KEYS)

# --- the bridge's one REST container ----------------------------------------------------------------

_DOORS = tuple(
    f"vehicle.cabin.{part}.row{row}.{side}.{leaf}"
    for part, leaf in (("door", "isOpen"), ("window", "status"))
    for row in (1, 2)
    for side in ("driver", "passenger")
)
_TYRES = tuple(
    f"vehicle.chassis.axle.row{row}.wheel.{side}.tire.{leaf}"
    for row in (1, 2)
    for side in ("left", "right")
    for leaf in ("pressure", "pressureTarget", "temperature")
)
_CHARGING = "vehicle.drivetrain.electricEngine.charging"

#: every key the container asks for: the common fields' sources and fallbacks, then what users want.
#: All are catalogue keys that telematicData serves with values (none bound to a dedicated endpoint:
#: tyre diagnosis, image, charging history, basic data, LBCS); the fault memory (a long XML text) is left out.
CONTAINER_KEYS: tuple[str, ...] = (
    *(key for keys in COMMON_SOURCES.values() for key in keys),
    *LOCATION_KEYS,
    f"{_NAV}.altitude",
    SOC_TARGET,
    FUEL_PERCENT,
    "vehicle.drivetrain.totalRemainingRange",
    "vehicle.drivetrain.batteryManagement.maxEnergy",
    f"{_CHARGING}.level",
    f"{_CHARGING}.timeRemaining",
    f"{_CHARGING}.timeToFullyCharged",
    f"{_CHARGING}.acVoltage",
    f"{_CHARGING}.acAmpere",
    f"{_CHARGING}.phaseNumber",
    f"{_CHARGING}.method",
    f"{_CHARGING}.lastChargingResult",
    f"{_CHARGING}.reasonChargingEnd",
    "vehicle.powertrain.electric.battery.charging.power",
    "vehicle.powertrain.electric.battery.charging.acLimit.selected",
    "vehicle.body.chargingPort.lockedStatus",
    *_DOORS,
    "vehicle.body.trunk.isOpen",
    "vehicle.body.trunk.isLocked",
    "vehicle.body.trunk.window.isOpen",
    "vehicle.body.hood.isOpen",
    "vehicle.cabin.sunroof.overallStatus",
    "vehicle.electricalSystem.battery.stateOfCharge",
    "vehicle.electricalSystem.battery.serviceDemand.replace",
    "vehicle.electricalSystem.battery.serviceDemand.recharge",
    *_TYRES,
    "vehicle.status.serviceDistance.next",
    "vehicle.status.serviceTime.inspectionDateLegal",
    "vehicle.status.conditionBasedServices",
    "vehicle.status.checkControlMessages",
    "vehicle.vehicle.preConditioning.activity",
    "vehicle.vehicle.preConditioning.remainingTime",
    "vehicle.cabin.hvac.preconditioning.status.comfortState",
    "vehicle.isMoving",
    "vehicle.vehicle.antiTheftAlarmSystem.alarm.armStatus",
)

# --- vocabularies --------------------------------------------------------------------------------------

#: values that mean "no value" (catalogue: "or -NA-"; real answers: null; CBS dates: the string "null")
NO_VALUE = frozenset({"-NA-", "null", "NULL", ""})
#: booleans as CarData writes them (catalogue "boolean" keys carry strings in real answers)
BOOLEANS: dict[str, bool | None] = {
    "true": True,
    "false": False,
    "asn_istrue": True,
    "asn_isfalse": False,
    "asn_isunknown": None,  # not published
}
#: ``door.status`` (catalogue: ASN_secured, ASN_locked, ASN_unlocked, ASN_selective-Locked, ASN_unknown;
#: real stream values LOCKED / SECURED, KVB #228) and ``door.lock.status`` (SECURED, SELECTIVE-LOCKED ...),
#: looked up without ``ASN_``, upper-case, ``-`` as ``_``; any other word is UNKNOWN
DOOR_LOCK_WORDS: dict[str, str] = {
    "SECURED": "SECURED",
    "LOCKED": "LOCKED",
    "UNLOCKED": "UNLOCKED",
    "SELECTIVE_LOCKED": "SELECTIVE_LOCKED",
    "UNKNOWN": "UNKNOWN",
    "INVALID": "UNKNOWN",
}
#: ``charging.status`` -> CONTRACT section 4's words. The catalogue's description (its value list is
#: wrong) and evcc #23952 give the six words; evcc treats INITIALIZATION, CHARGINGPAUSED, CHARGINGENDED as
#: "connected, not charging". INITIALIZATION (being prepared) and CHARGINGPAUSED (may resume) wait for
#: charging; CHARGINGENDED is FINISHED_FULLY_CHARGED or FINISHED_NOT_FULL by ``hvStatus`` when it says
#: which, else by the battery level against the charging target (``mapping.finished``). Unknown: INVALID.
CHARGING_WORDS: dict[str, str] = {
    "NOCHARGING": "NOT_CHARGING",
    "INITIALIZATION": "WAITING_FOR_CHARGING",
    "CHARGINGACTIVE": "CHARGING",
    "CHARGINGPAUSED": "WAITING_FOR_CHARGING",
    "CHARGINGENDED": "FINISHED",  # resolved by mapping.finished
    "CHARGINGERROR": "ERROR",
}
FINISHED = "FINISHED"
#: ``chargingPort.status`` -> plugged_in; INVALID and -NA- are not published
PLUG_WORDS: dict[str, bool] = {"CONNECTED": True, "DISCONNECTED": False}
#: lids whose value is OPEN/CLOSED text: a JSON boolean from the stream is written as that text
LID_KEYS = frozenset(
    {
        *(key for key in _DOORS if key.endswith("isOpen")),
        "vehicle.body.trunk.isOpen",
        "vehicle.body.trunk.window.isOpen",
        "vehicle.body.hood.isOpen",
    }
)
#: catalogue "string" keys that may look like numbers but are identifiers
TEXT_KEYS = frozenset({"vehicle.body.chargingPort.isoSessionId", "vehicle.channel.ngtp.timeVehicle"})
#: units of distances and volumes the common fields convert from (the contract publishes km and L)
MILES = frozenset({"mi", "mile", "miles"})
GALLONS = frozenset({"gal", "gallon", "gallons"})

# --- Home Assistant entities of CarData's own fields -------------------------------------------------

SUNROOF_OPEN = (*LID_OPEN, "INTERMEDIATE_TILT")


def _lid(name: str, label: str, device_class: str, on_values: tuple[str, ...] = LID_OPEN) -> FieldSpec:
    return FieldSpec(
        name, label, "binary_sensor", "text", device_class=device_class, on_values=on_values, absent_value=LID_ABSENT
    )


def _measure(
    name: str,
    label: str,
    unit: str,
    device_class: str | None,
    *,
    diagnostic: bool = False,
    enabled: bool = True,
    icon: str | None = None,
) -> FieldSpec:
    return FieldSpec(
        name,
        label,
        unit=unit,
        device_class=device_class,
        state_class="measurement",
        diagnostic=diagnostic,
        enabled=enabled,
        icon=icon,
    )


def _text(name: str, label: str, *, diagnostic: bool = False, icon: str | None = None) -> FieldSpec:
    return FieldSpec(name, label, kind="text", diagnostic=diagnostic, icon=icon)


_SIDES = {"row1_driver": "front left", "row1_passenger": "front right", "row2_driver": "rear left"}
_SIDES["row2_passenger"] = "rear right"
_WHEELS = {"row1_wheel_left": "front left", "row1_wheel_right": "front right"}
_WHEELS |= {"row2_wheel_left": "rear left", "row2_wheel_right": "rear right"}
_CHG = "drivetrain_electric_engine_charging"

FIELDS: tuple[FieldSpec, ...] = (
    # CONTRACT §9: CarData's 12 V battery is its voltage, not a charge level as the other providers': this
    # declaration replaces the core's percent entity for CarData cars (discovery looks at the provider's first)
    FieldSpec(
        "battery_12v", "12 V battery", unit="V", device_class="voltage", state_class="measurement", diagnostic=True
    ),
    *(_lid(f"cabin_door_{side}_is_open", f"Door {where}", "door") for side, where in _SIDES.items()),
    *(_lid(f"cabin_window_{side}_status", f"Window {where}", "window") for side, where in _SIDES.items()),
    _lid("body_trunk_is_open", "Trunk", "opening"),
    _lid("body_trunk_window_is_open", "Rear window", "window"),
    _lid("body_hood_is_open", "Hood", "opening"),
    _lid("cabin_sunroof_overall_status", "Sunroof", "window", SUNROOF_OPEN),
    FieldSpec("is_moving", "Moving", "binary_sensor", "bool", device_class="moving"),
    _measure("powertrain_electric_battery_state_of_charge_target", "Charging target", "%", None, icon="mdi:target"),
    _measure(f"{_CHG}_level", "Predicted battery level", "%", None, diagnostic=True, enabled=False),
    _measure("drivetrain_total_remaining_range", "Total range", "km", "distance", icon="mdi:map-marker-distance"),
    _measure("drivetrain_fuel_system_level", "Fuel level", "%", None, icon="mdi:gas-station"),
    _measure("drivetrain_battery_management_max_energy", "Battery capacity", "kWh", "energy_storage", diagnostic=True),
    _measure(f"{_CHG}_time_remaining", "Charging time remaining", "min", "duration"),
    _measure(f"{_CHG}_time_to_fully_charged", "Time to full charge", "min", "duration", enabled=False),
    _measure("powertrain_electric_battery_charging_power", "Charging power", "W", "power"),
    _measure(f"{_CHG}_ac_voltage", "Charging voltage", "V", "voltage", diagnostic=True),
    # no device class: "current" is not in the rulebook's table, and a unit alone is always accepted
    _measure(f"{_CHG}_ac_ampere", "Charging current", "A", None, diagnostic=True, icon="mdi:current-ac"),
    _measure(
        "powertrain_electric_battery_charging_ac_limit_selected",
        "AC current limit",
        "A",
        None,
        diagnostic=True,
        icon="mdi:current-ac",
    ),
    _text(f"{_CHG}_phase_number", "Charging phases", diagnostic=True),
    _text(f"{_CHG}_method", "Charging method", diagnostic=True),
    _text(f"{_CHG}_last_charging_result", "Last charging result", diagnostic=True),
    _text(f"{_CHG}_reason_charging_end", "Charging end reason", diagnostic=True),
    _text("body_charging_port_locked_status", "Charging cable lock", diagnostic=True, icon="mdi:ev-plug-type2"),
    _measure("electrical_system_battery_state_of_charge", "12 V battery charge", "%", "battery", diagnostic=True),
    *(
        _measure(f"chassis_axle_{wheel}_tire_pressure", f"Tyre pressure {where}", "kPa", "pressure")
        for wheel, where in _WHEELS.items()
    ),
    *(
        _measure(
            f"chassis_axle_{wheel}_tire_pressure_target",
            f"Tyre pressure target {where}",
            "kPa",
            "pressure",
            diagnostic=True,
        )
        for wheel, where in _WHEELS.items()
    ),
    *(
        _measure(f"chassis_axle_{wheel}_tire_temperature", f"Tyre temperature {where}", "°C", "temperature")
        for wheel, where in _WHEELS.items()
    ),
    # the catalogue gives no unit ("0 km to 100,000 km or 0 mi ..."); answers are in the car's unit, km in Europe
    _measure("status_service_distance_next", "Next service in", "km", "distance", icon="mdi:wrench-clock"),
    FieldSpec(
        "status_service_time_inspection_date_legal",
        "Legal inspection due",
        kind="timestamp",
        device_class="timestamp",
        diagnostic=True,
    ),
    _text("vehicle_pre_conditioning_activity", "Climate activity", icon="mdi:air-conditioner"),
    _measure("vehicle_pre_conditioning_remaining_time", "Climate time remaining", "min", "duration"),
    _text("cabin_hvac_preconditioning_status_comfort_state", "Climate comfort state", icon="mdi:air-conditioner"),
    _text("vehicle_anti_theft_alarm_system_alarm_arm_status", "Alarm", icon="mdi:shield-car"),
    _measure(
        "drivetrain_internal_combustion_engine_engine_ect", "Coolant temperature", "°C", "temperature", diagnostic=True
    ),
)
