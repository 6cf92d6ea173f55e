"""The simulated cars: their data, what remote services do to them, and where they come from.

A car is the legacy API's own JSON (vehicle-list entry, ``vehicleStatus``, data set bodies), so what
the simulator serves has the captures' shapes by construction. Cars come either from the built-in
demo table below (values written for the simulator in the captures' shapes) or from a folder of real
captures laid out as in ``shared/fixtures/bmw_legacy/<model>/``.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeGuard

from mqttbridge.errors import MqttBridgeError

logger = logging.getLogger(__name__)


class SimulatorError(MqttBridgeError):
    """The simulator cannot start as asked (bad vehicle folder, port in use...)."""


#: data set endpoint (the path part after the VIN) -> (capture file names, empty response body)
DATASETS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "lastTrip": (("last_trip.json",), {"lastTrip": {}}),
    "allTrips": (("all_trips.json",), {"allTrips": {}}),
    "chargingprofile": (("charging_profile.json",), {"weeklyPlanner": {}}),
    "destinations": (("last_destinations.json", "destinations.json"), {"destinations": []}),
    "rangemap": (("range_maps.json",), {"rangemap": {}}),
}

#: remote service type -> the vehicle-list flag that must be ACTIVATED (CHARGING_CONTROL is special)
SERVICE_FLAGS: dict[str, str] = {
    "DOOR_LOCK": "doorLock",
    "DOOR_UNLOCK": "doorUnlock",
    "CLIMATE_NOW": "climateNow",
    "CHARGE_NOW": "chargeNow",
    "LIGHT_FLASH": "lightFlash",
    "HORN_BLOW": "hornBlow",
    "VEHICLE_FINDER": "vehicleFinder",
}
SERVICE_TYPES: tuple[str, ...] = (*SERVICE_FLAGS, "CHARGING_CONTROL")

#: where VEHICLE_FINDER puts a car that has never reported a position (Munich)
DEFAULT_POSITION = (48.1765, 11.5594)
#: how far one VEHICLE_FINDER moves the car (degrees): small enough to look like a parked car
FINDER_STEP = (0.0004, 0.0003)


def api_time(moment: datetime) -> str:
    """The API's ``updateTime`` form: ``YYYY-MM-DDTHH:MM:SS+0000`` (no colon in the offset)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def internal_time(moment: datetime) -> str:
    """The API's ``internalDataTimeUTC`` form: UTC without a zone."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Merge ``patch`` into ``target`` in place: dicts recursively, ``None`` removes, the rest replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


@dataclass
class SimExecution:
    """One remote service request; its status is computed from the clock, its end decided once."""

    service_type: str
    event_id: str
    started: float
    created_at: str
    params: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    #: EXECUTED / NOT_EXECUTED / TIMED_OUT once the end was reached
    final_status: str | None = None
    finished_at: str | None = None
    #: an outcome rule PENDING caught it: it never leaves PENDING
    stuck: bool = False
    #: the step out of PENDING was already taken (an outcome rule PENDING set later cannot catch it)
    left_pending: bool = False

    def status_at(self, now: float, step: float) -> str:
        if self.final_status is not None:
            return self.final_status
        if self.stuck:
            return "PENDING"
        elapsed = now - self.started
        if step > 0 and elapsed < step:
            return "INITIATED"
        if step > 0 and elapsed < 2 * step:
            return "PENDING"
        return "DELIVERED"

    def execution_status(self, now: float, step: float) -> dict[str, Any]:
        """The ``executionStatus`` object of GET serviceExecutionStatus."""
        status = self.status_at(now, step)
        body: dict[str, Any] = {"serviceType": self.service_type, "status": status, "eventId": self.event_id}
        if status in ("PENDING", "DELIVERED", "TIMED_OUT"):
            body["extendedStatus"] = {"result": "STATUS_UNKNOWN"}
        elif status == "EXECUTED":
            body["extendedStatus"] = {"result": "STATUS_CHANGED", "ignitionOnStatus": "false"}
        elif status == "NOT_EXECUTED":
            body["extendedStatus"] = {"result": "STATUS_NOT_CHANGED"}
        return body

    def to_json(self, now: float, step: float) -> dict[str, Any]:
        """A debugging view for ``GET /_sim/vehicles``."""
        return {
            "eventId": self.event_id,
            "serviceType": self.service_type,
            "status": self.status_at(now, step),
            "params": copy.deepcopy(self.params),
            "createdAt": self.created_at,
            "finishedAt": self.finished_at,
        }


@dataclass
class SimVehicle:
    """One car: the vehicle-list ``entry``, the inside of ``vehicleStatus``, data set bodies, history."""

    entry: dict[str, Any]
    status: dict[str, Any]
    #: data set endpoint name (keys of ``DATASETS``) -> the whole response body
    datasets: dict[str, Any] = field(default_factory=dict)
    executions: list[SimExecution] = field(default_factory=list)
    #: what EXECUTED services changed, oldest first: ``{eventId, serviceType, time, changes}``
    effects: list[dict[str, Any]] = field(default_factory=list)
    source: str = "demo"

    @property
    def vin(self) -> str:
        return str(self.entry_view().get("vin") or self.status_view().get("vin") or "")

    def entry_view(self) -> dict[str, Any]:
        """The vehicle-list entry to read or serialise at once, never to change (a demo car keeps no copy)."""
        return self.entry

    def status_view(self) -> dict[str, Any]:
        """The ``vehicleStatus`` to read or serialise at once, never to change (a demo car keeps no copy)."""
        return self.status

    def set_vin(self, vin: str) -> None:
        """Give the car another VIN (duplicates across capture folders), in the entry and the status."""
        self.entry["vin"] = vin
        self.status["vin"] = vin

    @property
    def model(self) -> str:
        return str(self.entry_view().get("model", ""))

    @property
    def drive_train(self) -> str:
        return str(self.entry_view().get("driveTrain", ""))

    def supports_service(self, service_type: str) -> bool:
        """Whether the vehicle-list flags allow this remote service, as the real server checks."""
        entry = self.entry_view()
        if service_type == "CHARGING_CONTROL":
            return entry.get("chargingControl", "NOT_SUPPORTED") != "NOT_SUPPORTED"
        flag = SERVICE_FLAGS.get(service_type)
        return flag is not None and entry.get(flag) == "ACTIVATED"

    def dataset_body(self, name: str) -> Any:
        """The response body of a data set endpoint; the API's empty form when the car has none."""
        return copy.deepcopy(self.dataset_view(name))

    def dataset_view(self, name: str) -> Any:
        """``dataset_body`` without the copy: to serialise at once, never to change."""
        body = self.dataset_views().get(name)
        return DATASETS[name][1] if body is None else body

    def dataset_views(self) -> dict[str, Any]:
        """The data set bodies, to read at once, never to change (a demo car keeps no copy)."""
        return self.datasets

    def patch_status(self, patch: dict[str, Any], now: datetime) -> None:
        """Merge a change the car reported; it is dated now unless the patch dates it itself."""
        merge_patch(self.status, patch)
        if "updateTime" not in patch:
            self._stamp(now)

    def carry_out(self, execution: SimExecution, now: datetime) -> str:
        """Do what an EXECUTED service does to the car; return the final status it really reached."""
        service = execution.service_type
        changes: dict[str, Any] = {}
        if service == "DOOR_LOCK":
            changes = {"doorLockState": "SECURED", "updateReason": "VEHICLE_SECURED"}
        elif service == "DOOR_UNLOCK":
            changes = {"doorLockState": "UNLOCKED", "updateReason": "VEHICLE_UNSECURED"}
        elif service == "CLIMATE_NOW":
            changes = {"DCS_CCH_Ongoing": True}
        elif service == "CHARGE_NOW":
            if self.status.get("connectionStatus") != "CONNECTED":
                return "NOT_EXECUTED"
            changes = {
                "chargingStatus": "CHARGING",
                "chargingTimeRemaining": self._minutes_to_full(),
                "updateReason": "CHARGING_STARTED",
            }
        elif service == "VEHICLE_FINDER":
            changes = {"position": self._found_position()}
        elif service == "CHARGING_CONTROL":
            profile = execution.params.get("data")
            if isinstance(profile, dict):
                if "weeklyPlanner" not in profile and "twoTimesTimer" not in profile:
                    profile = {"weeklyPlanner": profile}
                self.datasets["chargingprofile"] = copy.deepcopy(profile)
        status_changed = bool(changes)
        self.status.update(copy.deepcopy(changes))
        if status_changed:
            self._stamp(now)
        effect: dict[str, Any] = {
            "eventId": execution.event_id,
            "serviceType": service,
            "time": api_time(now),
            "changes": changes,
        }
        if service == "CHARGING_CONTROL":
            effect["chargingProfile"] = self.dataset_body("chargingprofile")
        elif "count" in execution.params:
            effect["count"] = execution.params["count"]
        self.effects.append(effect)
        return "EXECUTED"

    def _stamp(self, now: datetime) -> None:
        self.status["updateTime"] = api_time(now)
        self.status["internalDataTimeUTC"] = internal_time(now)

    def _minutes_to_full(self) -> int:
        level = self.status.get("chargingLevelHv")
        if not isinstance(level, int | float) or isinstance(level, bool):
            level = 50
        return max(10, round((100 - min(max(level, 0), 100)) * 4))

    def _found_position(self) -> dict[str, Any]:
        old = self.status.get("position")
        old = old if isinstance(old, dict) else {}
        lat, lon = old.get("lat"), old.get("lon")
        if not (_is_number(lat) and _is_number(lon)):
            lat, lon = DEFAULT_POSITION
        heading = old.get("heading")
        if not isinstance(heading, int) or isinstance(heading, bool):
            heading = 0
        return {
            "lat": round(lat + FINDER_STEP[0], 6),
            "lon": round(lon + FINDER_STEP[1], 6),
            "heading": heading,
            "status": "OK",
        }

    def to_json(self, now: float, step: float) -> dict[str, Any]:
        """A debugging view for ``GET /_sim/vehicles``."""
        return {
            "vin": self.vin,
            "model": self.model,
            "driveTrain": self.drive_train,
            "source": self.source,
            "vehicleStatus": copy.deepcopy(self.status_view()),
            "datasets": sorted(self.dataset_views()),
            "executions": [e.to_json(now, step) for e in self.executions],
            "effects": copy.deepcopy(self.effects),
        }


