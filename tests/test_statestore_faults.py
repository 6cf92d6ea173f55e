"""State files that cannot be read, a state_dir that cannot be written (issue 8 A and G).

An unreadable file (bytes that are not UTF-8, invalid JSON) is set aside and reported, never fatal,
for every file the bridge keeps; a write that keeps failing is said once, then every few minutes.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from datetime import UTC, datetime
from datetime import time as clock_time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mqttbridge.backends.bmw_legacy.api import BmwApi
from mqttbridge.budget import BudgetLedger
from mqttbridge.lockout import LOCKOUT_FILE, UnlockLockout
from mqttbridge.persist import EXECUTIONS_FILE, SNAPSHOT_FILE, ExecutionJournal, SnapshotKeeper
from mqttbridge.publish import Publisher
from mqttbridge.statestore import SetAside, StateStore, WriteWarnings, take_set_aside

from .conftest import account_data, make_config
from .mqtt_helpers import Observer
from .restart_helpers import BASE, Run, config_for, record, start_vendor

BAD_BYTES = b'\xff\xfe{"x":1}'
#: every file the bridge keeps in state_dir, for an account named "bmw"
STATE_FILES = ("budgets/bmw.json", EXECUTIONS_FILE, SNAPSHOT_FILE, LOCKOUT_FILE, "tokens/bmw.json")


@pytest.fixture(autouse=True)
def _no_leftover_reports():
    """Reports are process-wide: each test starts and ends with none pending."""
    take_set_aside()
    yield
    take_set_aside()


def _plant(root: Path, name: str, content: bytes = BAD_BYTES) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _set_aside_files(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.corrupt-"))


def _assert_set_aside(path: Path, reported: list[SetAside], caplog) -> None:
    [aside] = _set_aside_files(path)
    assert not path.exists() and aside.read_bytes() == BAD_BYTES  # kept for a human, out of the way
    assert [(r.path, r.aside_path) for r in reported] == [(path, aside)]
    assert "not UTF-8" in reported[0].reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(path) in w and aside.name in w for w in warnings), warnings


# --- A: unreadable files are set aside and reported ---------------------------------------------------


@pytest.mark.parametrize("name", STATE_FILES)
def test_read_json_sets_aside_bytes_that_are_not_utf8(tmp_path: Path, caplog, name: str) -> None:
    path = _plant(tmp_path, name)
    assert StateStore(tmp_path).read_json(name) is None
    _assert_set_aside(path, take_set_aside(), caplog)
    assert take_set_aside() == [], "each report is handed out once"
    assert StateStore(tmp_path).read_json(name) is None and take_set_aside() == []  # now simply absent


def test_invalid_json_is_reported_too(tmp_path: Path) -> None:
    path = _plant(tmp_path, EXECUTIONS_FILE, b'{"executions": {"x": ')
    assert StateStore(tmp_path).read_json(EXECUTIONS_FILE) is None
    [report] = take_set_aside()
    assert report.path == path and report.aside_path == _set_aside_files(path)[0]
    assert report.reason.startswith("not JSON")
    path_, aside_path, reason = report  # the plain (path, aside_path, reason) tuple the bridge unpacks
    assert (path_, aside_path, reason) == (report.path, report.aside_path, report.reason)


def test_a_second_bad_file_in_the_same_second_does_not_overwrite_the_first(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    path = _plant(tmp_path, SNAPSHOT_FILE)
    store.read_json(SNAPSHOT_FILE)
    _plant(tmp_path, SNAPSHOT_FILE, b"\xc3\x28")
    store.read_json(SNAPSHOT_FILE)
    assert sorted(p.read_bytes() for p in _set_aside_files(path)) == sorted([BAD_BYTES, b"\xc3\x28"])
    assert len(take_set_aside()) == 2


def test_a_file_that_cannot_be_moved_is_still_reported_and_not_fatal(tmp_path: Path, monkeypatch, caplog) -> None:
    path = _plant(tmp_path, LOCKOUT_FILE)

    def refuse(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    assert StateStore(tmp_path).read_json(LOCKOUT_FILE) is None
    [report] = take_set_aside()
    assert (report.path, report.aside_path) == (path, None) and path.exists()
    assert "cannot be set aside: Read-only file system" in caplog.text


def test_reports_from_many_threads_are_each_taken_once(tmp_path: Path) -> None:
    names = [f"tokens/account{n}.json" for n in range(8)]
    for name in names:
        _plant(tmp_path, name)
    threads = [threading.Thread(target=StateStore(tmp_path).read_json, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.path for r in take_set_aside()) == sorted(tmp_path / n for n in names)
    assert take_set_aside() == []


def test_the_loaders_start_without_a_file_that_is_not_utf8(tmp_path: Path, caplog) -> None:
    store = StateStore(tmp_path)
    paths = [_plant(tmp_path, name) for name in STATE_FILES]

    ledger = BudgetLedger(
        "bmw",
        limit=100,
        reset=clock_time(0, 0),
        reserve=0,
        store=store,
        now=lambda: datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    )
    assert ledger.snapshot()["remaining"] == 100  # counting from zero
    assert ExecutionJournal(store).load() == []
    assert SnapshotKeeper(store, Publisher(SimpleNamespace()), lambda: {}, excluded=()).load() == []
    lockout = UnlockLockout(store, attempts=3, window=600.0, duration=3600.0)
    lockout.load()
    assert lockout.locked() == {}
    config = make_config(tmp_path, [account_data("http://127.0.0.1:9")], state_dir=str(tmp_path))
    api = BmwApi(config.accounts[0], store)
    api._load_token()
    assert api._token is None  # a fresh login will be needed, nothing worse

    reported = take_set_aside()
    assert [r.path for r in reported] == paths
    for path in paths:
        _assert_set_aside(path, [r for r in reported if r.path == path], caplog)


def test_the_bmw_backend_logs_in_again_after_its_token_file_was_set_aside(sim, tmp_path: Path) -> None:
    from mqttbridge.backends import create_backend

    config = make_config(tmp_path, [account_data(sim.url)])
    token = _plant(Path(config.state_dir), "tokens/bmw.json")
    backend = create_backend(config.accounts[0], StateStore(config.state_dir))
    try:
        assert backend.list_vehicles()
    finally:
        backend.close()
    assert [r.path for r in take_set_aside()] == [token]
    assert _set_aside_files(token)


def test_the_hyundai_kia_backend_starts_without_a_token_file_that_is_not_utf8(tmp_path: Path) -> None:
    pytest.importorskip("hyundai_kia_connect_api")
    from mqttbridge.backends.hyundai_kia.backend import HyundaiKiaBackend

    token = _plant(tmp_path, "tokens/kia.json")
    account = SimpleNamespace(
        name="kia",
        provider="hyundai_kia",
        brand="kia",
        region="europe",
        username="driver@example.com",
        password="S3cret-Passw0rd!",
        pin="1234",
        retries=3,
        poll=None,
        commands=None,
        vehicles=(),
    )
    backend = HyundaiKiaBackend(account, StateStore(tmp_path))
    try:
        assert backend.manager.token is None
    finally:
        backend.close()
    assert [r.path for r in take_set_aside()] == [token]


@pytest.fixture
def vendor():
    server = start_vendor()
    yield server
    server.stop()


@pytest.mark.slow
def test_the_daemon_comes_up_with_state_files_that_are_not_utf8(tmp_path: Path, broker, vendor) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    names = (EXECUTIONS_FILE, SNAPSHOT_FILE, LOCKOUT_FILE, "budgets/sim.json", "tokens/sim.json")
    for name in names:
        _plant(state, name)
    runs = Run(tmp_path, config_for(broker, vendor, state))
    obs = Observer(broker.port)
    try:
        daemon = runs.start()
        obs.wait_topic(f"{BASE}/bridge/state", "online")
        assert record(obs.wait_topic(f"{BASE}/i3/state"))["odometer"] > 0
        assert daemon.alive()
        for name in names:
            assert f"state file {state / name} is corrupt; set aside as {Path(name).name}.corrupt-" in daemon.tail()
            assert _set_aside_files(state / name)
        assert daemon.stop() == 0
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{runs.logs()}") from None
    finally:
        obs.close()
        runs.close()


# --- G: a state_dir that cannot be written is said once, then every few minutes ---------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def warnings_clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(StateStore, "write_warnings", WriteWarnings(period=600.0, clock=clock))
    return clock


def _warnings(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name == "mqttbridge.statestore"
    ]


def test_failing_writes_warn_once_then_every_period_with_a_count(tmp_path: Path, caplog, warnings_clock) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the state_dir should be")
    stores = [StateStore(blocker / "state"), StateStore(blocker / "state")]  # the bridge's and the monitor's
    with caplog.at_level(logging.INFO, logger="mqttbridge.statestore"):
        for n in range(100):
            assert stores[n % 2].write_json("heartbeat.json", {"n": n}) is False
            warnings_clock.now += 1
        assert len(_warnings(caplog)) == 1
        assert f"cannot write {blocker / 'state' / 'heartbeat.json'}" in _warnings(caplog)[0]

        warnings_clock.now += 600
        stores[0].write_json("heartbeat.json", {})
        warnings = _warnings(caplog)
        assert len(warnings) == 2 and "100 failed since the last warning" in warnings[1]
        stores[1].write_json("heartbeat.json", {})
        assert len(_warnings(caplog)) == 2


def test_a_write_failing_again_after_it_worked_is_said_at_once(
    tmp_path: Path, caplog, monkeypatch, warnings_clock
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = StateStore(blocker)
    with caplog.at_level(logging.INFO, logger="mqttbridge.statestore"):
        for _ in range(10):
            store.write_json("budgets/a.json", {})
        assert len(_warnings(caplog)) == 1
        blocker.unlink()  # the folder can be made now
        assert store.write_json("budgets/a.json", {}) is True
        assert "works again (after 10 failed writes)" in caplog.text

        real_replace = os.replace

        def read_only(src, dst):
            if str(dst).endswith("a.json"):
                raise OSError(errno.EROFS, "Read-only file system")
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", read_only)
        for _ in range(10):
            assert store.write_json("budgets/a.json", {}) is False
    warnings = _warnings(caplog)
    assert len(warnings) == 2 and "Read-only file system" in warnings[1]
    assert [p.name for p in (blocker / "budgets").iterdir()] == ["a.json"]  # no temporary file left behind


def test_each_file_is_said_once(tmp_path: Path, caplog, warnings_clock) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = StateStore(blocker)
    with caplog.at_level(logging.WARNING, logger="mqttbridge.statestore"):
        for _ in range(20):
            for name in ("heartbeat.json", EXECUTIONS_FILE):
                store.write_json(name, {})
            store.delete(EXECUTIONS_FILE)  # a delete of it is a write of it
    assert len(_warnings(caplog)) == 2


def test_a_folder_whose_mode_cannot_be_set_is_said_once(tmp_path: Path, caplog, monkeypatch, warnings_clock) -> None:
    def refuse(*_args, **_kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refuse)
    store = StateStore(tmp_path / "state")
    with caplog.at_level(logging.WARNING, logger="mqttbridge.statestore"):
        for n in range(50):
            assert store.write_json("heartbeat.json", {"n": n}) is True
    assert _warnings(caplog) == [f"cannot set mode 0700 on {tmp_path / 'state'}: Operation not permitted"]
