"""The built-in vendor simulator: the legacy BMW ConnectedDrive API over real HTTP (CONTRACT section 6).

It lets the bridge, its tests and ``mqttbridge demo`` run without a car or an account, with cars
whose commands really change them and with the failures the real API was known for.
"""

from __future__ import annotations

import logging

from .server import SimulatorServer
from .vehicles import (
    SimExecution,
    SimulatorError,
    SimVehicle,
    build_vehicles,
    demo_vehicles,
    load_vehicle_dir,
)

logger = logging.getLogger(__name__)

__all__ = [
    "SimExecution",
    "SimVehicle",
    "SimulatorError",
    "SimulatorServer",
    "build_vehicles",
    "demo_vehicles",
    "load_vehicle_dir",
]