# --------------------------------------------------------------------------------------------------
# The demo cars: a data table. Values were written for the simulator, in the captures' shapes.

_REMOTE_ALL = {
    "doorLock": "ACTIVATED",
    "doorUnlock": "ACTIVATED",
    "hornBlow": "ACTIVATED",
    "lightFlash": "ACTIVATED",
    "vehicleFinder": "ACTIVATED",
    "climateNow": "ACTIVATED",
    "sendPoi": "ACTIVATED",
}

_ENTRY_COMMON: dict[str, Any] = {
    "hub": "HUB_ECE",
    "countryCode": "V6",
    "steering": "LH",
    "hasAlarmSystem": True,
    "dealer": {
        "name": "Autohaus Simulator GmbH",
        "street": "Teststrasse 12",
        "postalCode": "80807",
        "city": "Muenchen",
        "country": "DE",
        "phone": "+49 89 0000000",
    },
    "breakdownNumber": "+49 89 0000001",
    "vehicleFinderRestriction": "NONE",
    "onlineSearchMode": "MAP",
    "onlineSearchProvider": "GOOGLE",
    "remote360": "NOT_SUPPORTED",
    "remoteSoftwareUpgrade": "NOT_SUPPORTED",
    "smartSolution": "NOT_SUPPORTED",
    "carCloud": "NOT_SUPPORTED",
    "ipa": "NOT_SUPPORTED",
    "intermodalRouting": "NOT_AVAILABLE",
    "climateNowRES": "NOT_SUPPORTED",
    "climateControlRES": "NOT_SUPPORTED",
    **_REMOTE_ALL,
}

