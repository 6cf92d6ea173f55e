"""A three-node NATS cluster's MQTT listener, with plain MQTT 3.1.1 clients: what the bridge relies on.

Retained messages live in a JetStream stream with three replicas (``$MQTT_rmsgs``); every node keeps its own
copy of them, filled from that stream. A retained message published on one node reaches the others' copies
asynchronously, so a new subscriber elsewhere may briefly miss it: the tests wait for it (bounded) and say so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .nats_helpers import NatsCluster, WillClient, observer, retained_now, retained_on, running_cluster

#: a NATS cluster takes seconds to form and to heal: these run in CI's second step (the slow one)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    yield from running_cluster(tmp_path_factory.mktemp("nats"))


def unique(prefix: str) -> str:
    """Topics of their own per test: retained messages outlive a test on a module's cluster."""
    return f"{prefix}-{os.urandom(3).hex()}"


def test_retained_published_on_one_node_reaches_a_new_subscriber_on_another(cluster: NatsCluster) -> None:
    base = unique("retained")
    publisher = observer(cluster[0].port, (f"{base}/none",))
    try:
        publisher.publish(f"{base}/state", "online", retain=True)
        publisher.publish(f"{base}/odometer", "12345", retain=True)
    finally:
        publisher.close()
    expected = {f"{base}/state": b"online", f"{base}/odometer": b"12345"}
    assert retained_on(cluster[2].port, f"{base}/#", lambda got: got == expected) == expected
    subscriber = observer(cluster[2].port, (f"{base}/#",))
    try:
        msg = subscriber.wait_topic(f"{base}/state", "online")
        assert msg.retain  # delivered as retained to a new subscription, as MQTT says
    finally:
        subscriber.close()


def test_a_retained_message_replaced_and_deleted_on_other_nodes(cluster: NatsCluster) -> None:
    base = unique("replaced")
    first = observer(cluster[0].port, (f"{base}/none",))
    second = observer(cluster[1].port, (f"{base}/none",))
    try:
        first.publish(f"{base}/lock", "LOCKED", retain=True)
        second.publish(f"{base}/lock", "UNLOCKED", retain=True)
        assert retained_on(cluster[2].port, f"{base}/#", lambda got: got == {f"{base}/lock": b"UNLOCKED"})
        first.publish(f"{base}/lock", "", retain=True)  # an empty retained message deletes it
        assert retained_on(cluster[2].port, f"{base}/#", lambda got: got == {}) == {}
    finally:
        first.close()
        second.close()


def test_live_messages_and_their_retain_flag_across_nodes(cluster: NatsCluster) -> None:
    """QoS 1 across nodes, in order. A message published retained reaches a running subscription with the
    retain flag cleared (MQTT 3.1.1, as Mosquitto does for a 3.1.1 subscriber): only a new subscription sees
    that it is retained."""
    base = unique("live")
    subscriber = observer(cluster[0].port, (f"{base}/#",))
    publisher = observer(cluster[2].port, (f"{base}/none",))
    try:
        for i in range(20):
            publisher.publish(f"{base}/count", str(i))
        subscriber.wait_topic(f"{base}/count", "19")
        got = [m.text for m in subscriber.messages if m.topic == f"{base}/count"]
        assert got == [str(i) for i in range(20)]
        assert not any(m.retain for m in subscriber.messages if m.topic == f"{base}/count")
        publisher.publish(f"{base}/lock/set", "UNLOCK", retain=True)
        assert not subscriber.wait_topic(f"{base}/lock/set", "UNLOCK").retain
        # Whether a new subscription then sees it retained is test_retained_published_on_one_node_...'s question:
        # here, with this publisher still connected after 20 QoS 1 messages, a new subscriber on either node got
        # nothing for 60 s in two of about seven runs (nats-server 2.9.10; not understood: docs/scaling.md)
    finally:
        subscriber.close()
        publisher.close()


def test_a_will_is_delivered_on_another_node_when_the_client_dies(cluster: NatsCluster) -> None:
    base = unique("will")
    watcher = observer(cluster[2].port, (f"{base}/#",))
    try:
        client = WillClient(cluster[0].port, unique("will-client"), f"{base}/state")
        watcher.wait_topic(f"{base}/state", "online")
        mark = watcher.mark()
        client.kill()  # no DISCONNECT: the node sees the connection drop and publishes the will
        watcher.wait_topic(f"{base}/state", "offline", start=mark)
        assert retained_on(cluster[1].port, f"{base}/#", lambda got: got == {f"{base}/state": b"offline"})
    finally:
        watcher.close()


def test_a_second_client_with_the_same_id_on_another_node_takes_over(cluster: NatsCluster) -> None:
    """The client id is unique across the cluster: the newer connection wins, the older one is closed. Unlike
    Mosquitto, NATS does not publish the will of the connection it closed for the takeover."""
    base = unique("takeover")
    client_id = unique("same-id")
    first = WillClient(cluster[0].port, client_id, f"{base}/first")
    try:
        second = WillClient(cluster[2].port, client_id, f"{base}/second")
        try:
            first.wait_closed()
            expected = {f"{base}/first": b"online", f"{base}/second": b"online"}
            assert retained_on(cluster[1].port, f"{base}/#", lambda got: got == expected) == expected
            # the closed one's own node, once its copy has the second: no will stored there either
            assert retained_on(cluster[0].port, f"{base}/#", lambda got: f"{base}/second" in got) == expected
        finally:
            second.kill()
    finally:
        first.kill()


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("MQTTBRIDGE_NATS_NODE_KILL") != "1",
    reason="a NATS node kill takes 40-80 s to heal: run with MQTTBRIDGE_NATS_NODE_KILL=1 (docs/scaling.md)",
)
def test_retained_messages_survive_a_node_killed_and_restarted(cluster: NatsCluster) -> None:
    """The node a message was published on dies (SIGKILL): the other two still have it (three replicas), and
    the restarted node has it again. A client connected to the dead node gets no will: nobody is left to
    send it (why the bridge's instances renew a heartbeat)."""
    base = unique("survive")
    publisher = observer(cluster[0].port, (f"{base}/none",))
    stranded = WillClient(cluster[0].port, unique("stranded"), f"{base}/stranded")
    try:
        publisher.publish(f"{base}/state", "kept", retain=True)
        expected = {f"{base}/state": b"kept", f"{base}/stranded": b"online"}
        assert retained_on(cluster[2].port, f"{base}/#", lambda got: got == expected)
        publisher.close()
        cluster.kill(0)
        # the survivors have formed again (a JetStream leader, healthy): what they hold now is what is left
        assert retained_now(cluster[2].port, f"{base}/#") == expected
        assert retained_now(cluster[1].port, f"{base}/#") == expected
        cluster.restart(0)
        assert retained_on(cluster[0].port, f"{base}/#", lambda got: got == expected) == expected
    finally:
        stranded.kill()
        if not cluster[0].alive():
            cluster.restart(0)
