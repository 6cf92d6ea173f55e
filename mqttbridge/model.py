"""Vendor-neutral domain objects that backends produce and the bridge consumes.

Enums fall back to ``UNKNOWN`` so that a value never seen before is a published fact, not a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class _FallbackEnum(StrEnum):
    @classmethod
    def _missing_(cls, value: object) -> _FallbackEnum:
        return cls["UNKNOWN"]


class DriveTrain(_FallbackEnum):
    CONV = "CONV"
    PHEV = "PHEV"
    BEV = "BEV"
    BEV_REX = "BEV_REX"
    HEV = "HEV"
    UNKNOWN = "UNKNOWN"


class ExecutionStatus(_FallbackEnum):
    """The contract's execution states; the first six come from the vendor, the next two from us."""

    INITIATED = "INITIATED"
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    EXECUTED = "EXECUTED"
    NOT_EXECUTED = "NOT_EXECUTED"
    TIMED_OUT = "TIMED_OUT"
    REJECTED = "REJECTED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"

    @property
    def final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset(
    {
        ExecutionStatus.EXECUTED,
        ExecutionStatus.NOT_EXECUTED,
        ExecutionStatus.TIMED_OUT,
        ExecutionStatus.REJECTED,
        ExecutionStatus.FAILED,
    }
)

#: The data sets beside the status, each read on its own slower schedule (CONTRACT section 4).
DATASETS = ("last_trip", "all_trips", "charging_profile", "destinations", "range_map")


@dataclass(frozen=True)
class VehicleInfo:
    """One car of an account, as the vendor lists it."""

    vin: str
    model: str
    brand: str
    drive_train: DriveTrain
    #: data sets of ``DATASETS`` the car offers; others are never requested
    datasets: frozenset[str] = frozenset()
    #: command name (``lock``, ``climate`` ...) -> the actions the car accepts for it
    commands: dict[str, frozenset[str]] = field(default_factory=dict)
    #: the vendor's own entry, normalised to snake_case, for ``mqttbridge vehicles`` and discovery
    details: dict[str, Any] = field(default_factory=dict)
    #: abilities beyond the command list, e.g. ``climate_temperature`` (climate takes a target temperature)
    features: frozenset[str] = frozenset()

    def supports(self, command: str, action: str | None = None) -> bool:
        actions = self.commands.get(command)
        if actions is None:
            return False
        return action is None or action in actions


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    heading: float | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"latitude": self.latitude, "longitude": self.longitude}
        if self.heading is not None:
            data["heading"] = self.heading
        return data


@dataclass(frozen=True)
class VehicleStatus:
    """One read of a car: every field under its published name (CONTRACT section 4)."""

    vin: str
    fields: dict[str, Any]
    location: Location | None = None
    fetched_at: datetime | None = None

    def to_state(self) -> dict[str, Any]:
        """The JSON object published on ``<root>/state``."""
        state = dict(self.fields)
        if self.location is not None:
            state["location"] = self.location.to_json()
        if self.fetched_at is not None:
            state["fetched_at"] = self.fetched_at.isoformat(timespec="seconds")
        return state


@dataclass(frozen=True)
class CommandRequest:
    """A validated command: ``command`` is the topic name (``lock``), ``action`` its verb (``UNLOCK``)."""

    command: str
    action: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutionUpdate:
    """What the vendor said about a command's execution at one moment."""

    status: ExecutionStatus
    service: str
    event_id: str | None = None
    #: the vendor's status word when it was not one we know (kept for the log and the record)
    vendor_status: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
