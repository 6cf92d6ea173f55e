"""The simulated cars: per descriptor key the car's current value, unit and timestamp.

Built from the real answers in ``../shared/fixtures/bmw_cardata`` when that directory exists (so REST
reads repeat BMW's own bytes), else from the small demo data in ``demo_data`` and the part of BMW's catalogue in
``demo_catalogue`` (a user's clone has no ../shared). REST reads serve these values as strings; stream
messages change them.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import demo_catalogue, demo_data

logger = logging.getLogger(__name__)

__all__ = ["Car", "Catalogue", "Entry", "build_cars", "default_fixtures_dir", "load_catalogue"]

#: catalogue data types whose stream values are JSON numbers
NUMERIC_TYPES = frozenset({"float", "double", "uint8", "uint16", "uint32", "int8", "int16", "int32"})
#: the VINs and mapping dates of the real mappings answer; the demo data uses the same ones
FIXTURE_MAPPINGS = "rest/mappings_two_primary.json"


def default_fixtures_dir() -> Path | None:
    """``<repo>/../shared/fixtures/bmw_cardata`` when it exists (never in a user's clone)."""
    repo = Path(__file__).resolve().parents[3]
    candidate = repo.parent / "shared" / "fixtures" / "bmw_cardata"
    return candidate if candidate.is_dir() else None


@dataclass
class Entry:
    """One key's REST state: everything is a string or null, as in BMW's answers."""

    value: str | None
    unit: str | None
    timestamp: str | None

    def to_json(self) -> dict[str, Any]:
        # real answers list the inner keys alphabetically
        return {"timestamp": self.timestamp, "unit": self.unit, "value": self.value}


@dataclass
class Catalogue:
    """What the simulator knows about descriptor keys: which exist, their unit and type."""

    units: dict[str, str | None] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    def knows(self, key: str) -> bool:
        return key in self.units

    def add(self, key: str, unit: str | None, data_type: str | None = None) -> None:
        self.units.setdefault(key, unit)
        if data_type:
            self.types.setdefault(key, data_type)

    def is_numeric(self, key: str, current: str | None) -> bool:
        data_type = self.types.get(key)
        if data_type is not None:
            return data_type in NUMERIC_TYPES
        return current is not None and _number(current) is not None


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def typed(catalogue: Catalogue, key: str, value: Any, current: str | None) -> Any:
    """A stream value: numbers for numeric keys, strings (enums) for the rest."""
    if isinstance(value, str) and catalogue.is_numeric(key, current if current is not None else value):
        number = _number(value)
        return value if number is None else number
    return value


def as_rest_value(value: Any) -> str | None:
    """REST serves every value as a string (``"74"``, ``"false"``)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


@dataclass
class Car:
    """One simulated car and the bytes its dedicated endpoints serve."""

    vin: str
    model: str
    mapped_since: str
    basic_data: bytes
    tyre_diagnosis: bytes
    values: dict[str, Entry]
    mapping_type: str = "PRIMARY"
    entity_id: str = ""

    def mapping(self) -> dict[str, Any]:
        return {"mappedSince": self.mapped_since, "mappingType": self.mapping_type, "vin": self.vin}

    def entry(self, key: str, catalogue: Catalogue) -> dict[str, Any]:
        """The REST entry of ``key``; a key without data keeps its unit and has null value and time."""
        entry = self.values.get(key)
        if entry is None:
            return Entry(None, catalogue.units.get(key), None).to_json()
        return entry.to_json()

    def set(self, key: str, value: Any, unit: str | None, timestamp: str, catalogue: Catalogue) -> None:
        old = self.values.get(key)
        if unit is None:
            unit = old.unit if old is not None else catalogue.units.get(key)
        self.values[key] = Entry(as_rest_value(value), unit, timestamp)


def load_catalogue(fixtures: Path | None) -> Catalogue:
    """The catalogue fixture's keys when ../shared is there, else the keys of the demo data and the part of the
    catalogue built in (``demo_catalogue``)."""
    catalogue = Catalogue()
    path = fixtures / "catalogue" / "telematic_catalogue.json" if fixtures else None
    if path is not None and path.is_file():
        for item in json.loads(path.read_text(encoding="utf-8"))["descriptors"]:
            unit = item.get("unit")
            catalogue.add(item["descriptor"], None if unit in (None, "", "null") else unit, item.get("data_type"))
    for model in demo_data.MODELS:
        for key, (_value, unit, _stamp) in model.telematic.items():
            catalogue.add(key, unit)
    for key, (unit, data_type) in demo_catalogue.KEYS.items():  # the fixture has them all: it wins when there
        catalogue.add(key, unit, data_type)
    return catalogue


def _entries(raw: dict[str, Any]) -> dict[str, Entry]:
    return {key: Entry(item.get("value"), item.get("unit"), item.get("timestamp")) for key, item in raw.items()}


def _fixture_models(fixtures: Path) -> list[tuple[str, bytes, dict[str, Entry]]]:
    """(model, basicData bytes, values) of the BEV and the petrol car of the real answers."""
    rest = fixtures / "rest"

    def telematic(name: str) -> dict[str, Entry]:
        return _entries(json.loads((rest / name).read_text(encoding="utf-8"))["telematicData"])

    ice = telematic("telematic_data_ice_x1_parked.json")
    ice.update(telematic("telematic_data_ice_x1_extended.json"))  # the newer reading wins
    return [
        ("i4 M50", (rest / "basic_data_bev_i4m50.json").read_bytes(), telematic("telematic_data_bev_i4m50.json")),
        ("X1 sDrive18i", (rest / "basic_data_ice_x1.json").read_bytes(), ice),
    ]


def _demo_models() -> list[tuple[str, bytes, dict[str, Entry]]]:
    models = []
    for model in demo_data.MODELS:
        values = {key: Entry(value, unit, stamp) for key, (value, unit, stamp) in model.telematic.items()}
        models.append((model.name, json.dumps(model.basic_data, separators=(",", ":")).encode(), values))
    return models


def _vin(index: int, mappings: list[dict[str, Any]]) -> tuple[str, str]:
    if index < len(mappings):
        return mappings[index]["vin"], mappings[index]["mappedSince"]
    return f"WBASIM{index:011d}", "2025-01-01T00:00:00.000Z"


def build_cars(count: int | None = None, fixtures: Path | None = None) -> list[Car]:
    """``count`` cars (default: one of each model) with distinct VINs, cycling through the models."""
    if fixtures is not None:
        models = _fixture_models(fixtures)
        mappings = json.loads((fixtures / FIXTURE_MAPPINGS).read_text(encoding="utf-8"))
        tyres = (fixtures / "rest" / "tyre_diagnosis_ice_x1_empty.json").read_bytes()
    else:
        models = _demo_models()
        mappings = [{"vin": vin, "mappedSince": since} for vin, since in demo_data.MAPPINGS]
        tyres = json.dumps(demo_data.empty_tyre_diagnosis(), indent=2).encode()
    total = len(models) if count is None else count
    if total < 1:
        raise ValueError("the simulator needs at least one car")
    cars = []
    for index in range(total):
        name, basic, values = models[index % len(models)]
        vin, since = _vin(index, mappings)
        entity = f"sim-{index:04d}-{vin[-6:].lower()}"
        values_copy = {key: Entry(e.value, e.unit, e.timestamp) for key, e in values.items()}
        cars.append(Car(vin, name, since, basic, tyres, values_copy, entity_id=entity))
    logger.debug("built %d car(s) from %s", total, fixtures or "the built-in demo data")
    return cars
