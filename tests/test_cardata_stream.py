"""The CarData stream against the simulator's broker (mosquitto with dynamic security: username the GCID,
password the current id token; a second client on the slot drops the first)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from mqttbridge.backends.bmw_cardata.backend import CarDataBackend
from mqttbridge.errors import ActionRequiredError
from mqttbridge.model import VehicleStatus
from mqttbridge.statestore import StateStore
from tests.mqtt_helpers import wait_until

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs mosquitto")

SOC = "vehicle.drivetrain.batteryManagement.header"
WAIT = 20.0


class Sink:
    def __init__(self) -> None:
        self.pushed: list[tuple[str, VehicleStatus]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.relayed: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()

    def push(self, vin: str, status: VehicleStatus) -> None:
        with self.cond:
            self.pushed.append((vin, status))
            self.cond.notify_all()

    def event(self, kind: str, /, **data: Any) -> None:
        with self.cond:
            self.events.append((kind, data))
            self.cond.notify_all()

    def relay(self, topic: str, payload: bytes) -> None:
        with self.cond:
            self.relayed.append((topic, payload))
            self.cond.notify_all()

    def wait(self, predicate: Any) -> Any:
        with self.cond:
            assert self.cond.wait_for(predicate, WAIT), "timed out"


class Listener:
    def __init__(self) -> None:
        self.completed = threading.Event()

    def login_required(self, exc: ActionRequiredError) -> None:
        pass

    def login_completed(self) -> None:
        self.completed.set()


@pytest.fixture
def sim():
    from mqttbridge.simulator.cardata import CarDataSimulator

    simulator = CarDataSimulator().start()
    yield simulator
    simulator.stop()


def logged_in(sim: Any, tmp_path: Any, republish: str | None = None) -> CarDataBackend:
    account = SimpleNamespace(
        name="bmw",
        provider="bmw_cardata",
        client_id="5a1e0000-aaaa-bbbb-cccc-000000000001",
        auth_url=sim.url,
        api_url=sim.url,
        stream_host="127.0.0.1",
        stream_port=sim.stream_port,
        stream_tls=False,
        stream_ca=None,
        stream=SimpleNamespace(republish=republish),
        timeout=5.0,
        retries=2,
        poll=SimpleNamespace(interval=3600),
    )

    def sleep(seconds: float) -> None:  # the device poll's interval passes on the simulator's clock
        sim.advance(min(seconds, 60))
        time.sleep(0.005)

    backend = CarDataBackend(
        account,
        StateStore(tmp_path),
        clock=sim.clock.now,
        sleep=sleep,
        stream_options={"delays": (1, 2), "conflict_delays": (300, 900)},
    )
    backend.login_listener = listener = Listener()
    with pytest.raises(ActionRequiredError) as caught:
        backend.list_vehicles()
    assert sim.approve(str(caught.value.details["user_code"]))
    assert listener.completed.wait(WAIT)
    return backend


def subscribed(backend: CarDataBackend, connects: int = 1) -> None:
    wait_until(lambda: (s := backend.stream_state) and s["subscribed"] and s["connects"] >= connects, WAIT, "stream")


def test_a_message_updates_only_its_fields_and_reads_need_no_call(sim, tmp_path):
    backend = logged_in(sim, tmp_path, republish="bmw/raw")
    sink = Sink()
    try:
        vehicle = next(v for v in backend.list_vehicles() if v.vin == sim.vins[0])
        before = backend.read_status(vehicle)  # REST: the whole container
        backend.take_vendor_calls()
        backend.start(sink)
        subscribed(backend)
        tokens = backend.auth.current()
        assert tokens is not None and sim.broker.connections() == {tokens.gcid: 1}
        sent = sim.stream_message(vehicle.vin, {SOC: {"value": 42, "unit": "%"}})
        sink.wait(lambda: sink.pushed)
        vin, after = sink.pushed[-1]
        assert vin == vehicle.vin and after.fields["battery_level"] == 42
        changed = {k for k in set(before.fields) | set(after.fields) if before.fields.get(k) != after.fields.get(k)}
        assert changed <= {"battery_level", "updated_at"}
        assert after.location == before.location
        sink.wait(lambda: sink.relayed)
        topic, payload = sink.relayed[-1]
        assert topic == f"bmw/raw/{vehicle.vin}"
        assert json.loads(payload)["data"][SOC]["value"] == sent["data"][SOC]["value"]
        used = sim.quota()["used"]
        assert backend.read_status(vehicle).fields["battery_level"] == 42  # from the stream, no call
        assert backend.take_vendor_calls() == 0 and sim.quota()["used"] == used
    finally:
        backend.close()


def test_a_new_id_token_reconnects_with_it(sim, tmp_path):
    backend = logged_in(sim, tmp_path)
    sink = Sink()
    try:
        vin = backend.list_vehicles()[0].vin
        backend.start(sink)
        subscribed(backend)
        old = backend.auth.current()
        assert old is not None
        sim.advance(60)  # the simulator's id token is the same within one second
        new = backend.auth.renew(rejected=old)  # the simulator accepts only the newest id token
        assert new.id_token != old.id_token
        subscribed(backend, connects=2)
        sim.stream_message(vin, {SOC: {"value": 17}})
        sink.wait(lambda: any(s.fields.get("battery_level") == 17 for _v, s in sink.pushed))
        assert sim.broker.connections() == {new.gcid: 1}
    finally:
        backend.close()


def test_a_refused_password_renews_the_tokens_and_reconnects(sim, tmp_path):
    backend = logged_in(sim, tmp_path)
    try:
        backend.list_vehicles()
        backend.start(Sink())
        subscribed(backend)
        old = backend.auth.current()
        assert old is not None
        sim.broker.set_password(old.gcid, "not-the-id-token", [])  # the session is kicked, the old token refused
        wait_until(lambda: backend.auth.current() != old, WAIT, "a renewal")
        subscribed(backend, connects=2)
        assert backend.stream_state is not None and not backend.stream_state["conflict"]
    finally:
        backend.close()


def test_another_client_on_the_slot_is_recognised_once_and_backed_off(sim, tmp_path):
    backend = logged_in(sim, tmp_path)
    sink = Sink()
    try:
        backend.list_vehicles()
        backend.start(sink)
        gcid = backend.auth.current().gcid  # type: ignore[union-attr]
        for round_ in range(1, 4):
            subscribed(backend, connects=round_)
            assert sim.broker.drop(gcid) == 1  # as a second client with the account would
        sink.wait(lambda: sink.events)
        state = backend.stream_state
        assert state is not None and state["conflict"]
        kind, data = sink.events[0]
        assert kind == "stream_slot_conflict"
        assert "another tool" in data["message"] and "stream.republish" in data["message"]
        stream = backend.stream
        assert stream is not None and stream._client is not None
        assert stream._client._reconnect_min_delay == 300  # paho's back-off: minutes now, not seconds
        assert len(sink.events) == 1
    finally:
        backend.close()
