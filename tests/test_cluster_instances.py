"""Three daemons on one base topic and one private Mosquitto, against the simulator on a test clock (CONTRACT
section 10): every vehicle has one owner; one instance is killed in the middle of a LOCK; its vehicles move, the
LOCK is followed to its end by the new owner and sent to the vendor once; the retained state survives.

Only the final state is asserted, never how long it took (bounds are generous upper limits for events)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqttbridge.cluster import owner

from .cluster_helpers import BrokerAddress, Instances, check_retained_after_takeover, follow, served, settled
from .conftest import closed_after
from .mqtt_helpers import Observer, retained_now, wait_until
from .restart_helpers import BASE, NAMES, is_record, record, vendor_requests

IDS = ("node-a", "node-b", "node-c")
TAKEOVER_S = 5
#: enough for three daemons to start on two busy cores and for a takeover (takeover_s and a heartbeat) after it
SETTLE = 60.0


@pytest.fixture
def instances(request: pytest.FixtureRequest, tmp_path: Path, broker, vendor) -> Iterator[Instances]:
    """The daemons speak MQTT 5 unless the test asks for another protocol (``indirect`` parametrization: the
    protocol, or a dict of ``protocol`` and ``takeover_s``)."""
    param = getattr(request, "param", "5")
    options = param if isinstance(param, dict) else {"protocol": param}
    address = BrokerAddress("127.0.0.1", broker.port, options.get("protocol", "5"))
    group = Instances(tmp_path, address, vendor, IDS, takeover_s=options.get("takeover_s", TAKEOVER_S))
    yield from closed_after(request, group)


def owners_in_info(port: int) -> dict[str, str]:
    """Each vehicle's owner as ``<base>/bridge/info`` names it now."""
    info = json.loads(retained_now(port, f"{BASE}/bridge/info")[f"{BASE}/bridge/info"])
    return {v["vin"]: v["owner"] for v in info["vehicles"]}


@pytest.mark.slow
@pytest.mark.parametrize("instances", ["5", "3.1.1"], indirect=True)  # 3.1.1: as on NATS's MQTT listener
def test_a_killed_instance_hands_its_cars_and_its_running_lock_to_the_others(instances, broker, vendor) -> None:
    vins = [car.vin for car in vendor.cars]
    root_of = {car.vin: f"{BASE}/{name}" for car, name in zip(vendor.cars, NAMES, strict=True)}
    obs = Observer(broker.port)
    try:
        instances.start()
        wait_until(lambda: settled(obs, IDS, vins), SETTLE, "every car served by its one owner")
        for vin in vins:
            obs.wait_topic(f"{root_of[vin]}/availability", "online", timeout=SETTLE)
        # each instance writes bridge/info from its own view of who is live: waited for, not read once
        wait_until(lambda: owners_in_info(broker.port) == {vin: owner(vin, IDS) for vin in vins}, SETTLE, "bridge/info")

        # a LOCK on a car of the victim, which dies once the vendor has it (PENDING)
        vin = vins[0]
        victim, root = owner(vin, IDS), root_of[vin]
        assert victim is not None
        mark = obs.mark()
        obs.publish(f"{root}/lock/set", json.dumps({"action": "LOCK", "request_id": "kill-1"}))
        obs.wait_for(lambda m: is_record("kill-1", "INITIATED", root=root)(m) and record(m)["event_id"], start=mark)
        vendor.clock.advance(1.0)
        obs.wait_for(is_record("kill-1", "PENDING", root=root), start=mark, what="PENDING")
        instances.kill(victim)

        # its cars move to the others; they follow the LOCK from its retained record
        survivors = tuple(i for i in IDS if i != victim)
        obs.wait_topic(f"{BASE}/bridge/instances/{victim}", "offline")
        wait_until(lambda: settled(obs, survivors, vins), SETTLE, "the victim's cars served by the survivors")
        new_owner = owner(vin, survivors)
        assert vin in served(obs, survivors)[str(new_owner)]
        assert follow(obs, vendor, "kill-1", root, mark, timeout=SETTLE) == "EXECUTED"
        obs.wait_topic(f"{root}/lock", "LOCKED", start=mark, timeout=SETTLE)
        # /status is published just after /execution: wait for it, or the retained check below races it
        obs.wait_topic(f"{root}/lock/status", "EXECUTED", start=mark, timeout=SETTLE)

        sent = [r for r in vendor_requests(vendor, "executeService") if vin in r["path"]]
        assert len(sent) == 1, sent  # followed by the new owner, never sent again
        assert len(vendor_requests(vendor, "executeService")) == 1
        statuses = [record(m)["status"] for m in obs.since(mark, f"{root}/lock/execution")]
        assert statuses[-1] == "EXECUTED" and "FAILED" not in statuses, statuses
        # availability stayed online through the takeover: nobody said offline
        assert not [m.topic for m in obs.messages if m.topic.endswith("/availability") and m.text != "online"]

        retained = retained_now(broker.port, f"{BASE}/#")
        check_retained_after_takeover(retained, victim, survivors, root_of.values(), [root])
        moved = {v: owner(v, survivors) for v in vins}
        wait_until(lambda: owners_in_info(broker.port) == moved, SETTLE, "bridge/info naming the new owners")
        # the account's budget topic adds up the calls every instance announced, the dead one's included
        wait_until(lambda: budget_adds_up(broker.port), SETTLE, "the budget topic adding up every instance's calls")
    finally:
        obs.close()


