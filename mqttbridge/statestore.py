"""Small JSON files in ``state_dir`` (tokens now; budgets and executions later).

Writes are atomic (temporary file, fsync, rename) so a crash never leaves half a token file, and
files are 0600 in a 0700 folder because they hold credentials. A corrupt file is set aside, not
fatal: the caller just starts without it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class StateStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _ensure_dir(self, folder: Path) -> None:
        """The root and every folder below it that we create are 0700."""
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        chain = [folder, *folder.parents]
        for part in chain[: chain.index(self.root) + 1] if self.root in chain else [folder]:
            try:
                os.chmod(part, 0o700)
            except OSError as exc:  # pragma: no cover - e.g. a folder owned by another user
                log.warning("cannot set mode 0700 on %s: %s", part, exc.strerror)

    def path(self, name: str) -> Path:
        return self.root / name

    def write_json(self, name: str, data: Any) -> bool:
        """Write atomically; False (and a warning) if the folder is not writable, never an exception."""
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
            log.warning("cannot write %s: %s; keeping it in memory only", target, exc.strerror or exc)
            return False
        return True

    def read_json(self, name: str) -> Any | None:
        """The file's data, or None if absent; a corrupt file is renamed aside and reported."""
        target = self.path(name)
        try:
            text = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read %s: %s; starting without it", target, exc.strerror or exc)
            return None
        try:
            return json.loads(text)
        except ValueError:
            aside = target.with_name(f"{target.name}.corrupt-{int(time.time())}")
            try:
                os.replace(target, aside)
            except OSError:
                aside = target
            log.warning("state file %s is corrupt; set aside as %s, starting without it", target, aside.name)
            return None

    def delete(self, name: str) -> None:
        try:
            self.path(name).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot delete %s: %s", self.path(name), exc.strerror or exc)
