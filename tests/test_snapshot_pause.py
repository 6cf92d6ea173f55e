"""The snapshot's pause grows with what a save costs (issue 13): a fleet's snapshot never takes most of a core."""

from __future__ import annotations

from pathlib import Path

from mqttbridge.persist import SNAPSHOT_INTERVAL_S, SNAPSHOT_SHARE, SnapshotKeeper
from mqttbridge.publish import Publisher
from mqttbridge.statestore import StateStore

from .test_memory_tables import RecordingSession


def test_the_pause_is_the_interval_until_a_save_takes_long(tmp_path: Path) -> None:
    publisher = Publisher(RecordingSession())
    keeper = SnapshotKeeper(StateStore(tmp_path), publisher, lambda: {"VIN": ("acc", "car/x")}, excluded=())
    assert keeper.pause() == SNAPSHOT_INTERVAL_S
    publisher.retained("car/x/state", "{}")
    assert keeper.save() and keeper.last_save_s > 0
    assert keeper.pause() == max(SNAPSHOT_INTERVAL_S, SNAPSHOT_SHARE * keeper.last_save_s)
    keeper.last_save_s = 2.0  # e.g. 10,000 vehicles
    assert keeper.pause() == 40.0
    assert not keeper.save(), "nothing changed: nothing saved"


def test_a_change_of_the_bridges_own_topics_alone_saves_nothing(tmp_path: Path) -> None:
    publisher = Publisher(RecordingSession())
    keeper = SnapshotKeeper(
        StateStore(tmp_path), publisher, lambda: {"VIN": ("acc", "car/x")}, excluded=("car/bridge/", "homeassistant/")
    )
    publisher.retained("car/x/state", "{}")
    assert keeper.save()
    for used in range(5):  # the budget topic moves at every poll round
        publisher.retained("car/bridge/accounts/a/budget", f'{{"used": {used}}}')
        publisher.remember("homeassistant/device/x/config", f"{used}")
    publisher.clear("car/bridge/accounts/a/login")
    assert not keeper.save(), "nothing the snapshot holds changed"
    publisher.retained("car/x/odometer", "12")
    assert keeper.save()
    publisher.clear("car/x/odometer")
    assert keeper.save(), "a vehicle's topic deleted is a change"
