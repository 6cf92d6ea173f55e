"""Built-in demo cars for a clone without ../shared: written for the simulator, typed like real answers.

Values are strings with units and per-key timestamps, a key without data keeps its unit, and one
value is the literal ``-NA-``, as in BMW's telematicData answers (facts file section 2.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MAPPINGS", "MODELS", "DemoModel", "empty_tyre_diagnosis"]

Value = tuple[str | None, str | None, str | None]  # value, unit, timestamp


@dataclass(frozen=True)
class DemoModel:
    name: str
    basic_data: dict[str, Any]
    telematic: dict[str, Value]


_T1 = "2026-11-28T17:02:11.000Z"
_T2 = "2026-11-28T18:40:05.512Z"

_BEV = DemoModel(
    name="i4 eDrive40",
    basic_data={
        "bodyType": "Gran Coupe",
        "brand": "BMW",
        "chargingModes": ["AC_LOW", "DC"],
        "colourCodeRaw": "475",
        "colourDescription": "SAPHIRSCHWARZ METALLIC",
        "constructionDate": "2024-03-11T00:00:00.000+0000",
        "countryCode": "DE",
        "driveTrain": "BEV",
        "engine": "HA0002N0",
        "fullSAList": "0230,0302,0322,0430,0494,0548,06AC,06AE",
        "hasNavi": True,
        "hasSunRoof": False,
        "headUnit": "MGU_02_A",
        "modelKey": "71AW",
        "modelName": "i4 eDrive40",
        "numberOfDoors": 5,
        "propulsionType": "EL",
        "series": "4",
        "seriesDevt": "G26",
        "simStatus": "ACTIVE",
        "steering": "LL",
    },
    telematic={
        "vehicle.drivetrain.batteryManagement.header": ("68", "%", _T2),
        "vehicle.powertrain.electric.battery.stateOfCharge.target": ("80", "%", _T1),
        "vehicle.drivetrain.electricEngine.kombiRemainingElectricRange": ("301", "km", _T2),
        "vehicle.drivetrain.electricEngine.remainingElectricRange": ("298", "km", _T2),
        "vehicle.drivetrain.electricEngine.charging.status": ("NOCHARGING", None, _T1),
        "vehicle.drivetrain.electricEngine.charging.hvStatus": ("NOT_CHARGING", None, _T1),
        "vehicle.drivetrain.electricEngine.charging.timeRemaining": (None, "min", None),
        "vehicle.body.chargingPort.status": ("DISCONNECTED", None, _T1),
        "vehicle.cabin.door.status": ("SECURED", None, _T2),
        "vehicle.vehicle.travelledDistance": ("18342", "km", _T2),
        "vehicle.cabin.infotainment.navigation.currentLocation.latitude": ("48.177", "degrees", _T2),
        "vehicle.cabin.infotainment.navigation.currentLocation.longitude": ("11.559", "degrees", _T2),
        "vehicle.cabin.infotainment.navigation.currentLocation.heading": ("-NA-", "degrees", _T2),
        "vehicle.vehicle.preConditioning.activity": ("INACTIVE", None, _T1),
        "vehicle.electricalSystem.battery.voltage": ("12.6", "V", _T1),
    },
)

_ICE = DemoModel(
    name="X1 sDrive18i",
    basic_data={
        "bodyType": "Sports Activity Vehicle",
        "brand": "BMW",
        "colourCodeRaw": "300",
        "colourDescription": "ALPINWEISS III",
        "constructionDate": "2023-05-02T00:00:00.000+0000",
        "countryCode": "AT",
        "driveTrain": "CONV",
        "engine": "B38N",
        "fullSAList": "0230,0302,0322,0420,0548,0654",
        "hasNavi": True,
        "hasSunRoof": False,
        "headUnit": "HU_MGU",
        "modelKey": "11EE",
        "modelName": "X1 sDrive18i",
        "numberOfDoors": 5,
        "propulsionType": "BE",
        "series": "X",
        "seriesDevt": "U11",
        "simStatus": "ACTIVE",
        "steering": "LL",
    },
    telematic={
        "vehicle.drivetrain.fuelSystem.level": ("41", "%", _T2),
        "vehicle.drivetrain.fuelSystem.remainingFuel": ("19", None, _T2),
        "vehicle.drivetrain.lastRemainingRange": ("322", "km", _T2),
        "vehicle.vehicle.travelledDistance": ("40517", "km", _T2),
        "vehicle.cabin.door.status": ("SECURED", None, _T2),
        "vehicle.electricalSystem.battery.voltage": ("14.1", "V", _T1),
        "vehicle.chassis.axle.row1.wheel.left.tire.pressure": ("240", "kPa", _T1),
        "vehicle.chassis.axle.row1.wheel.right.tire.pressure": ("240", "kPa", _T1),
        "vehicle.chassis.axle.row2.wheel.left.tire.pressure": ("250", "kPa", _T1),
        "vehicle.chassis.axle.row2.wheel.right.tire.pressure": ("250", "kPa", _T1),
        "vehicle.chassis.axle.row1.wheel.left.tire.temperature": (None, "Celsius", None),
        "vehicle.status.serviceDistance.next": ("8200", "km", _T1),
    },
)

MODELS: tuple[DemoModel, ...] = (_BEV, _ICE)
#: VIN and mapping date of the demo cars (17 upper-case characters, as BMW checks them)
MAPPINGS: tuple[tuple[str, str], ...] = (
    ("WBY71AW000SIM0001", "2025-04-02T09:15:00.000Z"),
    ("WBA11EE000SIM0002", "2024-06-18T16:30:00.000Z"),
)


def _tyre(label: str) -> dict[str, Any]:
    return {
        "dimension": {"aspectRatio": 0, "label": "Dimension", "loadIndex": 0, "rimDiameter": 0, "sectionWidth": 0},
        "label": label,
        "mountingDate": {"label": "Mounting date"},
        "season": {"label": "Season"},
        "tyreDefect": {"label": "Tyre pressure status"},
        "tyreWear": {"dueMileage": 0, "label": "Service due in"},
    }


def empty_tyre_diagnosis() -> dict[str, Any]:
    """A tyre diagnosis of a car without tyre data: labels and zero fillers only."""

    def tyres(label: str) -> dict[str, Any]:
        return {
            "aggregatedQualityStatus": {"label": "Data source"},
            "frontLeft": _tyre("Front left tyre"),
            "frontRight": _tyre("Front right tyre"),
            "label": label,
            "rearLeft": _tyre("Rear left tyre"),
            "rearRight": _tyre("Rear right tyre"),
        }

    return {"errors": [], "passengerCar": {"mountedTyres": tyres("Mounted"), "unmountedTyres": tyres("Unmounted")}}