_LIDS_CLOSED: dict[str, str] = {
    "doorDriverFront": "CLOSED",
    "doorDriverRear": "CLOSED",
    "doorPassengerFront": "CLOSED",
    "doorPassengerRear": "CLOSED",
    "windowDriverFront": "CLOSED",
    "windowDriverRear": "CLOSED",
    "windowPassengerFront": "CLOSED",
    "windowPassengerRear": "CLOSED",
    "rearWindow": "INVALID",
    "hood": "CLOSED",
    "trunk": "CLOSED",
}

_STATUS_COMMON: dict[str, Any] = {
    **_LIDS_CLOSED,
    "parkingLight": "OFF",
    "positionLight": "OFF",
    "singleImmediateCharging": False,
    "DCS_CCH_Activation": "NA",
    "DCS_CCH_Ongoing": False,
    "checkControlMessages": [],
}

_EV_STATUS: dict[str, Any] = {
    "chargingConnectionType": "CONDUCTIVE",
    "chargingInductivePositioning": "NOT_POSITIONED",
}


def _cbs(kind: str, due: str, km: int | None = None, state: str = "OK") -> dict[str, Any]:
    texts = {
        "OIL": "Next service due when the stated distance has been covered or by the specified date.",
        "BRAKE_FLUID": "Next change due at the latest by the stated date.",
        "VEHICLE_CHECK": "Next visual inspection due when the stated distance has been covered or by the stated date.",
        "VEHICLE_TUV": "Next statutory vehicle inspection due by the stated date.",
    }
    item: dict[str, Any] = {"cbsType": kind, "cbsState": state, "cbsDueDate": due}
    if km is not None:
        item["cbsRemainingMileage"] = km
    item["cbsDescription"] = texts[kind]
    return item


def _timer(departure: str, enabled: bool, days: list[str]) -> dict[str, Any]:
    return {"departureTime": departure, "timerEnabled": enabled, "weekdays": days}


_WORKDAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"]