def budget_adds_up(port: int) -> bool:
    """The retained account budget counts what the three instances' retained infos say they spent."""
    retained = retained_now(port, f"{BASE}/bridge/#")
    parts = [json.loads(retained[f"{BASE}/bridge/instances/{i}/info"])["budgets"]["sim"] for i in IDS]
    budget = json.loads(retained[f"{BASE}/bridge/accounts/sim/budget"])
    return budget["used"] == sum(part["used"] for part in parts) > 0 and sorted(budget["instances"]) == sorted(IDS)


@pytest.mark.slow
def test_a_frozen_instance_is_replaced_after_takeover_s_and_acts_on_nothing_when_it_wakes(
    instances, broker, vendor
) -> None:
    """SIGSTOP: the connection stays open, so no will; only the heartbeat stops (as when a broker node dies)."""
    vins = [car.vin for car in vendor.cars]
    root_of = {car.vin: f"{BASE}/{name}" for car, name in zip(vendor.cars, NAMES, strict=True)}
    obs = Observer(broker.port)
    try:
        instances.start()
        wait_until(lambda: settled(obs, IDS, vins), SETTLE, "every car served by its one owner")
        vin = vins[1]
        victim, root = owner(vin, IDS), root_of[vin]
        assert victim is not None
        obs.wait_topic(f"{root}/availability", "online", timeout=SETTLE)
        mark = obs.mark()
        obs.publish(f"{root}/lock/set", json.dumps({"action": "LOCK", "request_id": "frozen-1"}))
        obs.wait_for(lambda m: is_record("frozen-1", "INITIATED", root=root)(m) and record(m)["event_id"], start=mark)
        instances.send(victim, signal.SIGSTOP)

        survivors = tuple(i for i in IDS if i != victim)
        wait_until(lambda: settled(obs, survivors, vins), SETTLE, "the frozen instance's cars served by the others")
        assert follow(obs, vendor, "frozen-1", root, mark, timeout=SETTLE) == "EXECUTED"

        # it wakes up: fenced (its heartbeat is long gone), it lets everything go, then takes its cars back
        woken = obs.mark()
        instances.send(victim, signal.SIGCONT)
        info = f"{BASE}/bridge/instances/{victim}/info"
        obs.wait_for(lambda m: m.topic == info and json.loads(m.payload)["vins"] == [], start=woken, timeout=SETTLE)
        wait_until(lambda: settled(obs, IDS, vins), SETTLE, "the woken instance serving its cars again")
        mark = obs.mark()
        obs.publish(f"{root}/lock/set", json.dumps({"action": "UNLOCK", "request_id": "after-1"}))
        obs.wait_for(lambda m: is_record("after-1", "INITIATED", root=root)(m) and record(m)["event_id"], start=mark)
        assert follow(obs, vendor, "after-1", root, mark, timeout=SETTLE) == "EXECUTED"

        sent = vendor_requests(vendor, "executeService")
        assert len(sent) == 2, sent  # the LOCK once (followed by another instance), the UNLOCK once
        assert not [m.topic for m in obs.messages if m.topic.endswith("/availability") and m.text != "online"]
    finally:
        obs.close()


