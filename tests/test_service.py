"""systemd notification, the heartbeat thread and `health`: against real unix datagram sockets."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqttbridge import __version__
from mqttbridge.service import HEARTBEAT_FILE, ServiceMonitor, default_interval, health, notify, watchdog_seconds
from tests.mqtt_helpers import wait_until

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs unix sockets")

RECEIVE_TIMEOUT = 5.0


class Listener:
    """The service manager's end: a bound datagram socket that NOTIFY_SOCKET names."""

    def __init__(self, sock: socket.socket, name: str):
        self.sock = sock
        self.name = name

    def receive(self, timeout: float = RECEIVE_TIMEOUT) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode("utf-8")

    def receive_until(self, wanted: str, limit: int = 50) -> list[str]:
        """Messages up to and including the first that holds ``wanted`` (fails on timeout)."""
        seen: list[str] = []
        for _ in range(limit):
            seen.append(self.receive())
            if wanted in seen[-1].splitlines():
                return seen
        raise AssertionError(f"{wanted!r} not among {seen}")

    def pending(self) -> list[str]:
        """Whatever has already arrived, without waiting."""
        self.sock.setblocking(False)
        out: list[str] = []
        try:
            while True:
                out.append(self.sock.recv(4096).decode("utf-8"))
        except BlockingIOError:
            return out
        finally:
            self.sock.setblocking(True)


@pytest.fixture
def path_listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        yield Listener(sock, str(path))
    finally:
        sock.close()


@pytest.fixture
def abstract_listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    if not sys.platform.startswith("linux"):
        pytest.skip("the abstract socket namespace is Linux only")
    name = f"mqttbridge-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    try:
        yield Listener(sock, "@" + name)
    finally:
        sock.close()


def write_heartbeat(state_dir: Path, **fields: object) -> None:
    data = {"pid": os.getpid(), "time": 1000.0, "connected": True, "version": __version__}
    data.update(fields)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / HEARTBEAT_FILE).write_text(json.dumps(data), encoding="utf-8")