#: One row per demo model: VIN prefix (11 characters; the last 6 are the car's index), minutes since
#: the last report, vehicle-list entry, status, data sets.
DEMO_MODELS: list[dict[str, Any]] = [
    {
        "vin_prefix": "WBY1Z21000V",
        "age_minutes": 12,
        "entry": {
            "model": "i3 (120 Ah)",
            "bodytype": "I01",
            "driveTrain": "BEV",
            "brand": "BMW_I",
            "color": "MINERALGRAU METALLIC MIT AKZENT BMW I BLAU",
            "colorCode": "B72",
            "yearOfConstruction": 2019,
            "licensePlate": "M-SI 101E",
            "hmiVersion": "ID5",
            "lscType": "I_LSC_IMM",
            "a4a": "USB_ONLY",
            "climateFunction": "AIRCONDITIONING",
            "climateControl": "NOT_SUPPORTED",
            "chargeNow": "ACTIVATED",
            "chargingControl": "WEEKLY_PLANNER",
            "supportedChargingModes": ["AC_LOW", "AC_HIGH", "DC"],
            "chargingUpdateMode": "NORMAL_PROGNOSE_BASED",
            "egoVehiclePath": None,
            "statisticsAvailable": True,
            "statisticsCommunityEnabled": True,
            "lastDestinations": "SUPPORTED",
            "rangeMap": "RANGE_POLYGON",
        },
        "status": {
            **_EV_STATUS,
            "mileage": 23417,
            "updateReason": "VEHICLE_SHUTDOWN_SECURED",
            "doorLockState": "SECURED",
            "sunroof": "CLOSED",
            "remainingFuel": 0,
            "chargingLevelHv": 64,
            "remainingRangeElectric": 172,
            "remainingRangeElectricMls": 107,
            "maxRangeElectric": 268,
            "maxRangeElectricMls": 167,
            "connectionStatus": "CONNECTED",
            "chargingStatus": "WAITING_FOR_CHARGING",
            "lastChargingEndReason": "CHARGING_GOAL_REACHED",
            "lastChargingEndResult": "SUCCESS",
            "position": {"lat": 48.137462, "lon": 11.575382, "heading": 212, "status": "OK"},
            "vehicleCountry": "DE",
            "steering": "LH",
            "cbsData": [_cbs("BRAKE_FLUID", "2023-04"), _cbs("VEHICLE_CHECK", "2023-04", 16000)],
        },
        "datasets": {
            "lastTrip": {
                "lastTrip": {
                    "efficiencyValue": 0.61,
                    "totalDistance": 23.4,
                    "electricDistance": 23.4,
                    "avgElectricConsumption": 14.2,
                    "avgRecuperation": 3.1,
                    "drivingModeValue": 0.2,
                    "accelerationValue": 0.55,
                    "anticipationValue": 0.72,
                    "totalConsumptionValue": 0.64,
                    "auxiliaryConsumptionValue": 0.81,
                    "avgCombinedConsumption": 0,
                    "electricDistanceRatio": 100,
                    "savedFuel": 1.4,
                    "date": "2021-10-29T07:42:00+0000",
                    "duration": 31,
                }
            },
            "allTrips": {
                "allTrips": {
                    "avgElectricConsumption": {
                        "communityLow": 0,
                        "communityAverage": 15.12,
                        "communityHigh": 31.8,
                        "userAverage": 14.05,
                    },
                    "avgRecuperation": {
                        "communityLow": 0,
                        "communityAverage": 3.42,
                        "communityHigh": 12.7,
                        "userAverage": 2.96,
                    },
                    "chargecycleRange": {
                        "communityAverage": 168.3,
                        "communityHigh": 290,
                        "userAverage": 181.5,
                        "userHigh": 247,
                        "userCurrentChargeCycle": 96,
                    },
                    "totalElectricDistance": {
                        "communityLow": 2,
                        "communityAverage": 21480.2,
                        "communityHigh": 98012.5,
                        "userTotal": 23417.0,
                    },
                    "avgCombinedConsumption": {
                        "communityLow": 0,
                        "communityAverage": 0.9,
                        "communityHigh": 5.1,
                        "userAverage": 0,
                    },
                    "batterySizeMax": 37900,
                    "savedCO2": 612.4,
                    "savedCO2greenEnergy": 2840.75,
                    "totalSavedFuel": 0,
                    "resetDate": "2019-06-14T09:12:44+0000",
                }
            },
            "chargingprofile": {
                "weeklyPlanner": {
                    "climatizationEnabled": True,
                    "chargingMode": "DELAYED_CHARGING",
                    "chargingPreferences": "CHARGING_WINDOW",
                    "timer1": _timer("07:15", True, _WORKDAYS),
                    "timer2": _timer("09:30", False, ["SATURDAY", "SUNDAY"]),
                    "timer3": _timer("00:00", False, []),
                    "overrideTimer": _timer("06:30", False, ["MONDAY"]),
                    "preferredChargingWindow": {"enabled": True, "startTime": "22:00", "endTime": "05:30"},
                }
            },
            "destinations": {
                "destinations": [
                    {
                        "lat": 48.177112,
                        "lon": 11.556403,
                        "country": "DEUTSCHLAND",
                        "city": "MUENCHEN",
                        "street": "AM OLYMPIAPARK",
                        "type": "DESTINATION",
                        "createdAt": "2021-10-28T16:20:03+0000",
                    },
                    {
                        "lat": 48.353719,
                        "lon": 11.786058,
                        "country": "DEUTSCHLAND",
                        "city": "MUENCHEN-FLUGHAFEN",
                        "street": "TERMINALSTRASSE MITTE",
                        "type": "DESTINATION",
                        "createdAt": "2021-10-21T05:02:41+0000",
                    },
                ]
            },
            "rangemap": {
                "rangemap": {
                    "center": {"lat": 48.137462, "lon": 11.575382},
                    "quality": "AVERAGE",
                    "rangemaps": [
                        {
                            "type": "ECO_PRO_PLUS",
                            "polyline": [
                                {"lat": 48.92, "lon": 11.58},
                                {"lat": 48.14, "lon": 12.74},
                                {"lat": 47.41, "lon": 11.57},
                                {"lat": 48.13, "lon": 10.41},
                            ],
                        },
                        {
                            "type": "COMFORT",
                            "polyline": [
                                {"lat": 48.79, "lon": 11.58},
                                {"lat": 48.14, "lon": 12.55},
                                {"lat": 47.53, "lon": 11.57},
                                {"lat": 48.13, "lon": 10.60},
                            ],
                        },
                    ],
                }
            },
        },
    },
    {
        "vin_prefix": "WBY8P61000V",
        "age_minutes": 95,
        "entry": {
            "model": "i3 94 (+ REX)",
            "bodytype": "I01",
            "driveTrain": "BEV_REX",
            "brand": "BMW_I",
            "color": "CAPPARISWEISS MIT AKZENT BMW I BLAU",
            "colorCode": "B85",
            "yearOfConstruction": 2017,
            "licensePlate": "HH-SI 202E",
            "hmiVersion": "ID4",
            "lscType": "I_LSC_IMM",
            "a4a": "USB_ONLY",
            "climateFunction": "AIRCONDITIONING",
            "climateControl": "NOT_SUPPORTED",
            "chargeNow": "ACTIVATED",
            "chargingControl": "WEEKLY_PLANNER",
            "supportedChargingModes": ["AC_LOW", "AC_HIGH"],
            "chargingUpdateMode": "NORMAL_PROGNOSE_BASED",
            "egoVehiclePath": "",
            "statisticsAvailable": True,
            "statisticsCommunityEnabled": False,
            "lastDestinations": "SUPPORTED",
            "rangeMap": "RANGE_CIRCLE",
        },
        "status": {
            **_EV_STATUS,
            "mileage": 61874,
            "updateReason": "VEHICLE_SECURED",
            "doorLockState": "LOCKED",
            "remainingFuel": 6.5,
            "maxFuel": 9,
            "remainingRangeFuel": 98,
            "remainingRangeFuelMls": 61,
            "chargingLevelHv": 38,
            "remainingRangeElectric": 71,
            "remainingRangeElectricMls": 44,
            "maxRangeElectric": 187,
            "maxRangeElectricMls": 116,
            "connectionStatus": "DISCONNECTED",
            "chargingStatus": "INVALID",
            "lastChargingEndReason": "END_REQUESTED_BY_DRIVER",
            "lastChargingEndResult": "SUCCESS",
            "position": {"lat": 53.550341, "lon": 9.992547, "heading": 87, "status": "OK"},
            "vehicleCountry": "DE",
            "steering": "LH",
            "cbsData": [
                _cbs("BRAKE_FLUID", "2021-11", state="PENDING"),
                _cbs("VEHICLE_CHECK", "2022-05", 4200),
            ],
        },
        "datasets": {
            "lastTrip": {
                "lastTrip": {
                    "efficiencyValue": 0.48,
                    "totalDistance": 112.6,
                    "electricDistance": 96.3,
                    "avgElectricConsumption": 16.9,
                    "avgRecuperation": 1.8,
                    "drivingModeValue": 0,
                    "accelerationValue": 0.41,
                    "anticipationValue": 0.66,
                    "totalConsumptionValue": 0.52,
                    "auxiliaryConsumptionValue": 0.7,
                    "avgCombinedConsumption": 1.1,
                    "electricDistanceRatio": 86,
                    "savedFuel": 0,
                    "date": "2021-11-01T18:05:00+0000",
                    "duration": 84,
                }
            },
            "allTrips": {
                "allTrips": {
                    "avgElectricConsumption": {
                        "communityLow": 0,
                        "communityAverage": 15.87,
                        "communityHigh": 33.4,
                        "userAverage": 15.31,
                    },
                    "avgRecuperation": {
                        "communityLow": 0,
                        "communityAverage": 3.55,
                        "communityHigh": 13.9,
                        "userAverage": 2.48,
                    },
                    "chargecycleRange": {
                        "communityAverage": 131.2,
                        "communityHigh": 210,
                        "userAverage": 118.4,
                        "userHigh": 176,
                        "userCurrentChargeCycle": 42,
                    },
                    "totalElectricDistance": {
                        "communityLow": 1,
                        "communityAverage": 30122.8,
                        "communityHigh": 121004.3,
                        "userTotal": 55206.9,
                    },
                    "avgCombinedConsumption": {
                        "communityLow": 0,
                        "communityAverage": 1.32,
                        "communityHigh": 6.5,
                        "userAverage": 0.61,
                    },
                    "batterySizeMax": 27200,
                    "savedCO2": 1402.3,
                    "savedCO2greenEnergy": 6120.5,
                    "totalSavedFuel": 0,
                    "resetDate": "2017-03-02T11:40:09+0000",
                }
            },
            "chargingprofile": {
                "weeklyPlanner": {
                    "climatizationEnabled": False,
                    "chargingMode": "IMMEDIATE_CHARGING",
                    "chargingPreferences": "NO_PRESELECTION",
                    "timer1": _timer("06:45", True, ["MONDAY", "WEDNESDAY", "FRIDAY"]),
                    "timer2": _timer("07:00", False, []),
                    "timer3": _timer("07:00", False, []),
                    "preferredChargingWindow": {"enabled": False, "startTime": "00:00", "endTime": "00:00"},
                }
            },
            "destinations": {
                "destinations": [
                    {
                        "lat": 53.552843,
                        "lon": 10.006431,
                        "country": "DEUTSCHLAND",
                        "city": "HAMBURG",
                        "street": "HACHMANNPLATZ",
                        "type": "DESTINATION",
                        "createdAt": "2021-10-30T13:11:52+0000",
                    },
                ]
            },
            "rangemap": {
                "rangemap": {
                    "center": {"lat": 53.550341, "lon": 9.992547},
                    "quality": "AVERAGE",
                    "rangemaps": [
                        {
                            "type": "ECO_PRO_PLUS",
                            "polyline": [
                                {"lat": 53.87, "lon": 9.99},
                                {"lat": 53.55, "lon": 10.53},
                                {"lat": 53.23, "lon": 9.99},
                                {"lat": 53.55, "lon": 9.46},
                            ],
                        },
                        {
                            "type": "COMFORT",
                            "polyline": [
                                {"lat": 53.82, "lon": 9.99},
                                {"lat": 53.55, "lon": 10.45},
                                {"lat": 53.28, "lon": 9.99},
                                {"lat": 53.55, "lon": 9.54},
                            ],
                        },
                    ],
                }
            },
        },
    },
    {
        "vin_prefix": "WBAJA91000B",
        "age_minutes": 240,
        "entry": {
            "model": "530e iPerformance",
            "bodytype": "G30",
            "driveTrain": "PHEV",
            "fuelType": "PETROL",
            "brand": "BMW",
            "color": "CARBONSCHWARZ METALLIC",
            "colorCode": "416",
            "yearOfConstruction": 2018,
            "licensePlate": "S-SI 530E",
            "hmiVersion": "ID5",
            "lscType": "LSC_PHEV",
            "a4a": "BLUETOOTH",
            "climateFunction": "AIRCONDITIONING",
            "climateControl": "DEPARTURE_TIMER",
            "chargeNow": "ACTIVATED",
            "chargingControl": "WEEKLY_PLANNER",
            "supportedChargingModes": ["AC_LOW"],
            "chargingUpdateMode": "NORMAL_PROGNOSE_BASED",
            "egoVehiclePath": None,
            "statisticsAvailable": True,
            "statisticsCommunityEnabled": False,
            "lastDestinations": "NOT_SUPPORTED",
            "rangeMap": "NOT_SUPPORTED",
        },
        "status": {
            **_EV_STATUS,
            "mileage": 38250,
            "updateReason": "VEHICLE_SHUTDOWN",
            "doorLockState": "SECURED",
            "remainingFuel": 31,
            "maxFuel": 46,
            "fuelPercent": 67.4,
            "remainingRangeFuel": 455,
            "remainingRangeFuelMls": 283,
            "chargingLevelHv": 91,
            "remainingRangeElectric": 38,
            "remainingRangeElectricMls": 24,
            "maxRangeElectric": 42,
            "maxRangeElectricMls": 26,
            "connectionStatus": "DISCONNECTED",
            "chargingStatus": "INVALID",
            "lastChargingEndReason": "CHARGING_GOAL_REACHED",
            "lastChargingEndResult": "SUCCESS",
            "position": {"lat": 48.783333, "lon": 9.181667, "heading": 301, "status": "OK"},
            "vehicleCountry": "DE",
            "cbsData": [
                _cbs("OIL", "2022-09", 13500),
                _cbs("BRAKE_FLUID", "2022-09"),
                _cbs("VEHICLE_TUV", "2023-03"),
                _cbs("VEHICLE_CHECK", "2022-09", 41000),
            ],
        },
        "datasets": {
            "lastTrip": {
                "lastTrip": {
                    "efficiencyValue": 0.74,
                    "totalDistance": 41,
                    "electricDistance": 33,
                    "avgElectricConsumption": 18.3,
                    "avgRecuperation": 2.7,
                    "drivingModeValue": 0.4,
                    "totalConsumptionValue": 0.8,
                    "avgCombinedConsumption": 1.6,
                    "electricDistanceRatio": 80,
                    "savedFuel": 2.1,
                    "date": "2021-11-02T16:48:00+0000",
                    "duration": 37,
                    "chargingBehaviorValue": 0.9,
                    "electricDistanceShareValue": 0.8,
                }
            },
            "allTrips": {
                "allTrips": {
                    "avgElectricConsumption": {
                        "communityLow": 0.12,
                        "communityAverage": 6.02,
                        "communityHigh": 22.4,
                        "userAverage": 9.8,
                    },
                    "avgRecuperation": {
                        "communityLow": 1.1,
                        "communityAverage": 5.2,
                        "communityHigh": 18.6,
                        "userAverage": 4.4,
                    },
                    "chargecycleRange": {
                        "communityAverage": 12.3,
                        "communityHigh": 61.5,
                        "userAverage": 31.7,
                        "userHigh": 46,
                        "userCurrentChargeCycle": 8,
                    },
                    "totalElectricDistance": {
                        "communityLow": 350.2,
                        "communityAverage": 14210.6,
                        "communityHigh": 60321,
                        "userTotal": 17344.1,
                    },
                    "avgCombinedConsumption": {
                        "communityLow": 2.3,
                        "communityAverage": 5.8,
                        "communityHigh": 10.4,
                        "userAverage": 3.9,
                    },
                    "totalSavedFuel": 812.4,
                    "resetDate": "2018-08-20T10:00:00+0000",
                    "batterySizeMax": 9140,
                }
            },
            "chargingprofile": {
                "weeklyPlanner": {
                    "climatizationEnabled": True,
                    "chargingMode": "IMMEDIATE_CHARGING",
                    "chargingPreferences": "NO_PRESELECTION",
                    "timer1": _timer("07:30", True, _WORKDAYS),
                    "timer2": _timer("08:00", False, []),
                    "timer3": _timer("08:00", False, []),
                    "overrideTimer": _timer("06:00", False, ["TUESDAY"]),
                    "preferredChargingWindow": {"startTime": "00:00", "endTime": "00:00"},
                }
            },
        },
    },
    {
        "vin_prefix": "WBAHS91000P",
        "age_minutes": 1440,
        "entry": {
            "model": "X1 sDrive18i",
            "bodytype": "F48",
            "driveTrain": "CONV",
            "fuelType": "PETROL",
            "brand": "BMW",
            "color": "ALPINWEISS  III",
            "colorCode": "300",
            "yearOfConstruction": 2018,
            "licensePlate": "N-SI 1801",
            "hmiVersion": "ID5",
            "lscType": "LSC_BASIS",
            "a4a": "BLUETOOTH",
            "climateFunction": "VENTILATION",
            "climateControl": "START_TIMER",
            "chargeNow": "NOT_SUPPORTED",
            "chargingControl": "NOT_SUPPORTED",
            "statisticsAvailable": False,
            "statisticsCommunityEnabled": False,
            "lastDestinations": "NOT_SUPPORTED",
            "rangeMap": "NOT_SUPPORTED",
        },
        "status": {
            "mileage": 30912,
            "updateReason": "DOOR_STATE_CHANGED",
            "doorLockState": "UNLOCKED",
            "remainingFuel": 41,
            "remainingRangeFuel": 610,
            "remainingRangeFuelMls": 379,
            "position": {"lat": 49.452103, "lon": 11.076665, "heading": 14, "status": "OK"},
            "steering": "LH",
            "cbsData": [
                _cbs("OIL", "2022-04", 7800),
                _cbs("VEHICLE_CHECK", "2023-04", 37000),
                _cbs("BRAKE_FLUID", "2022-04"),
            ],
            "checkControlMessages": [
                {
                    "ccmId": 257,
                    "ccmMileage": 30880,
                    "ccmDescriptionShort": "Washer fluid low",
                    "ccmDescriptionLong": "Top up the washer fluid at the next opportunity.",
                }
            ],
        },
        "datasets": {},
    },
]


