"""A provider outside mqttbridge: its own account keys, a polled read and a pushed (streamed) status.

Everything here goes through mqttbridge's public pieces (``ProviderSpec``, ``account_schema``, ``Backend``);
the core does not know it exists until the entry point ``mqttbridge.providers: tiny`` is installed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mqttbridge.backends.base import Backend, StatusSink
from mqttbridge.config import AccountConfig, Key, account_schema
from mqttbridge.errors import UnsupportedError
from mqttbridge.model import CommandRequest, DriveTrain, ExecutionUpdate, VehicleInfo, VehicleStatus
from mqttbridge.providers import ProviderSpec


@dataclass(frozen=True, kw_only=True)
class TinyAccount(AccountConfig):
    tractors: int = 1
    fuel: float = 12.5

    def where(self) -> str:
        return f"{self.tractors} tractor(s)"


class TinyBackend(Backend):
    provider = "tiny"

    def __init__(self, account: TinyAccount, store: Any, **kwargs: Any) -> None:
        super().__init__(account, store, **kwargs)
        self.tiny = account
        self._pusher: threading.Thread | None = None

    def _vin(self, n: int) -> str:
        return f"TINY{n:013d}"

    def list_vehicles(self) -> list[VehicleInfo]:
        return [VehicleInfo(self._vin(n), "Tractor", "Tiny", DriveTrain.CONV) for n in range(self.tiny.tractors)]

    def read_status(self, vehicle: VehicleInfo, *, force: bool = False) -> VehicleStatus:
        return VehicleStatus(
            vehicle.vin, {"fuel_level": self.tiny.fuel, "source": "read"}, fetched_at=datetime.now(UTC)
        )

    def read_dataset(self, vehicle: VehicleInfo, name: str) -> Any:
        raise UnsupportedError("tractors have no data sets")

    def execute(self, vehicle: VehicleInfo, request: CommandRequest) -> ExecutionUpdate:
        raise UnsupportedError("tractors take no commands")

    def execution_status(self, vehicle: VehicleInfo, started: ExecutionUpdate) -> ExecutionUpdate:
        raise UnsupportedError("tractors take no commands")

    def start(self, sink: StatusSink) -> None:
        """A stream of one message: the first tractor says it has been refuelled."""

        def push() -> None:
            sink.push(
                self._vin(0),
                VehicleStatus(self._vin(0), {"fuel_level": 40.0, "source": "stream"}, fetched_at=datetime.now(UTC)),
            )

        self._pusher = threading.Thread(target=push, name="tiny-stream", daemon=True)
        self._pusher.start()


SPEC = ProviderSpec(
    name="tiny",
    description="garden tractors (a test provider)",
    account_schema=account_schema(
        TinyAccount,
        {
            "tractors": Key("int", default=1, minimum=1, maximum=5),
            "fuel": Key("number", default=12.5, minimum=0),
        },
        daily_budget=500,
    ),
    backend="tiny_provider:TinyBackend",
    default_budget=500,
)
