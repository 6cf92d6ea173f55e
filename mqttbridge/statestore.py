"""Small JSON files in ``state_dir``: tokens, budgets, executions, the snapshot, the unlock lockout.

Writes are atomic (temporary file, fsync, rename) so a crash never leaves half a token file, and
files are 0600 in a 0700 folder because they hold credentials. An unreadable file (bad bytes, bad
JSON) is set aside, not fatal: the caller just starts without it, and the bridge publishes what was
set aside once it is connected (``take_set_aside``). A folder that cannot be written is said once
per file, then every few minutes, not at every write (``WriteWarnings``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

log = logging.getLogger(__name__)

#: how many set-aside reports are kept for the bridge when nobody takes them (the oldest go first)
SET_ASIDE_KEPT = 100
#: a write that keeps failing is warned about again at most this often
WRITE_WARN_PERIOD_S = 600.0


class SetAside(NamedTuple):
    """A state file the store could not use: where it was, where it went, and why."""

    path: Path
    #: the ``<name>.corrupt-<time>`` it was renamed to; None if it could not be moved (it stays at ``path``)
    aside_path: Path | None
    reason: str


_set_aside_lock = threading.Lock()
_set_aside: deque[SetAside] = deque(maxlen=SET_ASIDE_KEPT)


def take_set_aside() -> list[SetAside]:
    """The state files set aside (or left unreadable) since the last call, oldest first, and forget them.

    Contract: every ``StateStore.read_json`` that found a file it could not use (bytes that are not
    UTF-8, invalid JSON, a read error) adds one ``SetAside(path, aside_path, reason)``, whichever
    StateStore instance and thread read it; each entry is handed out by exactly one call. ``path``
    is the file's path, ``aside_path`` the ``<name>.corrupt-<unix time>`` it was renamed to in the
    same folder, or None when it stayed where it was (it could not be renamed, or reading failed
    for a reason other than its content); ``reason`` is a short text for a user, never the content.
    Thread-safe. Only the last ``SET_ASIDE_KEPT`` entries are kept until taken. The bridge calls it
    after it connects and publishes each entry as an event.
    """
    with _set_aside_lock:
        taken = list(_set_aside)
        _set_aside.clear()
    return taken


def _report_set_aside(entry: SetAside) -> None:
    with _set_aside_lock:
        _set_aside.append(entry)


@dataclass
class _Failing:
    warned_at: float
    quiet: int = 0  # failures not warned about since ``warned_at``
    total: int = 1  # failures in a row


class WriteWarnings:
    """Which failed writes deserve a warning: the first, then one per ``period`` with a count.

    Shared by every StateStore (a class attribute), because the bridge's, the service monitor's and
    the backends' stores write into the same folder; keyed by absolute file path.
    """

    def __init__(self, period: float = WRITE_WARN_PERIOD_S, clock: Callable[[], float] = time.monotonic):
        self.period = period
        self.clock = clock
        self._lock = threading.Lock()
        self._failing: dict[str, _Failing] = {}

    def failed(self, key: str) -> int | None:
        """None to stay quiet; else warn now: 0 the first time, else failures since the last warning."""
        with self._lock:
            now = self.clock()
            state = self._failing.get(key)
            if state is None:
                self._failing[key] = _Failing(warned_at=now)
                return 0
            state.total += 1
            state.quiet += 1
            if now - state.warned_at < self.period:
                return None
            count, state.quiet, state.warned_at = state.quiet, 0, now
            return count

    def succeeded(self, key: str) -> int:
        """How many writes had failed in a row before this one; the next failure is warned at once."""
        with self._lock:
            state = self._failing.pop(key, None)
        return state.total if state is not None else 0


class StateStore:
    """The JSON files below one folder; never raises for a file or folder it cannot use."""

    #: shared by every instance: see WriteWarnings (tests put one with their own clock here)
    write_warnings: ClassVar[WriteWarnings] = WriteWarnings()

    def __init__(self, root: Path):
        self.root = Path(root)

    def _ensure_dir(self, folder: Path) -> None:
        """The root and every folder below it that we create are 0700."""
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        chain = [folder, *folder.parents]
        for part in chain[: chain.index(self.root) + 1] if self.root in chain else [folder]:
            key = f"mode:{os.path.abspath(part)}"
            try:
                os.chmod(part, 0o700)
            except OSError as exc:  # e.g. a folder owned by another user, a read-only file system
                if self.write_warnings.failed(key) is not None:
                    log.warning("cannot set mode 0700 on %s: %s", part, exc.strerror or exc)
            else:
                self.write_warnings.succeeded(key)

    def path(self, name: str) -> Path:
        return self.root / name

    def _write_failed(self, target: Path, exc: OSError, what: str) -> None:
        """Warn about the first failure, then at most every period, with how many failed meanwhile."""
        count = self.write_warnings.failed(os.path.abspath(target))
        if count is None:
            log.debug("cannot %s %s: %s", what, target, exc.strerror or exc)
        elif count == 0:
            log.warning(
                "cannot %s %s: %s; keeping it in memory only (said again every %.0f min while it fails)",
                what,
                target,
                exc.strerror or exc,
                self.write_warnings.period / 60,
            )
        else:
            log.warning(
                "cannot %s %s: %s; keeping it in memory only (%d failed since the last warning)",
                what,
                target,
                exc.strerror or exc,
                count,
            )

    def _write_worked(self, target: Path) -> None:
        failed = self.write_warnings.succeeded(os.path.abspath(target))
        if failed:
            log.info("writing %s works again (after %d failed writes)", target, failed)

    def write_json(self, name: str, data: Any) -> bool:
        """Write atomically; False (and a throttled warning) if the folder is not writable, never an exception."""
        target = self.path(name)
        try:
            self._ensure_dir(target.parent)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(data, handle, separators=(",", ":"), sort_keys=True)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            self._write_failed(target, exc, "write")
            return False
        self._write_worked(target)
        return True

    def read_json(self, name: str) -> Any | None:
        """The file's data, or None if absent or unusable; an unusable file is set aside and reported."""
        target = self.path(name)
        try:
            raw = target.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            reason = f"cannot read it: {exc.strerror or exc}"
            log.warning("cannot read state file %s: %s; starting without it", target, exc.strerror or exc)
            _report_set_aside(SetAside(target, None, reason))
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            reason = f"not UTF-8 (byte {exc.start})"
        except ValueError as exc:
            reason = f"not JSON ({exc})"
        except RecursionError:
            reason = "not JSON (nested too deeply)"
        self._set_aside(target, reason)
        return None

    def _set_aside(self, target: Path, reason: str) -> None:
        """Rename the file out of the way (kept for a human to look at) and report it."""
        stem = f"{target.name}.corrupt-{int(time.time())}"
        aside = target.with_name(stem)
        number = 1
        while aside.exists():  # never overwrite what an earlier read set aside in the same second
            number += 1
            aside = target.with_name(f"{stem}-{number}")
        try:
            os.replace(target, aside)
        except OSError as exc:
            log.warning(
                "state file %s is corrupt (%s) and cannot be set aside: %s; starting without it",
                target,
                reason,
                exc.strerror or exc,
            )
            _report_set_aside(SetAside(target, None, reason))
            return
        log.warning("state file %s is corrupt; set aside as %s, starting without it (%s)", target, aside.name, reason)
        _report_set_aside(SetAside(target, aside, reason))

    def delete(self, name: str) -> None:
        """Remove a file; a failure is warned about like a failed write (it is one)."""
        target = self.path(name)
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            self._write_failed(target, exc, "delete")
