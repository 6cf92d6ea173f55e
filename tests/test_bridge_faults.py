"""The bridge facing broken state files and dying loops, with an in-memory broker session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mqttbridge.bridge import Bridge
from mqttbridge.persist import EXECUTIONS_FILE, SNAPSHOT_FILE
from mqttbridge.statestore import take_set_aside

from .conftest import Sim, account_data, make_config
from .fake_session import FakeSession
from .mqtt_helpers import wait_until


def _config(tmp_path: Path, sim: Sim):
    return make_config(tmp_path, [account_data(sim.url, poll={"interval": 600})], mqtt={"base_topic": "car"})


def test_unreadable_state_files_are_set_aside_and_said_on_the_event_topic(tmp_path: Path, sim: Sim) -> None:
    take_set_aside()  # what earlier tests in this process left behind is theirs
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    for name in (EXECUTIONS_FILE, SNAPSHOT_FILE):
        (state / name).write_bytes(b'\xff\xfe{"format": 1}')
    bridge = Bridge(_config(tmp_path, sim), session_factory=FakeSession)
    bridge.start()
    session = bridge.session
    assert isinstance(session, FakeSession)
    try:
        events = [json.loads(p.text) for p in session.since(0, "car/bridge/event")]
        aside = {Path(e["file"]).name: e for e in events if e["event"] == "state_file_set_aside"}
        assert set(aside) == {EXECUTIONS_FILE, SNAPSHOT_FILE}
        for name, event in aside.items():
            assert Path(event["set_aside_as"]).name.startswith(f"{name}.corrupt-")
            assert Path(event["set_aside_as"]).exists() and not (state / name).exists()
        session.wait_for(lambda p: p.topic.endswith("/availability") and p.text == "online", what="a car online")
        assert bridge.alive()
    finally:
        bridge.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread's death is the point
def test_a_dead_account_thread_makes_the_bridge_unhealthy(tmp_path: Path, sim: Sim) -> None:
    bridge = Bridge(_config(tmp_path, sim), session_factory=FakeSession)

    def die() -> None:
        raise SystemExit("the account thread ends")  # nothing the loop may catch

    bridge.accounts[0].discover = die  # type: ignore[method-assign]
    bridge.start()
    try:
        wait_until(lambda: not bridge.pollers[0].thread.is_alive(), what="the account thread to end")
        assert bridge.alive() is False
    finally:
        bridge.stop()
    assert bridge.alive() is True  # a stopped bridge is not a failing one


def test_the_heartbeat_hears_of_the_connection_before_online_is_published(tmp_path: Path, sim: Sim) -> None:
    """So `mqttbridge health` run as soon as `online` is seen already finds a connected heartbeat."""
    bridge = Bridge(_config(tmp_path, sim), session_factory=FakeSession)
    session = bridge.session
    assert isinstance(session, FakeSession)
    heard: list[tuple[bool, int]] = []
    bridge.connection_listeners.append(lambda up: heard.append((up, len(session.since(0, "car/bridge/state")))))
    bridge.start()
    try:
        assert heard == [(True, 0)]  # told while nothing was published on bridge/state yet
        assert [p.text for p in session.since(0, "car/bridge/state")] == ["online"]
    finally:
        bridge.stop()