@pytest.mark.slow
# takeover_s 10: an instance whose heartbeat comes back takeover_s / 2 late lets its cars go, even one with a running
# command (which the late one would then follow, correctly, but this test is about the live hand-over); the late
# instance's start on two busy cores is where such a stall is likeliest
@pytest.mark.parametrize("instances", [{"takeover_s": 10}], indirect=True, ids=["takeover_10"])
def test_a_joining_instance_waits_for_the_running_command_before_it_takes_the_car(instances, broker, vendor) -> None:
    """A live hand-over: the old owner finishes what it runs, then lets go; the new one acts only after that."""
    vins = [car.vin for car in vendor.cars]
    root_of = {car.vin: f"{BASE}/{name}" for car, name in zip(vendor.cars, NAMES, strict=True)}
    late = IDS[2]
    early = IDS[:2]
    vin = next((v for v in vins if owner(v, IDS) == late), None)
    if vin is None:
        pytest.skip(f"{late} owns none of the demo cars")
    root = root_of[vin]
    obs = Observer(broker.port)
    try:
        instances.start(*early)
        wait_until(lambda: settled(obs, early, vins), SETTLE, "the first two serving every car")
        obs.wait_topic(f"{root}/availability", "online", timeout=SETTLE)
        mark = obs.mark()
        obs.publish(f"{root}/lock/set", json.dumps({"action": "LOCK", "request_id": "join-1"}))
        obs.wait_for(lambda m: is_record("join-1", "INITIATED", root=root)(m) and record(m)["event_id"], start=mark)
        holder = next(i for i, vins_now in served(obs, early).items() if vin in vins_now)

        joined = obs.mark()
        instances.start(late)
        obs.wait_topic(f"{BASE}/bridge/instances/{late}", "online", timeout=SETTLE)
        others = {v for v in vins if owner(v, IDS) == late} - {vin}
        late_info = f"{BASE}/bridge/instances/{late}/info"
        wait_until(  # past its announcement hold: it took what was free
            lambda: len(obs.since(joined, late_info)) >= 4 and served(obs, (late,))[late] == others,
            SETTLE,
            "the late instance serving its other cars",
        )
        assert vin in served(obs, (holder,))[holder] and vin not in served(obs, (late,))[late]  # still running
        assert follow(obs, vendor, "join-1", root, mark, timeout=SETTLE) == "EXECUTED"
        wait_until(lambda: settled(obs, IDS, vins), SETTLE, "the car handed over once its LOCK ended")
        assert len(vendor_requests(vendor, "executeService")) == 1
    finally:
        obs.close()


@pytest.mark.slow
def test_bridge_state_stays_online_while_any_instance_lives_and_says_offline_when_the_last_one_is_killed(
    instances: Instances, broker, vendor
) -> None:
    """CONTRACT §10: ``bridge/state`` is ``online`` while any instance is. Each instance's second, silent connection
    has ``offline`` as its will: a killed instance's will says so, a live one answers ``online`` at once; when the
    last one is killed nobody answers, and the retained state is ``offline`` (before, it stayed ``online``)."""
    vins = [car.vin for car in vendor.cars]
    obs = Observer(broker.port)
    try:
        instances.start()
        wait_until(lambda: settled(obs, IDS, vins), SETTLE, "every car served by its one owner")
        mark = obs.mark()
        instances.kill(IDS[0])
        obs.wait_topic(f"{BASE}/bridge/state", "offline", start=mark, timeout=SETTLE, what="the killed one's will")
        obs.wait_topic(f"{BASE}/bridge/state", "online", start=mark, timeout=SETTLE, what="a live one's answer")
        wait_until(lambda: settled(obs, IDS[1:], vins), SETTLE, "the survivors serve every car")
        assert retained_now(broker.port, f"{BASE}/bridge/state")[f"{BASE}/bridge/state"] == b"online"
        for instance in IDS[1:]:
            instances.kill(instance)
        wait_until(
            lambda: retained_now(broker.port, f"{BASE}/bridge/state").get(f"{BASE}/bridge/state") == b"offline",
            SETTLE,
            "bridge/state offline once no instance is left",
        )
        states = retained_now(broker.port, f"{BASE}/bridge/instances/+")
        assert set(states.values()) == {b"offline"}, states
    finally:
        obs.close()
