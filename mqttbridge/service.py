"""Running as a service: systemd readiness and watchdog, and a heartbeat file for health checks.

systemd (``Type=notify``, ``WatchdogSec=``) learns that the daemon is up and still alive through the
sd_notify protocol, spoken here by hand so the daemon needs no extra package. Docker and anything
else that cannot receive notifications read ``state_dir/heartbeat.json`` instead, through
``mqttbridge health``.

What the two signals mean is deliberately different:

- ``WATCHDOG=1`` says "the process is alive and its loops run". A daemon whose broker is down is
  alive and retrying on its own, and restarting it would not bring the broker back, so the watchdog
  keeps being fed while the broker is down. It stops being fed only when the ``alive`` check (when
  given) fails, or when the monitor thread itself no longer runs: then systemd restarts the daemon.
- ``mqttbridge health`` says "this bridge is doing its job": it fails while the broker session is
  down, so a container orchestrator or a monitoring script sees a bridge that publishes nothing.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mqttbridge import __version__
from mqttbridge.statestore import StateStore

log = logging.getLogger(__name__)

HEARTBEAT_FILE = "heartbeat.json"
#: heartbeat period without a systemd watchdog; also the longest period, so `health --max-age 60` holds
DEFAULT_INTERVAL = 15.0
#: the shortest period accepted, so a mistyped WATCHDOG_USEC cannot make the thread spin
MIN_INTERVAL = 0.01


def notify(message: str) -> bool:
    """Send one sd_notify datagram to ``$NOTIFY_SOCKET``; False when there is none or it fails.

    Never raises: a service manager that went away must not take the daemon with it.
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # Linux abstract namespace
    elif not address.startswith("/"):
        log.debug("NOTIFY_SOCKET %r is neither a path nor an abstract name; not notifying", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode("utf-8"), address)
    except (OSError, ValueError, UnicodeError) as exc:
        log.debug("cannot notify the service manager (%s): %s", message.split("=", 1)[0], exc)
        return False
    return True


