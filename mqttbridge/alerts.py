"""Alerts to the user's chat or webhook, sent off the caller's thread so a dead target costs nothing.

Alerts are raised from failure paths (login refused, budget spent, a command that failed); those paths
must never wait on, or fail because of, a notification target. ``Notifier.alert`` therefore only
enqueues; one worker thread delivers to each target independently, with a timeout, and a broken
target is logged (by type and index: its URL may hold a token) and counted, never raised.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from .logsetup import register_secret

log = logging.getLogger(__name__)

TARGET_TYPES = ("synology_chat", "webhook")
ALERT_KINDS = ("auth_failed", "account_failing", "budget_exhausted", "command_failed")
SOURCE = "mqttbridge"


@dataclass(frozen=True)
class NotifyTarget:
    """One ``notify:`` entry: ``type`` is ``synology_chat`` or ``webhook``; ``url`` may hold a token."""

    type: str
    url: str


@dataclass(frozen=True)
class _Alert:
    kind: str
    account: str
    message: str
    details: Mapping[str, Any]
    time: str


class _DeliveryFailed(Exception):
    """A target's answer that means the alert did not arrive; the message never holds the URL."""


def _register_url(url: str) -> None:
    """Mask the URL in logs, and its request target too: urllib3's debug lines show path and query only."""
    register_secret(url)
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    if parts.query or len(parts.path) > 1:
        register_secret(target)
    if parts.password:
        register_secret(parts.password)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Notifier:
    """Rate-limited, non-blocking alert delivery to a list of targets."""

    def __init__(
        self,
        targets: Sequence[NotifyTarget],
        *,
        interval: float = 3600.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
        queue_size: int = 100,
    ):
        for index, target in enumerate(targets):
            if target.type not in TARGET_TYPES:
                # the URL is left out on purpose: it may hold a token
                raise ValueError(f"notify target {index}: unknown type {target.type!r} (expected {TARGET_TYPES})")
            _register_url(target.url)
        self.targets: tuple[NotifyTarget, ...] = tuple(targets)
        self.interval = interval
        self.timeout = timeout
        self._clock = clock
        self._own_session = session is None
        self._session = session if session is not None else requests.Session()
        self._queue_size = max(1, queue_size)
        self._queue: deque[_Alert] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._last_sent: dict[tuple[str, str], float] = {}
        self.sent = 0
        self.dropped = 0
        self.failures = 0

    def start(self) -> None:
        """Start the worker; without targets there is nothing to deliver, so no thread either."""
        if not self.targets:
            return
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="mqttbridge-alerts", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Let the worker finish what is queued, waiting at most ``timeout`` seconds (it is a daemon)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("alert worker still busy after %.1f s; unsent alerts are abandoned", timeout)
                return
        with self._cond:
            self._thread = None
        if self._own_session:
            self._session.close()

    def alert(self, kind: str, account: str, message: str, details: Mapping[str, Any] | None = None) -> bool:
        """Queue an alert unless one of this kind for this account went out within ``interval``.

        Returns True if queued. Never waits on the network: a full queue drops the alert with a warning.
        """
        if kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {kind!r} (expected one of {ALERT_KINDS})")
        if not self.targets:
            log.debug("alert %s for %s not sent: no notify targets", kind, account)
            return False
        key = (kind, account)
        now = self._clock()
        with self._cond:
            last = self._last_sent.get(key)
            if last is not None and now - last < self.interval:
                self.dropped += 1
                log.debug("alert %s for %s suppressed: one was sent %.0f s ago", kind, account, now - last)
                return False
            if len(self._queue) >= self._queue_size:
                self.dropped += 1
                log.warning("alert queue full (%d): alert %s for %s dropped", self._queue_size, kind, account)
                return False
            self._last_sent[key] = now
            self._queue.append(
                _Alert(
                    kind=kind,
                    account=account,
                    message=message,
                    details=dict(details or {}),
                    time=datetime.now().astimezone().isoformat(timespec="seconds"),
                )
            )
            self._cond.notify_all()
        return True

    def wait_idle(self, timeout: float) -> bool:
        """For tests: True once the queue is empty and no delivery is in progress."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    # -- worker -------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._stopping)
                if not self._queue:
                    return
                item = self._queue.popleft()
                self._busy = True
            try:
                self._deliver(item)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, item: _Alert) -> None:
        """Each target on its own: one failing (or slow, up to ``timeout``) does not stop the others."""
        for index, target in enumerate(self.targets):
            try:
                self._send(target, item)
            except Exception as exc:  # a target must never take the worker down
                with self._cond:
                    self.failures += 1
                log.warning(
                    "alert %s for %s not delivered to notify target %d (%s): %s",
                    item.kind,
                    item.account,
                    index,
                    target.type,
                    _describe(exc),
                )
            else:
                with self._cond:
                    self.sent += 1
                log.debug(
                    "alert %s for %s delivered to notify target %d (%s)", item.kind, item.account, index, target.type
                )

    def _send(self, target: NotifyTarget, item: _Alert) -> None:
        timeout = (self.timeout, self.timeout)
        if target.type == "synology_chat":
            text = _one_line(f"[{SOURCE}] {item.kind} {item.account}: {item.message}")
            # Synology Chat incoming webhooks read a form field "payload" holding JSON
            response = self._session.post(
                target.url,
                data={"payload": json.dumps({"text": text}, ensure_ascii=False)},
                timeout=timeout,
                allow_redirects=False,
            )
        else:
            body = {
                "source": SOURCE,
                "kind": item.kind,
                "account": item.account,
                "message": item.message,
                "details": item.details,
                "time": item.time,
            }
            response = self._session.post(
                target.url,
                data=json.dumps(body, ensure_ascii=False, default=str).encode("utf-8"),
                headers={"Content-Type": "application/json"},
                timeout=timeout,
                allow_redirects=False,
            )
        try:
            # a redirect is not followed: it would drop the POST body and may send it to another host
            if response.status_code >= 300:
                raise _DeliveryFailed(f"HTTP {response.status_code}")
            if target.type == "synology_chat":
                _check_synology_answer(response)
        finally:
            response.close()


def _check_synology_answer(response: requests.Response) -> None:
    """Synology Chat answers 200 with ``{"success": false, "error": {...}}`` for a bad token or payload."""
    try:
        answer = response.json()
    except ValueError:
        return
    if isinstance(answer, dict) and answer.get("success") is False:
        error = answer.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        raise _DeliveryFailed(f"Synology Chat refused it (error code {code})")


def _describe(exc: Exception) -> str:
    """The class only for transport errors: requests puts the URL, token included, in their messages."""
    if isinstance(exc, _DeliveryFailed):
        return str(exc)
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return type(exc).__name__
