"""Back-pressure on paho's queue of unacknowledged messages (``PublishRoom``): a publisher waits for room
instead of letting the queue grow without bound, never loses a message, and never waits where waiting
would hang (paho's network thread, no connection, a broker that stopped acknowledging, the stop)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import pytest
from paho.mqtt.enums import MQTTErrorCode

from mqttbridge.backpressure import PublishRoom
from mqttbridge.config import MqttConfig
from mqttbridge.mqtt import MqttSession
from mqttbridge.paho_client import guarded, on_network_thread

from .mqtt_helpers import WAIT, Mosquitto, free_port, retained_now, wait_until


class Queue:
    """Stands for paho's queue of unacknowledged messages."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self) -> int:
        return self.size


class Room(PublishRoom):
    """Tells when a publisher starts waiting: ``waits`` is counted under the room's lock, which the publisher
    gives up only inside its wait, so whatever the test does next (it needs that lock) happens after."""

    def __init__(self, *args, **kwargs) -> None:
        self.waiting = threading.Event()
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def waits(self) -> int:
        return self._waits

    @waits.setter
    def waits(self, value: int) -> None:
        self._waits = value
        if value:
            self.waiting.set()


def connected() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


def start_waiting(room: Room) -> tuple[threading.Thread, list[bool]]:
    """A publisher thread blocked in ``acquire``."""
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(room.acquire()), daemon=True)
    thread.start()
    assert room.waiting.wait(WAIT)
    return thread, result


def test_a_publisher_goes_on_at_once_while_there_is_room() -> None:
    queue = Queue(9)
    room = PublishRoom(queue, connected(), high=10, low=5)
    assert room.acquire() is True
    assert room.waits == 0


def test_a_full_queue_makes_the_publisher_wait_until_the_broker_acknowledged_it_down_to_low() -> None:
    queue = Queue(10)
    room = Room(queue, connected(), high=10, low=5, wait=WAIT * 3)
    thread, result = start_waiting(room)
    queue.size = 7  # acknowledged, but not yet down to low: it keeps waiting
    room.acknowledged()
    assert thread.is_alive()
    queue.size = 5
    room.acknowledged()
    thread.join(WAIT)
    assert not thread.is_alive() and result == [True]
    assert room.timeouts == 0


def test_large_payloads_make_the_publisher_wait_too() -> None:
    """A reconnect sends every vehicle's ~19 KB discovery config in a row: few messages, many bytes."""
    queue = Queue(3)
    room = Room(queue, connected(), high=10, low=5, high_bytes=1000, wait=WAIT * 3)
    room.queued(1000)
    thread, result = start_waiting(room)
    queue.size = 2
    room.acknowledged(400)  # 600 bytes left: more than half of the limit
    assert thread.is_alive()
    queue.size = 1
    room.acknowledged(200)
    thread.join(WAIT)
    assert not thread.is_alive() and result == [True]
    assert room.bytes == 400


def test_the_byte_count_starts_again_from_zero_whenever_paho_holds_nothing() -> None:
    queue = Queue(1)
    room = PublishRoom(queue, connected(), high=10, low=5, high_bytes=1000)
    room.queued(300)
    queue.size = 0
    room.acknowledged(100)  # a message someone else published through the client: never counted here
    assert room.bytes == 0


def test_a_publisher_never_waits_while_disconnected() -> None:
    room = PublishRoom(Queue(50), threading.Event(), high=10, low=5)
    assert room.acquire() is True  # paho keeps the message for the next connection
    assert room.waits == 0


def test_a_disconnect_releases_a_waiting_publisher() -> None:
    queue = Queue(10)
    online = connected()
    room = Room(queue, online, high=10, low=5, wait=WAIT * 3)
    thread, result = start_waiting(room)
    online.clear()
    room.wake()
    thread.join(WAIT)
    assert not thread.is_alive() and result == [True]


def test_the_stop_releases_a_waiting_publisher() -> None:
    queue = Queue(10)
    room = Room(queue, connected(), high=10, low=5, wait=WAIT * 3)
    thread, result = start_waiting(room)
    room.close()
    thread.join(WAIT)
    assert not thread.is_alive() and result == [True]
    assert room.acquire() is True  # after the stop nobody waits


def test_paho_network_thread_never_waits() -> None:
    room = PublishRoom(Queue(50), connected(), high=10, low=5, wait=WAIT * 3)
    seen: list[tuple[bool, bool]] = []
    callback = guarded("test", lambda: seen.append((on_network_thread(), room.acquire())))
    callback()
    assert seen == [(True, True)] and room.waits == 0
    assert not on_network_thread()  # only inside the callback