def watchdog_seconds(env: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout systemd gave this process (``WatchdogSec=``), or None without one."""
    env = os.environ if env is None else env
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # the watchdog is meant for another process (e.g. our parent)
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


def default_interval(env: Mapping[str, str] | None = None) -> float:
    """Half the watchdog timeout, as sd_watchdog_enabled(3) advises, but never above 15 s.

    The cap keeps the heartbeat fresh for ``health``'s 60 s limit even under a long ``WatchdogSec=``.
    """
    timeout = watchdog_seconds(env)
    if timeout is None:
        return DEFAULT_INTERVAL
    return max(MIN_INTERVAL, min(DEFAULT_INTERVAL, timeout / 2))


class ServiceMonitor:
    """Writes the heartbeat and feeds systemd's watchdog from a daemon thread.

    ``connected`` reports the broker session; it only goes into the heartbeat (see the module
    docstring). ``alive``, when given, is asked before each watchdog feed: return False when a
    loop the daemon depends on has died, and systemd restarts the daemon after ``WatchdogSec=``.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        connected: Callable[[], bool],
        interval: float | None = None,
        clock: Callable[[], float] = time.time,
        alive: Callable[[], bool] | None = None,
    ):
        self.store = StateStore(Path(state_dir))
        self.connected = connected
        self.alive = alive
        self.interval = default_interval() if interval is None else max(MIN_INTERVAL, float(interval))
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.beats = 0

    # --- life cycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the heartbeat thread; the first beat is written at once."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="mqttbridge-service", daemon=True)
            self._thread.start()
        log.debug("service monitor started: heartbeat every %.3g s in %s", self.interval, self.store.root)

    def ready(self) -> bool:
        """Tell systemd the daemon is up (``Type=notify`` waits for this before "started")."""
        return notify(f"READY=1\nSTATUS=bridging, mqttbridge {__version__}")

    def stopping(self) -> bool:
        """Tell systemd a clean stop has begun, so a slow shutdown is not taken for a hang."""
        return notify("STOPPING=1\nSTATUS=stopping")

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread and leave a heartbeat that says ``stopped``, so health fails at once."""
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._write(stopped=True)

    # --- the thread --------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception:  # the watchdog's thread must outlive any surprise
                log.exception("service heartbeat failed; trying again in %.3g s", self.interval)
            if self._stop.wait(self.interval):
                return

    def beat(self) -> None:
        """One heartbeat: the file, then the watchdog, unless the ``alive`` check says a loop died."""
        alive = self.alive is None or self._safe(self.alive, "alive")
        self._write(stopped=False, alive=alive)
        self.beats += 1
        if not alive:
            log.error("a bridge loop has stopped; no longer feeding the systemd watchdog")
            return
        notify("WATCHDOG=1")

    def poke(self) -> None:
        """Write the heartbeat now, on the caller's thread (the broker session just came up or went down):
        ``health`` must not report the old state for up to an interval."""
        alive = self.alive is None or self._safe(self.alive, "alive")
        self._write(stopped=False, alive=alive)

    def _write(self, *, stopped: bool, alive: bool = True) -> bool:
        data: dict[str, Any] = {
            "pid": os.getpid(),
            "time": self.clock(),
            "connected": self._safe(self.connected, "connected"),
            "alive": alive,
            "version": __version__,
        }
        if stopped:
            data["stopped"] = True
        with self._write_lock:
            if not stopped and self._stop.is_set():
                return False  # a beat that was slow must not overwrite the final "stopped" heartbeat
            return self.store.write_json(HEARTBEAT_FILE, data)

    @staticmethod
    def _safe(check: Callable[[], bool], name: str) -> bool:
        """A failing check counts as False, and is logged, instead of killing the thread."""
        try:
            return bool(check())
        except Exception:
            log.exception("the service monitor's %s check failed", name)
            return False


# --- `mqttbridge health` -------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    """Signal 0 probes without signalling; EPERM means it exists but belongs to another user."""
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except ProcessLookupError:
        return False
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def health(state_dir: Path, *, max_age: float = 60.0, now: Callable[[], float] = time.time) -> tuple[bool, str]:
    """Whether the daemon using ``state_dir`` runs and is connected to its broker, and why not.

    Reads the file by hand rather than through StateStore, which would set a corrupt file aside:
    a health probe must not change what it looks at.
    """
    state_dir = Path(state_dir)
    path = state_dir / HEARTBEAT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False, f"no heartbeat in {state_dir}: is the daemon running with this state_dir?"
    except PermissionError:
        return False, f"cannot read {path}: permission denied; run as the daemon's user or as root"
    except (OSError, UnicodeError) as exc:
        return False, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
    try:
        data = json.loads(text)
    except ValueError:
        return False, f"{path} is not valid JSON; the daemon rewrites it on its next heartbeat"
    if not isinstance(data, dict):
        return False, f"{path} does not hold a heartbeat object"
    pid, stamp = data.get("pid"), data.get("time")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False, f"{path} has no valid pid"
    if not isinstance(stamp, int | float) or isinstance(stamp, bool) or not math.isfinite(stamp):
        return False, f"{path} has no valid time"
    if data.get("stopped") is True:
        return False, f"the daemon (pid {pid}) has stopped"
    age = now() - float(stamp)
    if age > max_age:
        return False, f"heartbeat {age:.0f} s old (limit {max_age:.0f} s): the daemon is hung or gone"
    if not _pid_alive(pid):
        return False, f"the daemon (pid {pid}) is not running"
    if data.get("alive") is False:
        return False, (
            f"a loop of the daemon (pid {pid}) has stopped (e.g. an account's thread); "
            "see its log; restarting it should help"
        )
    if data.get("connected") is not True:
        return False, "the broker session is down: the daemon runs and keeps retrying; see its log"
    return True, f"ok: pid {pid}, connected, heartbeat {max(age, 0.0):.0f} s old, version {data.get('version')}"