def dead_pid() -> int:
    """The pid of a child that has exited and been reaped: nothing runs under it any more."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- notify() -----------------------------------------------------------------------------------------


def test_notify_sends_to_a_socket_path(path_listener: Listener) -> None:
    assert notify("READY=1") is True
    assert path_listener.receive() == "READY=1"


def test_notify_sends_to_an_abstract_name(abstract_listener: Listener) -> None:
    assert notify("WATCHDOG=1") is True
    assert abstract_listener.receive() == "WATCHDOG=1"


def test_notify_without_notify_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_notify_to_a_missing_socket_returns_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert notify("READY=1") is False


@pytest.mark.parametrize("value", ["relative/path", "/bad\0path"])
def test_notify_never_raises_on_a_bad_address(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "environ", {**os.environ, "NOTIFY_SOCKET": value})
    assert notify("READY=1") is False


# --- the watchdog interval -------------------------------------------------------------------------------


def test_interval_is_half_the_watchdog_capped_at_15_s() -> None:
    mine = str(os.getpid())
    assert watchdog_seconds({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": mine}) == 20.0
    assert default_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": mine}) == 10.0
    assert default_interval({"WATCHDOG_USEC": "60000000"}) == 15.0
    assert default_interval({}) == 15.0
    assert default_interval({"WATCHDOG_USEC": "junk"}) == 15.0
    # a watchdog meant for another process is not ours to feed
    assert watchdog_seconds({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None


# --- ServiceMonitor ---------------------------------------------------------------------------------------


def test_monitor_writes_a_private_heartbeat_and_feeds_the_watchdog(tmp_path: Path, path_listener: Listener) -> None:
    state = tmp_path / "state"
    monitor = ServiceMonitor(state, connected=lambda: True, interval=0.05, clock=lambda: 1234.5)
    monitor.start()
    try:
        assert path_listener.receive() == "WATCHDOG=1"
        assert path_listener.receive() == "WATCHDOG=1"  # and again, on the interval
    finally:
        monitor.stop()
    data = json.loads((state / HEARTBEAT_FILE).read_text())
    assert data == {
        "pid": os.getpid(),
        "time": 1234.5,
        "connected": True,
        "alive": True,
        "version": __version__,
        "stopped": True,
    }
    assert stat.S_IMODE((state / HEARTBEAT_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_heartbeat_records_the_broker_session_and_watchdog_keeps_being_fed(
    tmp_path: Path, path_listener: Listener
) -> None:
    """A broker that is down shows in the heartbeat; the daemon is alive, so the watchdog is fed."""
    monitor = ServiceMonitor(tmp_path, connected=lambda: False, interval=0.05, clock=lambda: 99.0)
    monitor.start()
    try:
        assert path_listener.receive() == "WATCHDOG=1"
        data = json.loads((tmp_path / HEARTBEAT_FILE).read_text())
        assert data["connected"] is False
        assert "stopped" not in data
    finally:
        monitor.stop()


def test_ready_and_stopping_notifications(tmp_path: Path, path_listener: Listener) -> None:
    monitor = ServiceMonitor(tmp_path, connected=lambda: True, interval=60)
    assert monitor.ready() is True
    assert path_listener.receive_until("READY=1")
    assert monitor.stopping() is True
    assert path_listener.receive_until("STOPPING=1")


def test_stop_ends_the_thread_and_marks_the_heartbeat_stopped(tmp_path: Path, path_listener: Listener) -> None:
    monitor = ServiceMonitor(tmp_path, connected=lambda: True, interval=0.05, clock=lambda: 5000.0)
    monitor.start()
    path_listener.receive()
    thread = monitor._thread
    assert thread is not None
    monitor.stop()
    assert not thread.is_alive()
    path_listener.pending()  # drain
    # no further watchdog feeds arrive once stopped
    with pytest.raises(TimeoutError):
        path_listener.receive(timeout=0.3)
    assert health(tmp_path, now=lambda: 5000.0) == (False, f"the daemon (pid {os.getpid()}) has stopped")


def test_a_failing_connected_check_counts_as_disconnected(tmp_path: Path, path_listener: Listener) -> None:
    def connected() -> bool:
        raise RuntimeError("boom")

    monitor = ServiceMonitor(tmp_path, connected=connected, interval=0.02, clock=lambda: 1.0)
    monitor.start()
    try:
        for _ in range(3):
            assert path_listener.receive() == "WATCHDOG=1"
        assert json.loads((tmp_path / HEARTBEAT_FILE).read_text())["connected"] is False
        assert monitor._thread is not None and monitor._thread.is_alive()
    finally:
        monitor.stop()


def test_a_slow_beat_cannot_overwrite_the_stopped_heartbeat(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    def connected() -> bool:
        if threading.current_thread().name == "mqttbridge-service" and not release.is_set():
            entered.set()
            release.wait(RECEIVE_TIMEOUT)
        return True

    monitor = ServiceMonitor(tmp_path, connected=connected, interval=60, clock=lambda: 1.0)
    monitor.start()
    thread = monitor._thread
    assert thread is not None
    assert entered.wait(RECEIVE_TIMEOUT)  # the first beat is stuck in the connected check
    monitor.stop(timeout=0.01)
    release.set()
    thread.join(RECEIVE_TIMEOUT)
    assert not thread.is_alive()
    assert json.loads((tmp_path / HEARTBEAT_FILE).read_text()).get("stopped") is True


def test_an_exception_inside_a_beat_is_survived(
    tmp_path: Path, path_listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monitor = ServiceMonitor(tmp_path, connected=lambda: True, interval=0.02)
    real_write = monitor._write
    failures = {"left": 2}

    def flaky_write(*, stopped: bool, alive: bool = True) -> bool:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("disk on fire")
        return real_write(stopped=stopped, alive=alive)

    monkeypatch.setattr(monitor, "_write", flaky_write)
    monitor.start()
    try:
        assert path_listener.receive() == "WATCHDOG=1"  # only after two failed beats
        assert failures["left"] == 0
    finally:
        monitor.stop()


def test_the_watchdog_is_starved_when_a_loop_has_died(tmp_path: Path, path_listener: Listener) -> None:
    state = {"alive": True, "refusals": 0}
    refused_three_times = threading.Event()

    def alive() -> bool:
        if not state["alive"]:
            state["refusals"] += 1
            if state["refusals"] >= 3:
                refused_three_times.set()
        return state["alive"]

    monitor = ServiceMonitor(tmp_path, connected=lambda: True, interval=0.02, alive=alive)
    monitor.start()
    try:
        assert path_listener.receive() == "WATCHDOG=1"
        state["alive"] = False
        assert refused_three_times.wait(RECEIVE_TIMEOUT)
        path_listener.pending()  # feeds sent before the loop died
        with pytest.raises(TimeoutError):
            path_listener.receive(timeout=0.2)
        assert monitor._thread is not None and monitor._thread.is_alive()  # the heartbeat goes on
    finally:
        monitor.stop()


def test_monitor_in_an_unwritable_state_dir_still_feeds_the_watchdog(tmp_path: Path, path_listener: Listener) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monitor = ServiceMonitor(blocker / "state", connected=lambda: True, interval=0.05)
    monitor.start()
    try:
        assert path_listener.receive() == "WATCHDOG=1"
    finally:
        monitor.stop()


# --- health() -----------------------------------------------------------------------------------------------


def test_health_fresh_and_connected_is_ok(tmp_path: Path) -> None:
    write_heartbeat(tmp_path, time=1000.0)
    ok, reason = health(tmp_path, now=lambda: 1010.0)
    assert ok is True
    assert reason.startswith("ok:")


def test_health_of_a_real_monitor(tmp_path: Path, path_listener: Listener) -> None:
    monitor = ServiceMonitor(tmp_path, connected=lambda: True, interval=0.05)
    monitor.start()
    try:
        path_listener.receive()
        assert health(tmp_path)[0] is True
    finally:
        monitor.stop()
    assert health(tmp_path)[0] is False


def test_health_stale_heartbeat(tmp_path: Path) -> None:
    write_heartbeat(tmp_path, time=1000.0)
    ok, reason = health(tmp_path, max_age=60, now=lambda: 1300.0)
    assert ok is False
    assert "heartbeat 300 s old" in reason
    assert health(tmp_path, max_age=60, now=lambda: 1059.0)[0] is True


def test_health_missing_heartbeat(tmp_path: Path) -> None:
    ok, reason = health(tmp_path / "nowhere")
    assert ok is False
    assert reason == f"no heartbeat in {tmp_path / 'nowhere'}: is the daemon running with this state_dir?"


def test_health_dead_pid(tmp_path: Path) -> None:
    pid = dead_pid()
    write_heartbeat(tmp_path, pid=pid)
    ok, reason = health(tmp_path, now=lambda: 1000.0)
    assert ok is False
    assert reason == f"the daemon (pid {pid}) is not running"


def test_health_pid_of_another_user_counts_as_alive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def kill(_pid: int, _sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", kill)
    write_heartbeat(tmp_path, pid=1)
    assert health(tmp_path, now=lambda: 1000.0)[0] is True


def test_health_stopped(tmp_path: Path) -> None:
    write_heartbeat(tmp_path, stopped=True)
    ok, reason = health(tmp_path, now=lambda: 1000.0)
    assert ok is False
    assert "has stopped" in reason


def test_health_disconnected(tmp_path: Path) -> None:
    write_heartbeat(tmp_path, connected=False)
    ok, reason = health(tmp_path, now=lambda: 1000.0)
    assert ok is False
    assert "the broker session is down" in reason


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is not valid JSON"),
        ("", "is not valid JSON"),
        ("[1, 2]", "does not hold a heartbeat object"),
        ('{"time": 1000.0, "connected": true}', "has no valid pid"),
        ('{"pid": "12", "time": 1000.0, "connected": true}', "has no valid pid"),
        ('{"pid": 12, "time": "yesterday", "connected": true}', "has no valid time"),
        ('{"pid": 12, "time": NaN, "connected": true}', "has no valid time"),
    ],
)
def test_health_corrupt_heartbeat(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / HEARTBEAT_FILE).write_text(content, encoding="utf-8")
    ok, reason = health(tmp_path, now=lambda: 1000.0)
    assert ok is False
    assert expected in reason
    assert "Traceback" not in reason
    assert (tmp_path / HEARTBEAT_FILE).read_text(encoding="utf-8") == content  # a probe changes nothing


def test_health_binary_garbage_is_reported(tmp_path: Path) -> None:
    (tmp_path / HEARTBEAT_FILE).write_bytes(b"\xff\xfe\x00garbage")
    ok, reason = health(tmp_path, now=lambda: 1000.0)
    assert ok is False
    assert str(tmp_path / HEARTBEAT_FILE) in reason


def test_a_dead_loop_makes_the_daemon_unhealthy(tmp_path: Path) -> None:
    """An account thread that died must not leave a zombie that `health` calls ok."""
    loops = {"alive": True}
    monitor = ServiceMonitor(tmp_path, connected=lambda: True, alive=lambda: loops["alive"], interval=3600)
    monitor.poke()
    assert health(tmp_path)[0] is True
    loops["alive"] = False
    monitor.poke()
    ok, reason = health(tmp_path)
    assert ok is False and "has stopped" in reason


def test_a_poke_writes_the_connection_state_at_once(tmp_path: Path) -> None:
    connected = {"now": False}
    monitor = ServiceMonitor(tmp_path, connected=lambda: connected["now"], interval=3600)
    monitor.start()  # the first beat: not connected yet; the next one would come an hour later
    try:
        wait_until(lambda: (tmp_path / HEARTBEAT_FILE).exists(), what="the first heartbeat")
        assert health(tmp_path)[0] is False
        connected["now"] = True
        monitor.poke()  # what the bridge does when its session comes up
        assert health(tmp_path)[0] is True
    finally:
        monitor.stop()