def test_a_wait_is_bounded_and_said_once(caplog: pytest.LogCaptureFixture) -> None:
    room = PublishRoom(Queue(50), connected(), high=10, low=5, wait=0.0)
    with caplog.at_level(logging.WARNING, logger="mqttbridge.backpressure"):
        assert room.acquire() is False  # the caller publishes anyway: nothing is dropped
        assert room.acquire() is False
    assert room.timeouts == 2
    assert [r.getMessage() for r in caplog.records].count(
        "the broker has not acknowledged 50 messages for 0 s; publishing without waiting for it"
    ) == 1


def test_low_must_be_below_high() -> None:
    with pytest.raises(ValueError):
        PublishRoom(Queue(0), connected(), high=5, low=5)


# --- the real thing: paho and a private mosquitto ------------------------------------------------------------


def _session(port: int) -> MqttSession:
    config = MqttConfig(host="127.0.0.1", port=port, client_id=f"backpressure-{os.getpid()}", protocol="5")
    session = MqttSession(config, will_topic="bp/bridge/state", on_connect=lambda: None, on_message=lambda _msg: None)
    session.room = Room(session._unacked, session.connected, high=5, low=2, wait=WAIT * 3)
    return session


def _publish_in_thread(session: MqttSession, count: int) -> threading.Thread:
    thread = threading.Thread(
        target=lambda: [session.publish(f"bp/topic/{n}", f"payload {n}", retain=True) for n in range(count)],
        daemon=True,
    )
    thread.start()
    return thread


def test_paho_queue_stays_bounded_while_the_broker_does_not_acknowledge(broker: Mosquitto) -> None:
    session = _session(broker.port)
    session.start()
    largest: list[int] = []
    publish = session.client.publish

    def watched(*args, **kwargs):  # what paho holds unacknowledged each time the bridge hands it one more
        largest.append(session._unacked())
        return publish(*args, **kwargs)

    session.client.publish = watched  # type: ignore[method-assign]
    session.client.on_publish = lambda *_args: None  # whoever uses the client may set it: the room does not need it
    try:
        assert session.connected.wait(WAIT)
        assert broker.proc is not None
        os.kill(broker.proc.pid, signal.SIGSTOP)  # the broker acknowledges nothing for now
        try:
            thread = _publish_in_thread(session, 40)
            assert session.room.waiting.wait(WAIT)  # type: ignore[attr-defined]
            assert thread.is_alive() and session._unacked() == 5  # held at the limit, not 40
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        thread.join(WAIT)
        assert not thread.is_alive()
        assert max(largest) < 5  # handed one more only while paho held fewer than the limit
        assert session.room.timeouts == 0
        wait_until(lambda: session._unacked() == 0, what="every message acknowledged")
        assert session.room.bytes == 0  # every payload byte counted in was counted out
        retained = retained_now(broker.port, "bp/topic/#")
        assert retained == {f"bp/topic/{n}": f"payload {n}".encode() for n in range(40)}  # nothing lost
    finally:
        session.stop(offline_payload=None)


def test_a_connection_lost_while_waiting_releases_the_publisher_and_loses_nothing(
    broker: Mosquitto, tmp_path: Path
) -> None:
    session = _session(broker.port)
    session.start()
    try:
        assert session.connected.wait(WAIT)
        assert broker.proc is not None
        os.kill(broker.proc.pid, signal.SIGSTOP)
        thread = _publish_in_thread(session, 20)
        assert session.room.waiting.wait(WAIT)  # type: ignore[attr-defined]
        broker.proc.kill()  # the connection drops while the publisher waits
        broker.proc.wait(WAIT)
        broker.proc = None
        thread.join(WAIT)  # released by the disconnect: paho keeps the rest for the next connection
        assert not thread.is_alive()
        assert session.room.timeouts == 0
        broker.start()
        wait_until(lambda: session._unacked() == 0, what="paho to resend its queue after the reconnect")
        retained = retained_now(broker.port, "bp/topic/#")
        assert retained == {f"bp/topic/{n}": f"payload {n}".encode() for n in range(20)}
    finally:
        session.stop(offline_payload=None)


def test_a_message_paho_refuses_is_counted_and_said(caplog: pytest.LogCaptureFixture) -> None:
    """paho drops a message when its 16-bit message ids run out (65,535 unacknowledged): never silently."""
    session = _session(free_port())  # never started: nothing is sent

    class Refused:
        rc = MQTTErrorCode.MQTT_ERR_QUEUE_SIZE

    session.client.publish = lambda *_args, **_kwargs: Refused()  # type: ignore[method-assign,assignment,return-value]
    with caplog.at_level(logging.ERROR, logger="mqttbridge.mqtt"):
        session.publish("bp/topic/a", "1")
        session.publish("bp/topic/b", "2")
    assert session.refused == 2
    assert [r.getMessage() for r in caplog.records] == [
        "paho refused to queue a message on bp/topic/a (0 unacknowledged messages); 1 lost so far"
    ]