class DemoVehicle(SimVehicle):
    """A demo car that keeps only what is its own (its VIN and report time) until its data is read or changed
    through ``entry``, ``status`` or ``datasets``: then it gets its own deep copy, as any car has. Until then the
    server answers from its model (``entry_view``...), so 10,000 cars served and never changed take little memory.
    """

    def __init__(self, model: _Template, vin: str, reported: datetime):
        self._model = model
        self._vin = vin
        self._times = (api_time(reported), internal_time(reported))
        self._entry: dict[str, Any] | None = None
        self._status: dict[str, Any] | None = None
        self._datasets: dict[str, Any] | None = None
        self.executions: list[SimExecution] = []
        self.effects: list[dict[str, Any]] = []
        self.source = "demo"

    def entry_view(self) -> dict[str, Any]:
        if self._entry is not None:
            return self._entry
        return {"vin": self._vin, **self._model.entry}

    def status_view(self) -> dict[str, Any]:
        if self._status is not None:
            return self._status
        update, internal = self._times
        return {"vin": self._vin, **self._model.status, "updateTime": update, "internalDataTimeUTC": internal}

    @property
    def vin(self) -> str:
        return self._vin if self._entry is None else super().vin

    def dataset_views(self) -> dict[str, Any]:
        return self._datasets if self._datasets is not None else self._model.datasets

    @property  # type: ignore[override]
    def entry(self) -> dict[str, Any]:
        if self._entry is None:
            self._entry = copy.deepcopy(self.entry_view())
        return self._entry

    @entry.setter
    def entry(self, value: dict[str, Any]) -> None:
        self._entry = value

    @property  # type: ignore[override]
    def status(self) -> dict[str, Any]:
        if self._status is None:
            self._status = copy.deepcopy(self.status_view())
        return self._status

    @status.setter
    def status(self, value: dict[str, Any]) -> None:
        self._status = value

    @property  # type: ignore[override]
    def datasets(self) -> dict[str, Any]:
        if self._datasets is None:
            self._datasets = copy.deepcopy(self._model.datasets)
        return self._datasets

    @datasets.setter
    def datasets(self, value: dict[str, Any]) -> None:
        self._datasets = value


