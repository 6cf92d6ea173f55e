"""Three daemons on a three-node NATS cluster (CONTRACT section 10), each connected to a different node, against the
simulator on a test clock: one instance is killed in the middle of a LOCK, then the NATS node of another instance
is killed in the middle of a second LOCK (that instance loses its broker: no will is sent for it, its heartbeat
stops and it fences itself), then the node comes back. Every vehicle keeps exactly one owner, both LOCKs are sent
to the vendor once and followed to their end, and the retained state survives.

Only the final state is asserted, never how long it took (bounds are generous upper limits for events)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqttbridge.cluster import owner

from .cluster_helpers import BrokerAddress, Instances, check_retained_after_takeover, follow, served, settled
from .mqtt_helpers import Observer, wait_until
from .nats_helpers import NatsCluster, observer, retained_now, retained_on, running_cluster
from .restart_helpers import BASE, NAMES, is_record, record, vendor_requests

IDS = ("node-a", "node-b", "node-c")
TAKEOVER_S = 5
#: killing a NATS node costs 40-80 s (JetStream re-forms; QoS 1 subscriptions are refused meanwhile) and, on a
#: loaded 2-core machine, sometimes more than the bounds here: CI runs the instance kill on NATS, and this
#: documented command the node kill too: MQTTBRIDGE_NATS_NODE_KILL=1 python -m pytest -m slow tests/test_nats*.py
NODE_KILL = os.environ.get("MQTTBRIDGE_NATS_NODE_KILL") == "1"
#: three daemons and three NATS nodes on two busy cores, a takeover (takeover_s and a heartbeat) after a kill
SETTLE = 90.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    yield from running_cluster(tmp_path / "nats")


#: instance i connects to NATS node i
NODE_OF = {instance: index for index, instance in enumerate(IDS)}


def pending_lock(obs: Observer, vendor, root: str, request_id: str) -> int:
    """Send a LOCK and let the vendor take it (PENDING): the point where killing its instance is worst."""
    mark = obs.mark()
    obs.publish(f"{root}/lock/set", json.dumps({"action": "LOCK", "request_id": request_id}))
    obs.wait_for(lambda m: is_record(request_id, "INITIATED", root=root)(m) and record(m)["event_id"], start=mark)
    vendor.clock.advance(1.0)
    obs.wait_for(is_record(request_id, "PENDING", root=root), start=mark, what=f"{request_id} PENDING")
    return mark


def owners_in_info(port: int) -> dict[str, str]:
    info = retained_now(port, f"{BASE}/bridge/info")[f"{BASE}/bridge/info"]
    return {v["vin"]: v["owner"] for v in json.loads(info)["vehicles"]}


@pytest.mark.slow
def test_an_instance_then_a_nats_node_killed_mid_command(tmp_path: Path, cluster: NatsCluster, vendor) -> None:
    vins = [car.vin for car in vendor.cars]
    root_of = {car.vin: f"{BASE}/{name}" for car, name in zip(vendor.cars, NAMES, strict=True)}
    nodes = {instance: BrokerAddress("127.0.0.1", cluster[index].port, "3.1.1") for instance, index in NODE_OF.items()}
    spread = Instances(tmp_path, nodes, vendor, IDS, takeover_s=TAKEOVER_S)
    # a user's client on every node: whichever node dies, two still watch
    watchers = [observer(node.port) for node in cluster.nodes]
    try:
        spread.start()
        obs = watchers[0]
        wait_until(lambda: settled(obs, IDS, vins), SETTLE, "every car served by its one owner")
        for vin in vins:
            obs.wait_topic(f"{root_of[vin]}/availability", "online", timeout=SETTLE)

        # 1. an instance dies (SIGKILL) once the vendor has its LOCK: its node publishes its will
        first = vins[0]
        victim, root = owner(first, IDS), root_of[first]
        assert victim is not None
        obs = watchers[(NODE_OF[victim] + 1) % 3]  # on another node than the victim's (all stay up here)
        mark = pending_lock(obs, vendor, root, "kill-instance")
        followed = [(obs, "kill-instance", root, mark)]
        spread.kill(victim)
        survivors = tuple(i for i in IDS if i != victim)
        obs.wait_topic(f"{BASE}/bridge/instances/{victim}", "offline", timeout=SETTLE)
        wait_until(lambda: settled(obs, survivors, vins), SETTLE, "the victim's cars served by the survivors")
        assert follow(obs, vendor, "kill-instance", root, mark, timeout=SETTLE) == "EXECUTED"
        obs.wait_topic(f"{root}/lock", "LOCKED", start=mark, timeout=SETTLE)
        # /status is published just after /execution: the retained check at the end must not race it
        obs.wait_topic(f"{root}/lock/status", "EXECUTED", start=mark, timeout=SETTLE)

        roots = [root]
        if NODE_KILL:
            # 2. the NATS node of a survivor that serves a car dies (SIGKILL) once the vendor has a LOCK for that car:
            # the survivor is cut off (no will: its node is gone), the other survivor takes its cars after takeover_s
            # and follows the LOCK from its retained record
            now = served(obs, survivors)
            cut = next(i for i in survivors if now[i])
            second = sorted(now[cut])[0]
            root2 = root_of[second]
            node = NODE_OF[cut]
            obs = watchers[next(i for i in range(3) if i not in (node, NODE_OF[victim]))]
            mark2 = pending_lock(obs, vendor, root2, "kill-node")
            followed.append((obs, "kill-node", root2, mark2))
            cluster.kill(node)
            alone = tuple(i for i in survivors if i != cut)
            wait_until(lambda: settled(obs, alone, vins), SETTLE, f"every car served by {alone} while {cut} is cut off")
            assert follow(obs, vendor, "kill-node", root2, mark2, timeout=SETTLE) == "EXECUTED"
            obs.wait_topic(f"{root2}/lock", "LOCKED", start=mark2, timeout=SETTLE)
            obs.wait_topic(f"{root2}/lock/status", "EXECUTED", start=mark2, timeout=SETTLE)

            # 3. the node comes back: the cut-off instance reconnects and takes its share again
            cluster.restart(node)
            wait_until(lambda: settled(obs, survivors, vins), SETTLE, f"{cut} back and serving its share")
            wait_until(
                lambda: owners_in_info(cluster[node].port) == {v: owner(v, survivors) for v in vins},
                SETTLE,
                "bridge/info naming the owners, on the restarted node",
            )
            roots.append(root2)

        # each LOCK was sent to the vendor once, never again by whoever followed it
        sent = vendor_requests(vendor, "executeService")
        assert len(sent) == len(roots), sent
        assert len([r for r in sent if first in r["path"]]) == 1
        if NODE_KILL:
            assert len([r for r in sent if second in r["path"]]) == 1
        for watcher, request_id, car_root, since in followed:
            statuses = [record(m)["status"] for m in watcher.since(since) if is_record(request_id, root=car_root)(m)]
            assert statuses[-1] == "EXECUTED" and "FAILED" not in statuses, (request_id, statuses)

        # the retained state, as a new subscriber on each node gets it. Each NATS node fills its copy of the retained
        # messages from the stream on its own, later than it delivers them live, so the whole picture is waited for
        # on each node, not read once. bridge/state: a CI run once kept the victim's offline with two survivors
        # alive; the first survivor says online again one heartbeat (takeover_s / 4) after the death
        # (cluster/presence.py)
        def complete(got: dict[str, bytes]) -> bool:
            try:
                check_retained_after_takeover(got, victim, survivors, root_of.values(), roots)
            except (AssertionError, KeyError, ValueError):
                return False
            return True

        for port in (n.port for n in cluster.nodes):
            retained = retained_on(port, f"{BASE}/#", complete)
            check_retained_after_takeover(retained, victim, survivors, root_of.values(), roots)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{spread.logs()}\n{cluster.logs()}") from None
    finally:
        spread.close()
        for watcher in watchers:
            watcher.close()
