"""``mqttbridge replay --provider bmw_cardata``: every real telematicData answer and stream message.

The expected states are written out by hand from each capture's raw values (``"value":"74"`` with
unit ``%`` -> ``74``), not computed by the code under test; a capture added to ../shared without its
expectation here fails ``test_every_capture_has_an_expectation``.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mqttbridge import cli

ROOT = Path(__file__).resolve().parents[1]

I4 = {
    "battery_level": 74,  # batteryManagement.header "74" %
    "range_electric": 286,  # remainingElectricRange "286" km (no kombi range in this answer)
    "charging_status": "NOT_CHARGING",  # hvStatus "NOT_CHARGING" (no charging.status)
    "updated_at": "2025-09-29T16:48:19+00:00",  # the newest key timestamp, 16:48:19.019Z
    "powertrain_electric_battery_state_of_charge_target": 85,
    "trip_segment_end_drivetrain_battery_management_hv_soc": 74,
    "drivetrain_electric_engine_charging_last_charging_result": "FAILED",
    "powertrain_electric_battery_charging_ac_limit_selected": 8,
    "drivetrain_battery_management_battery_size_max": 0,
    "drivetrain_electric_engine_charging_method": "NOCHARGING",
    "body_charging_port_locked_status": "CHARGING_CABLE_NOT_LOCKED",
    "vehicle_avg_aux_power": 0.5,
    "body_charging_port_plug_event_id": 1133,
    "drivetrain_electric_engine_charging_last_charging_reason": "INVALID",
    "drivetrain_electric_engine_charging_level": 74,
}
_X1_COMMON = {
    "status_service_distance_yellow": 2000,
    "status_condition_based_services_count": 9,
    "status_service_time_h_uand_au_service_yellow": 4,
    "status_service_time_yellow": 4,
    "status_service_time_inspection_date_legal": "2027-01-17T00:00:00+00:00",  # "17.01.2027 00:00:00 UTC"
    "electrical_system_battery_service_demand_recharge": 0,
    "electrical_system_battery_service_demand_replace": 200,
    "vehicle_average_weekly_distance_long_term": 0,
    "vehicle_average_weekly_distance_short_term": 570,
}
X1_PARKED = {
    **_X1_COMMON,
    "odometer": 48260,  # travelledDistance "48260" km
    "battery_12v": 14.39,  # battery.voltage "14.39" V
    "updated_at": "2026-09-07T21:35:06+00:00",  # serviceDemand.* at 21:35:06.005Z
    "status_service_distance_next": 2140,
    "chassis_axle_row1_wheel_left_tire_pressure": 240,
    "chassis_axle_row1_wheel_right_tire_pressure": 240,
    "chassis_axle_row2_wheel_left_tire_pressure": 220,
    "chassis_axle_row2_wheel_right_tire_pressure": 230,
    "chassis_axle_row1_wheel_left_tire_pressure_target": 250,
    "chassis_axle_row1_wheel_right_tire_pressure_target": 250,
    "chassis_axle_row2_wheel_left_tire_pressure_target": 250,
    "chassis_axle_row2_wheel_right_tire_pressure_target": 250,
    "status_condition_based_services": [
        {
            "date": None,
            "description": "Next change due at the latest when the stated distance has been covered.",
            "id": 2,
            "message_type": "CBS",
            "status": "OK",
            "title": "Front Brake",
            "text": "-",
            "unit_of_length_remaining": "2100",
        },
        {
            "date": "2027-01",
            "description": "Next statutory vehicle inspection due by the stated date.",
            "id": 32,
            "message_type": "CBS",
            "status": "OK",
            "title": "Statutory vehicle inspection",
            "text": "-",
            "unit_of_length_remaining": "-",
        },
        {
            "date": "2027-07",
            "description": "Next service due when the stated distance has been covered or by the specified date.",
            "id": 1,
            "message_type": "CBS",
            "status": "OK",
            "title": "Engine oil",
            "text": "-",
            "unit_of_length_remaining": "14000",
        },
        {
            "date": "2027-10",
            "description": "Next change due at the latest by the stated date.",
            "id": 3,
            "message_type": "CBS",
            "status": "OK",
            "title": "Brake fluid",
            "text": "-",
            "unit_of_length_remaining": "-",
        },
        {
            "date": "2029-07",
            "description": "-",
            "id": 100,
            "message_type": "CBS",
            "status": "OK",
            "title": "Vehicle check",
            "text": "-",
            "unit_of_length_remaining": "45000",
        },
    ],
}
DTC = "electronic_control_unit_diagnostic_trouble_codes_raw"
X1_EXTENDED = {
    **_X1_COMMON,
    "odometer": 48713,
    "range_fuel": 395,  # lastRemainingRange "395" km: a petrol car (remainingFuel 24)
    "fuel_level": 24,  # remainingFuel "24", unit null
    "battery_12v": 13.92,
    "updated_at": "2026-09-14T14:30:13+00:00",  # serviceDemand.* at 14:30:13.792Z
    "drivetrain_fuel_system_level": 58,
    "status_service_distance_next": 13460,
    "drivetrain_internal_combustion_engine_engine_ect": 85,
    "drivetrain_fuel_system_consumption_over_life_time_overall_reference_distance": 2826.3,
    "drivetrain_fuel_system_consumption_over_life_time_overall_fuel": 226.32,
    "chassis_axle_row1_wheel_left_tire_pressure": 280,
    "chassis_axle_row1_wheel_right_tire_pressure": 280,
    "chassis_axle_row2_wheel_left_tire_pressure": 260,
    "chassis_axle_row2_wheel_right_tire_pressure": 270,
    "chassis_axle_row1_wheel_left_tire_pressure_target": 290,
    "chassis_axle_row1_wheel_right_tire_pressure_target": 290,
    "chassis_axle_row2_wheel_left_tire_pressure_target": 280,
    "chassis_axle_row2_wheel_right_tire_pressure_target": 280,
    "status_check_control_messages": [
        {
            "date": None,
            "description": None,
            "id": 907,
            "message_type": "CCM",
            "status": None,
            "title": None,
            "text": "The brake pads need to be replaced.",
            "unit_of_length_remaining": "48712",
        }
    ],
    DTC: "(the XML text, checked apart)",
}
STREAM = {
    "powertrain_electric_battery_charging_preference_smart_charging": "PRICE_OPTIMIZED",
    "updated_at": "2025-10-01T10:12:39+00:00",  # the entry's own time, not the envelope's
}
EXPECTED: dict[str, dict[str, Any]] = {
    "rest/telematic_data_bev_i4m50.json": I4,
    "rest/telematic_data_ice_x1_parked.json": X1_PARKED,
    "rest/telematic_data_ice_x1_extended.json": X1_EXTENDED,
    "stream/stream_bev_preference_smart_charging.json": STREAM,
}


def run(*argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["replay", "--provider", "bmw_cardata", *map(str, argv)])
    return code, out.getvalue(), err.getvalue()


def one_line_failure(result: tuple[int, str, str], code: int, *words: str) -> None:
    got, out, err = result
    assert got == code, result
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_every_capture_has_an_expectation(fixtures_dir: Path) -> None:
    base = fixtures_dir / "bmw_cardata"
    found = {str(p.relative_to(base)) for p in [*base.glob("rest/telematic_data_*.json"), *base.glob("stream/*.json")]}
    assert found == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_replay_field_by_field(fixtures_dir: Path, name: str) -> None:
    code, out, err = run(fixtures_dir / "bmw_cardata" / name)
    assert code == 0, err
    state = json.loads(out)
    assert "fetched_at" in state
    state.pop("fetched_at")
    expected = EXPECTED[name]
    if DTC in expected:
        text = state.pop(DTC)
        assert text.startswith('<dtcData dtcCount="72">\n  <dtc ecuAddress="29">X00001</dtc>')
        assert text.count("<dtc ") == 44 and text.rstrip().endswith("</dtcData>")
        expected = {k: v for k, v in expected.items() if k != DTC}
    for field, value in expected.items():
        assert field in state, f"{name}: {field} missing"
        assert state[field] == value, f"{name}: {field} = {state[field]!r}, expected {value!r}"
        assert type(state[field]) is type(value), f"{name}: {field} has type {type(state[field]).__name__}"
    assert set(state) == set(expected), f"{name}: unexpected {sorted(set(state) - set(expected))}"
    assert "location" not in state  # no capture carries a position


def test_replay_as_a_subprocess(fixtures_dir: Path) -> None:
    """The installed command line, as a user runs it (``python -m mqttbridge``)."""
    path = fixtures_dir / "bmw_cardata" / "rest" / "telematic_data_bev_i4m50.json"
    done = subprocess.run(
        [sys.executable, "-m", "mqttbridge", "replay", "--provider", "bmw_cardata", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    assert state["battery_level"] == 74 and state["charging_status"] == "NOT_CHARGING"
    assert list(state) == sorted(state)


def test_unwrapped_telematic_data_is_accepted(fixtures_dir: Path, tmp_path: Path) -> None:
    body = json.loads((fixtures_dir / "bmw_cardata/rest/telematic_data_bev_i4m50.json").read_text())
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(body["telematicData"]))
    code, out, err = run(bare)
    assert code == 0, err
    assert json.loads(out)["range_electric"] == 286


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("rest/basic_data_bev_i4m50.json", ("basicData",)),
        ("rest/mappings_two_primary.json", ("mappings",)),
        ("rest/error_403_cu127_invalid_token.json", ("error answer", "CU-127")),
        ("rest/tyre_diagnosis_ice_x1_empty.json", ("tyre diagnosis",)),
        ("auth/token_error_invalid_grant.json", ("OAuth error",)),
    ],
)
def test_other_answers_are_named(fixtures_dir: Path, name: str, words: tuple[str, ...]) -> None:
    one_line_failure(run(fixtures_dir / "bmw_cardata" / name), 1, name.rsplit("/", 1)[1], *words)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("", ("empty",)),
        ("{not json", ("not JSON",)),
        ("[1, 2]", ("a JSON list",)),
        ('{"vin": "V1", "data": {"vehicle.isMoving": "true"}}', ("stream message",)),
        ('{"telematicData": {"vehicle.isMoving": 5}}', ("vehicle.isMoving",)),
        ('{"hello": 1}', ("hello",)),
    ],
)
def test_unreadable_files_one_line_exit_1(tmp_path: Path, content: str, words: tuple[str, ...]) -> None:
    path = tmp_path / "answer.json"
    path.write_text(content)
    one_line_failure(run(path), 1, "answer.json", *words)


def test_missing_file_and_options(tmp_path: Path) -> None:
    one_line_failure(run(tmp_path / "nope.json"), 1, "no such file")
    one_line_failure(run("--region", "europe", tmp_path / "nope.json"), 2, "--region")