@dataclass(frozen=True)
class _Template:
    """A demo model's entry and status as every car of it starts (without the VIN), and its data sets."""

    entry: dict[str, Any]
    status: dict[str, Any]
    datasets: dict[str, Any]


#: built once per model (by its VIN prefix), shared by its cars; never changed
_TEMPLATES: dict[str, _Template] = {}


def _template(model: dict[str, Any]) -> _Template:
    template = _TEMPLATES.get(model["vin_prefix"])
    if template is None:
        entry = copy.deepcopy(model["entry"])
        for key, value in _ENTRY_COMMON.items():
            entry.setdefault(key, copy.deepcopy(value))
        status = {**copy.deepcopy(_STATUS_COMMON), **copy.deepcopy(model["status"])}
        template = _TEMPLATES[model["vin_prefix"]] = _Template(entry, status, copy.deepcopy(model["datasets"]))
    return template


def _build_demo(model: dict[str, Any], index: int, now: datetime) -> SimVehicle:
    vin = f"{model['vin_prefix']}{index:06d}"
    return DemoVehicle(_template(model), vin, now - timedelta(minutes=model["age_minutes"]))


def demo_vehicles(count: int | None = None, *, now: datetime | None = None) -> list[SimVehicle]:
    """The 4 demo cars (BEV, BEV_REX, PHEV, petrol), or ``count`` cars cycling through them.

    Each call gives fresh deep copies; the last report of each car is dated a little before ``now``.
    """
    if count is None:
        count = len(DEMO_MODELS)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise SimulatorError(f"the number of demo vehicles must be a whole number >= 1, not {count!r}")
    if count > 999_999:
        raise SimulatorError(f"at most 999999 demo vehicles, not {count}")
    moment = now if now is not None else datetime.now(UTC)
    return [_build_demo(DEMO_MODELS[(i - 1) % len(DEMO_MODELS)], i, moment) for i in range(1, count + 1)]


