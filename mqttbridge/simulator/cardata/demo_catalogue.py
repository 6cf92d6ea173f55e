"""A part of BMW's telematic data catalogue, built in for a clone without ../shared (a user's install).

The demo cars (``demo_data``) carry values for a few dozen keys; a client's container may ask for more, and
the simulator refuses a key it does not know (CU-402), as BMW does. These are further keys of the real
catalogue (``../shared/fixtures/bmw_cardata/catalogue``), with its unit and data type, that the demo cars have
no value for: a container may name them, and REST reads return them with a null value, keeping the unit.
They are at least the keys mqttbridge's own container asks for (``tests/test_demo.py`` checks that).
"""

from __future__ import annotations

__all__ = ["KEYS"]

#: descriptor key -> (unit, data type), as the catalogue has them (an empty unit is None; "-": no type given)
KEYS: dict[str, tuple[str | None, str]] = {
    "vehicle.powertrain.electric.battery.stateOfCharge.displayed": ("percent", "float"),
    "vehicle.cabin.door.lock.status": (None, "-"),
    "vehicle.powertrain.tractionBattery.charging.port.anyPosition.isPlugged": (None, "boolean"),
    "vehicle.cabin.infotainment.navigation.currentLocation.altitude": (None, "double"),
    "vehicle.drivetrain.totalRemainingRange": ("km", "float"),
    "vehicle.drivetrain.batteryManagement.maxEnergy": ("kWh", "float"),
    "vehicle.drivetrain.electricEngine.charging.level": ("%", "float"),
    "vehicle.drivetrain.electricEngine.charging.timeToFullyCharged": ("min", "uint16"),
    "vehicle.drivetrain.electricEngine.charging.acVoltage": ("V", "float"),
    "vehicle.drivetrain.electricEngine.charging.acAmpere": ("A", "uint8"),
    "vehicle.drivetrain.electricEngine.charging.phaseNumber": (None, "string"),
    "vehicle.drivetrain.electricEngine.charging.method": (None, "string"),
    "vehicle.drivetrain.electricEngine.charging.lastChargingResult": (None, "string"),
    "vehicle.drivetrain.electricEngine.charging.reasonChargingEnd": (None, "string"),
    "vehicle.powertrain.electric.battery.charging.power": ("W", "int32"),
    "vehicle.powertrain.electric.battery.charging.acLimit.selected": ("A", "uint8"),
    "vehicle.body.chargingPort.lockedStatus": (None, "string"),
    "vehicle.cabin.door.row1.driver.isOpen": (None, "boolean"),
    "vehicle.cabin.door.row1.passenger.isOpen": (None, "boolean"),
    "vehicle.cabin.door.row2.driver.isOpen": (None, "boolean"),
    "vehicle.cabin.door.row2.passenger.isOpen": (None, "boolean"),
    "vehicle.cabin.window.row1.driver.status": (None, "string"),
    "vehicle.cabin.window.row1.passenger.status": (None, "string"),
    "vehicle.cabin.window.row2.driver.status": (None, "string"),
    "vehicle.cabin.window.row2.passenger.status": (None, "string"),
    "vehicle.body.trunk.isOpen": (None, "boolean"),
    "vehicle.body.trunk.isLocked": (None, "boolean"),
    "vehicle.body.trunk.window.isOpen": (None, "boolean"),
    "vehicle.body.hood.isOpen": (None, "boolean"),
    "vehicle.cabin.sunroof.overallStatus": (None, "string"),
    "vehicle.electricalSystem.battery.stateOfCharge": ("%", "-"),
    "vehicle.electricalSystem.battery.serviceDemand.replace": (None, "-"),
    "vehicle.electricalSystem.battery.serviceDemand.recharge": (None, "-"),
    "vehicle.chassis.axle.row1.wheel.left.tire.pressureTarget": ("kPa", "uint16"),
    "vehicle.chassis.axle.row1.wheel.right.tire.pressureTarget": ("kPa", "uint16"),
    "vehicle.chassis.axle.row1.wheel.right.tire.temperature": ("Celsius", "float"),
    "vehicle.chassis.axle.row2.wheel.left.tire.pressureTarget": ("kPa", "uint16"),
    "vehicle.chassis.axle.row2.wheel.left.tire.temperature": ("Celsius", "float"),
    "vehicle.chassis.axle.row2.wheel.right.tire.pressureTarget": ("kPa", "uint16"),
    "vehicle.chassis.axle.row2.wheel.right.tire.temperature": ("Celsius", "float"),
    "vehicle.status.serviceTime.inspectionDateLegal": (None, "string"),
    "vehicle.status.conditionBasedServices": (None, "-"),
    "vehicle.status.checkControlMessages": (None, "-"),
    "vehicle.vehicle.preConditioning.remainingTime": ("min", "uint8"),
    "vehicle.cabin.hvac.preconditioning.status.comfortState": (None, "string"),
    "vehicle.isMoving": (None, "boolean"),
    "vehicle.vehicle.antiTheftAlarmSystem.alarm.armStatus": (None, "string"),
}
