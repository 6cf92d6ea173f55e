"""One bridge on a three-node NATS cluster's MQTT listener (``mqtt.protocol: 3.1.1``), watched from other nodes.

The daemon runs as a process connected to node 1, the user's client sits on node 3, a new subscriber checks
what node 2 holds as retained: the bridge comes up, its state is retained cluster-wide, a command sent on
another node is executed once and its records arrive, a command left retained before it started is never acted
on (and is deleted), and ``offline`` is retained once the bridge stops.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .mqtt_helpers import Daemon, wait_until
from .nats_helpers import NatsCluster, observer, retained_on, running_cluster
from .restart_helpers import BASE, config_for, is_event, is_record, record, start_vendor, vendor_requests

#: a NATS cluster takes seconds to form and to heal: these run in CI's second step (the slow one)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    yield from running_cluster(tmp_path_factory.mktemp("nats"))


FLOW = ["INITIATED", "PENDING", "DELIVERED", "EXECUTED"]


@pytest.fixture
def vendor():
    server = start_vendor(real_time_step=0.3)
    yield server
    server.stop()


def test_one_bridge_on_nats(cluster: NatsCluster, vendor, tmp_path: Path) -> None:
    config = config_for(cluster[0], vendor, tmp_path / "state", names=("i3", "x1"))
    config["mqtt"]["protocol"] = "3.1.1"  # NATS refuses MQTT 5
    user = observer(cluster[2].port, (f"{BASE}/#", "homeassistant/#"))
    # left over retained before the bridge starts: it arrives flagged retained at the bridge's subscription
    user.publish(f"{BASE}/i3/lock/set", "UNLOCK", retain=True)
    # the bridge's node fills its copy of the retained messages on its own: the command is there before it starts
    retained_on(cluster[0].port, f"{BASE}/i3/lock/set", lambda got: got)
    daemon = Daemon(tmp_path, config)
    daemon.start()
    try:
        user.wait_for(is_event("retained_command_ignored", topic=f"{BASE}/i3/lock/set"), what="the refusal")
        for name in ("i3", "x1"):
            user.wait_topic(f"{BASE}/{name}/availability", "online")
        # retained cluster-wide: what a new subscriber on a third node gets
        held = retained_on(
            cluster[1].port,
            f"{BASE}/#",
            lambda got: got.get(f"{BASE}/bridge/state") == b"online" and f"{BASE}/x1/state" in got,
        )
        assert json.loads(held[f"{BASE}/x1/state"])["door_lock_state"] == "UNLOCKED"
        assert {f"{BASE}/bridge/info", f"{BASE}/x1/odometer", f"{BASE}/i3/battery_level"} <= set(held)
        # the bridge's device and the two cars
        discovery = retained_on(cluster[1].port, "homeassistant/device/+/config", lambda got: len(got) == 3)
        assert all(json.loads(payload)["device"] for payload in discovery.values())

        # a command from another node: executed once, every record retained and seen there
        request_id = str(uuid.uuid4())
        mark = user.mark()
        user.publish(f"{BASE}/x1/lock/set", json.dumps({"action": "LOCK", "request_id": request_id}))
        root = f"{BASE}/x1"
        user.wait_for(is_record(request_id, "EXECUTED", root=root), start=mark, what="the lock EXECUTED")
        statuses = [record(m)["status"] for m in user.since(mark, f"{root}/lock/execution")]
        assert statuses[0] == "INITIATED" and statuses[-1] == "EXECUTED", statuses
        assert all(s in FLOW for s in statuses), statuses
        assert len(vendor_requests(vendor, "executeService")) == 1
        user.wait_topic(f"{root}/lock", "LOCKED", start=mark)
        held = retained_on(cluster[1].port, f"{root}/lock/#", lambda got: got.get(f"{root}/lock/status") == b"EXECUTED")
        assert json.loads(held[f"{root}/lock/execution"])["request_id"] == request_id

        # the retained command was deleted cluster-wide and never reached the vendor
        assert retained_on(cluster[1].port, f"{BASE}/i3/lock/set", lambda got: got == {}) == {}
        assert len(vendor_requests(vendor, "executeService")) == 1
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- daemon log ---\n{daemon.tail()}\n{cluster.logs()}") from None
    finally:
        code = daemon.stop()
        user.close()
    assert code == 0
    # node 2's copy of the retained messages follows node 1's: the offline is waited for, not read once
    state = f"{BASE}/bridge/state"
    assert retained_on(cluster[1].port, state, lambda got: got.get(state) == b"offline")[state] == b"offline"


def test_mqtt_5_is_refused_with_a_clear_error(cluster: NatsCluster, vendor, tmp_path: Path) -> None:
    """The default ``mqtt.protocol: 5`` on NATS: the broker refuses it; the log says to use 3.1.1."""
    config = config_for(cluster[0], vendor, tmp_path / "state", names=("x1",))
    daemon = Daemon(tmp_path, config)
    daemon.start()
    try:
        wait_until(lambda: "set mqtt.protocol: 3.1.1" in daemon.tail(20000), what="the log line naming the fix")
    finally:
        daemon.stop()