# --------------------------------------------------------------------------------------------------
# Cars from folders of captures


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SimulatorError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SimulatorError(f"{path} is not UTF-8 text; a captured JSON response is expected") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SimulatorError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def _has_content(body: Any) -> bool:
    """Whether a data set body holds data (``{"lastTrip": {}}`` and ``{"destinations": []}`` do not)."""
    if not isinstance(body, dict):
        return bool(body)
    return any(bool(value) for value in body.values())


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def infer_drive_train(status: dict[str, Any]) -> str:
    """Guess the drive train from which status fields a capture holds (no vehicle list at hand)."""
    if "chargingStatus" not in status and "connectionStatus" not in status:
        return "CONV"
    if "remainingRangeFuel" not in status:
        return "BEV"
    max_fuel = status.get("maxFuel")
    if _is_number(max_fuel) and 0 < max_fuel <= 10:
        return "BEV_REX"
    return "PHEV"


def _synthesise_entry(folder: Path, vin: str, status: dict[str, Any], datasets: dict[str, Any]) -> dict[str, Any]:
    """A vehicle-list entry for a folder without one, inferred from the status and the data sets."""
    drive_train = infer_drive_train(status)
    electric = drive_train != "CONV"
    match = re.search(r"(?:^|_)([A-Z]\d{2})(?:_|$)", folder.name)
    bodytype = match.group(1) if match else None
    entry: dict[str, Any] = {"vin": vin, "model": folder.name}
    if bodytype:
        entry["bodytype"] = bodytype
    entry["driveTrain"] = drive_train
    entry["brand"] = "BMW_I" if bodytype and bodytype.startswith("I") else "BMW"
    entry["hub"] = "HUB_ECE"
    if isinstance(status.get("steering"), str):
        entry["steering"] = status["steering"]
    entry["lscType"] = {"CONV": "LSC_BASIS", "PHEV": "LSC_PHEV"}.get(drive_train, "I_LSC_IMM")
    entry["statisticsAvailable"] = _has_content(datasets.get("lastTrip")) or _has_content(datasets.get("allTrips"))
    entry["statisticsCommunityEnabled"] = False
    entry["chargingControl"] = "WEEKLY_PLANNER" if "chargingprofile" in datasets else "NOT_SUPPORTED"
    if electric:
        entry["supportedChargingModes"] = ["AC_LOW"]
    entry.update(_REMOTE_ALL)
    entry["chargeNow"] = "ACTIVATED" if electric else "NOT_SUPPORTED"
    entry["climateControl"] = "NOT_SUPPORTED"
    entry["lastDestinations"] = "SUPPORTED" if _has_content(datasets.get("destinations")) else "NOT_SUPPORTED"
    entry["rangeMap"] = "RANGE_CIRCLE" if _has_content(datasets.get("rangemap")) else "NOT_SUPPORTED"
    entry["remote360"] = "NOT_SUPPORTED"
    entry["intermodalRouting"] = "NOT_AVAILABLE"
    return entry


