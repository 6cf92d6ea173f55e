"""Commands offered exactly where the library builds their request: every region, brand and command.

The truth is the library itself with its HTTP faked: a command whose call reaches the (fake)
network is one the library sends; one that raises ``NotImplementedError`` or the library's "not
supported" first is not (Brazil's charging, the EU CCI region's unverified commands and pre-CCS2
cars, Kia CCI's forced read). The backend must offer exactly the former, on every library release.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import pytest

pytest.importorskip("hyundai_kia_connect_api")
pytestmark = pytest.mark.filterwarnings("ignore:'ssl_version' option is deprecated:FutureWarning")

from hyundai_kia_connect_api import Vehicle, VehicleManager  # noqa: E402
from hyundai_kia_connect_api.const import ENGINE_TYPES  # noqa: E402
from hyundai_kia_connect_api.const import REGIONS as LIBRARY_REGIONS  # noqa: E402

from mqttbridge.backends.hyundai_kia.backend import HyundaiKiaBackend  # noqa: E402
from mqttbridge.backends.hyundai_kia.capabilities import _probe_token, probe_arguments  # noqa: E402
from mqttbridge.backends.hyundai_kia.connection import library_version  # noqa: E402
from mqttbridge.backends.hyundai_kia.mapping import BRANDS, COMMAND_PROBES, REGION_SINCE, REGIONS  # noqa: E402
from mqttbridge.errors import ConfigError, UnsupportedError  # noqa: E402
from mqttbridge.model import CommandRequest, ExecutionStatus, ExecutionUpdate  # noqa: E402
from mqttbridge.statestore import StateStore  # noqa: E402

from . import test_hyundai_kia as base  # noqa: E402
from .test_hyundai_kia import account, reply  # noqa: E402

vendor, make = base.vendor, base.make


@pytest.fixture(autouse=True)
def no_waiting(mocker):
    """4.41 waits 25 s inside a CCS2 forced read for the car to report: not in a test."""
    for name, module in list(sys.modules.items()):
        if name.startswith("hyundai_kia_connect_api") and callable(getattr(module, "sleep", None)):
            mocker.patch.object(module, "sleep")


SUPPORTED = [word for word, number in REGIONS.items() if number in LIBRARY_REGIONS]
CASES = [(region, brand) for region in SUPPORTED for brand in BRANDS]


def library_serves(region: str, brand: str) -> bool:
    try:
        VehicleManager(REGIONS[region], BRANDS[brand][0], "u@example.invalid", "p", "0000")
    except Exception:  # APIError, or the library's own crash (Genesis in India before 4.24)
        return False
    return True


def answer_everything(fake: base.Vendor) -> None:
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
        fake.on(method, r".", lambda **_: reply({}))


def car(ccs2: int, engine: ENGINE_TYPES = ENGINE_TYPES.EV) -> Vehicle:
    return Vehicle(
        id="car-1",
        name="Car",
        model="Model",
        VIN="TESTVIN0000000001",
        key="vehicle-key",
        engine_type=engine,
        ccu_ccs2_protocol_support=ccs2,
        generation=2,
    )


def backend_with(make: Any, mocker: Any, region: str, brand: str, vehicle: Vehicle) -> HyundaiKiaBackend:
    backend = make(region=region, brand=brand)
    backend.manager.token = _probe_token()
    backend.manager.vehicles = {vehicle.id: vehicle}
    mocker.patch.object(VehicleManager, "check_and_refresh_token", return_value=False)
    return backend


def the_library_sends(backend: HyundaiKiaBackend, fake: base.Vendor, method: str) -> bool:
    """Whether the library's call reaches the (fake) network; it may fail on the fake's empty answer after."""
    before = len(fake.calls)
    # NotImplementedError, "not supported", or the fake answer's shape afterwards
    with contextlib.suppress(Exception):
        getattr(backend.manager, method)("car-1", *probe_arguments(method))
    return len(fake.calls) > before


@pytest.mark.parametrize("ccs2", [0, 1], ids=["ccs1", "ccs2"])
@pytest.mark.parametrize(("region", "brand"), CASES, ids=[f"{r}-{b}" for r, b in CASES])
def test_offered_exactly_where_the_library_builds_the_request(vendor, make, mocker, region, brand, ccs2):
    if not library_serves(region, brand):
        with pytest.raises(ConfigError):
            make(region=region, brand=brand)
        return
    backend = backend_with(make, mocker, region, brand, car(ccs2))
    info = backend.list_vehicles()[0]
    assert not vendor.calls  # deciding sent nothing
    answer_everything(vendor)
    for (command, action), method in COMMAND_PROBES.items():
        sends = the_library_sends(backend, vendor, method)
        assert info.supports(command, action) is sends, (region, brand, command, action, method)
    assert info.supports("refresh", "PRESS")  # the cached read: every region


def test_brazil_offers_no_charging_commands(vendor, make, mocker):
    info = backend_with(make, mocker, "brazil", "hyundai", car(1)).list_vehicles()[0]
    assert not info.supports("charging") and not info.supports("charge_limit")
    assert info.supports("lock", "LOCK") and info.supports("climate", "ON")


def test_a_petrol_car_gets_no_charging_command(vendor, make, mocker):
    info = backend_with(make, mocker, "europe", "kia", car(0, ENGINE_TYPES.ICE)).list_vehicles()[0]
    assert not info.supports("charging") and not info.supports("charge_limit")
    assert info.supports("lock") and info.supports("climate")


def test_an_unoffered_command_is_refused_before_the_vendor(vendor, make, mocker):
    backend = backend_with(make, mocker, "brazil", "hyundai", car(1))
    info = backend.list_vehicles()[0]
    with pytest.raises(UnsupportedError):
        backend.execute(info, CommandRequest("charging", "ON"))
    assert not vendor.calls


@pytest.mark.skipif("europe_cci" not in SUPPORTED, reason="the installed library has no EU CCI region")
def test_eu_cci_region(vendor, make, mocker):
    """Region 9: the library decides per brand what is verified; pre-CCS2 cars belong to region 1."""
    old = backend_with(make, mocker, "europe_cci", "kia", car(0)).list_vehicles()[0]
    assert set(old.commands) == {"refresh"}
    hyundai = backend_with(make, mocker, "europe_cci", "hyundai", car(1))
    new = hyundai.list_vehicles()[0]
    assert {"lock", "climate", "charging", "charge_limit", "force_refresh"} <= set(new.commands)
    assert hyundai._follows["car-1"] is True  # Hyundai's action status is verified, Kia's is not
    kia = backend_with(make, mocker, "europe_cci", "kia", car(1))
    assert kia.list_vehicles()[0].supports("lock", "LOCK")
    assert kia._follows["car-1"] is False
    with pytest.raises(ConfigError, match="refuses"):
        make(region="europe_cci", brand="genesis")


@pytest.mark.skipif("europe_cci" in SUPPORTED, reason="the installed library has the EU CCI region")
def test_eu_cci_region_needs_a_newer_library(tmp_path):
    with pytest.raises(ConfigError) as caught:
        HyundaiKiaBackend(account(region="europe_cci"), StateStore(tmp_path))
    message = str(caught.value)
    assert REGION_SINCE["europe_cci"] in message and library_version() in message
    assert "Python 3.12" in message


def test_an_action_the_library_cannot_follow_is_unknown_without_a_call(vendor, make, mocker):
    backend = backend_with(make, mocker, "europe", "kia", car(0))
    info = backend.list_vehicles()[0]
    backend._follows["car-1"] = False  # as for EU CCI, whose check_action_status is not implemented
    started = ExecutionUpdate(ExecutionStatus.INITIATED, service="lock", event_id="action-1")
    update = backend.execution_status(info, started)
    assert update.status is ExecutionStatus.UNKNOWN
    assert not vendor.calls