def _vehicle_list_file(folder: Path) -> Path | None:
    exact = folder / "vehicles.json"
    if exact.is_file():
        return exact
    candidates = sorted(p for p in folder.glob("vehicles*.json") if p.is_file())
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise SimulatorError(f"{folder} holds several vehicle lists ({names}); rename the one to use to vehicles.json")
    return candidates[0] if candidates else None


def _pick_entry(path: Path, data: Any, vin: str | None) -> dict[str, Any] | None:
    vehicles = data.get("vehicles") if isinstance(data, dict) else data
    if not isinstance(vehicles, list) or not all(isinstance(v, dict) for v in vehicles):
        raise SimulatorError(f'{path} is not a vehicle list: expected {{"vehicles": [{{...}}, ...]}}')
    if not vehicles:
        return None
    for candidate in vehicles:
        if vin is not None and candidate.get("vin") == vin:
            return copy.deepcopy(candidate)
    return copy.deepcopy(vehicles[0])


def load_vehicle_dir(path: Path) -> SimVehicle:
    """A car from a folder of captures (``status.json`` required; vehicle list and data sets optional)."""
    folder = Path(path)
    if not folder.is_dir():
        raise SimulatorError(f"vehicle folder {folder} does not exist or is not a folder")
    status_file = folder / "status.json"
    if not status_file.is_file():
        hints = sorted(p.name for p in folder.glob("status*.json"))
        hint = f"; it has {', '.join(hints)}: copy or rename the one to serve to status.json" if hints else ""
        raise SimulatorError(f"vehicle folder {folder} has no status.json (it is required){hint}")
    body = _read_json(status_file)
    status = body.get("vehicleStatus") if isinstance(body, dict) else None
    if not isinstance(status, dict):
        raise SimulatorError(f'{status_file} is not a status response: expected {{"vehicleStatus": {{...}}}}')

    datasets: dict[str, Any] = {}
    for name, (files, _empty) in DATASETS.items():
        for file_name in files:
            file = folder / file_name
            if file.is_file():
                datasets[name] = _read_json(file)
                break

    status_vin = status.get("vin") if isinstance(status.get("vin"), str) and status.get("vin") else None
    list_file = _vehicle_list_file(folder)
    entry = _pick_entry(list_file, _read_json(list_file), status_vin) if list_file else None
    entry_vin = entry.get("vin") if entry and isinstance(entry.get("vin"), str) and entry.get("vin") else None
    vin = status_vin or entry_vin or folder.name
    if entry is None:
        entry = _synthesise_entry(folder, vin, status, datasets)
    vehicle = SimVehicle(entry=entry, status=copy.deepcopy(status), datasets=datasets, source=str(folder))
    vehicle.set_vin(vin)
    logger.debug("loaded %s (%s, %s) from %s", vin, vehicle.model, vehicle.drive_train, folder)
    return vehicle


def _unique_vins(vehicles: Iterable[SimVehicle]) -> list[SimVehicle]:
    """Rename repeated VINs (anonymised captures often say ``ANONYMOUS``) to ``VIN_2``, ``VIN_3``..."""
    seen: set[str] = set()
    result = []
    for vehicle in vehicles:
        vin = vehicle.vin
        if vin in seen:
            number = 2
            while f"{vin}_{number}" in seen:
                number += 1
            new_vin = f"{vin}_{number}"
            logger.warning("VIN %s of %s is already served; serving this car as %s", vin, vehicle.source, new_vin)
            vehicle.set_vin(new_vin)
        seen.add(vehicle.vin)
        result.append(vehicle)
    return result


def build_vehicles(vehicle_dirs: list[Path], count: int | None) -> list[SimVehicle]:
    """The cars to serve: from the folders when any are given (``count`` is then ignored), else demo cars."""
    if vehicle_dirs:
        if count is not None:
            logger.warning(
                "serving the %d vehicle folder(s) given; the vehicle count %d is ignored", len(vehicle_dirs), count
            )
        return _unique_vins(load_vehicle_dir(Path(d)) for d in vehicle_dirs)
    return demo_vehicles(count)
