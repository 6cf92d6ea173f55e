"""Logins that need the user (CONTRACT section 9 "Login"): the account's retained ``login`` topic, and
one-time codes sent over MQTT.

When a vendor wants something only the owner can give (a code it sent by e-mail or SMS, terms to
accept in its app), the account stops until then. The bridge says so where users look: retained on
``<base>/bridge/accounts/<name>/login`` (Home Assistant shows it), once as an event and an alert; and it
takes the code on ``<base>/bridge/accounts/<name>/otp/set`` (a Home Assistant text entity writes there),
completes the login off the MQTT thread, and lets the account go on. A code is never logged or published.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from mqttbridge.errors import ActionRequiredError, BackendError, UnsupportedError
from mqttbridge.mqtt import Incoming
from mqttbridge.normalize import iso
from mqttbridge.publish import Publisher, encode

log = logging.getLogger(__name__)

#: what a one-time code may look like: a short word without spaces (vendors send 6 to 8 digits)
CODE = re.compile(r"[0-9A-Za-z-]{1,32}")


class Account(Protocol):
    """What the desk needs of an account's runtime."""

    @property
    def name(self) -> str: ...

    def submit_code(self, kind: str, code: str) -> None: ...

    def takes_codes(self) -> bool: ...

    def resume(self) -> None: ...


def login_topic(base: str, account: str) -> str:
    return f"{base}/bridge/accounts/{account}/login"


def otp_topic(base: str, account: str) -> str:
    return f"{base}/bridge/accounts/{account}/otp/set"


class LoginDesk:
    """The login topics of all accounts, and the one-time codes sent to them."""

    def __init__(self, base: str, publisher: Publisher, event: Callable[..., None]):
        self.base = base
        self.publisher = publisher
        self.event = event
        self._accounts: dict[str, Account] = {}
        #: account name -> the kind of action it waits for ("otp", "consent", ...), absent when logged in
        self._waiting: dict[str, str] = {}
        #: account name -> the details last shown with it (a device code's user code and link)
        self._details: dict[str, dict[str, object]] = {}
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def add(self, account: Account) -> None:
        self._accounts[account.name] = account

    def subscriptions(self) -> list[str]:
        return [otp_topic(self.base, "+")]

    def is_code(self, topic: str) -> bool:
        prefix, suffix = f"{self.base}/bridge/accounts/", "/otp/set"
        return topic.startswith(prefix) and topic.endswith(suffix) and "/" not in topic[len(prefix) : -len(suffix)]

    # --- the state of each account's login ----------------------------------------------------------

    def ok(self, account: str) -> None:
        """The account's calls work: its login topic says so (published only when it changes)."""
        with self._lock:
            was = self._waiting.pop(account, None)
            self._details.pop(account, None)
        self.publisher.retained(login_topic(self.base, account), encode({"state": "ok"}))
        if was is not None:
            log.info("account %s is logged in again", account)
            self.event("login_completed", account=account)

    def required(self, account: str, exc: ActionRequiredError) -> None:
        """The vendor wants the user: retained on the login topic, and said once as an event (and alert)."""
        takes = self._takes_codes(account)
        payload: dict[str, Any] = {"state": "action_required", "kind": exc.kind, "message": str(exc), **exc.details}
        if exc.kind == "otp":
            payload["accepts_code"] = takes
            if takes:
                payload["code_topic"] = otp_topic(self.base, account)
        with self._lock:
            # a new kind, or new details of the same (a device code that expired and was replaced)
            new = self._waiting.get(account) != exc.kind or self._details.get(account) != exc.details
            self._waiting[account] = exc.kind
            self._details[account] = dict(exc.details)
        if new:
            payload["since"] = iso(datetime.now(UTC))
            self.publisher.retained(login_topic(self.base, account), encode(payload))
            log.error("account %s: %s", account, exc)
            self.event(
                "action_required",
                account=account,
                kind=exc.kind,
                error=str(exc),
                **{k: v for k, v in exc.details.items() if k not in ("account", "kind", "error")},
            )

    def waiting(self, account: str) -> str | None:
        with self._lock:
            return self._waiting.get(account)

    def _takes_codes(self, account: str) -> bool:
        found = self._accounts.get(account)
        return found is not None and found.takes_codes()

    # --- codes ----------------------------------------------------------------------------------------

    def code(self, msg: Incoming) -> None:
        """A message on ``…/accounts/<name>/otp/set`` (the dispatcher thread: the vendor is asked elsewhere)."""
        name = msg.topic[len(f"{self.base}/bridge/accounts/") : -len("/otp/set")]
        if msg.retain:
            if msg.payload:  # a code lies on the broker for anyone to read, and would be replayed: delete it
                self.publisher.clear(msg.topic)
                log.warning("ignored a retained one-time code on %s", msg.topic)
                self.event("retained_command_ignored", topic=msg.topic, account=name)
            return
        account = self._accounts.get(name)
        text = msg.payload.decode("utf-8", "replace").strip()
        problem = None
        if account is None:
            problem = f"no account {name!r}; accounts: {', '.join(sorted(self._accounts)) or 'none'}"
        elif not account.takes_codes():
            problem = f"account {name} takes no one-time code"
        elif not CODE.fullmatch(text):
            problem = "that is not a one-time code (1 to 32 letters or digits)"
        if problem is None:
            with self._lock:
                if name in self._busy:
                    problem = "a code for this account is being checked already"
                else:
                    self._busy.add(name)
        if problem is not None:
            log.warning("one-time code for %s refused: %s", name, problem)
            self.event("login_failed", account=name, error=problem)
            return
        assert account is not None
        kind = self.waiting(name) or "otp"
        threading.Thread(target=self._submit, args=(account, kind, text), name=f"login-{name}", daemon=True).start()

    def _submit(self, account: Account, kind: str, code: str) -> None:
        try:
            account.submit_code(kind, code)
        except UnsupportedError as exc:
            self._failed(account.name, str(exc))
        except BackendError as exc:  # a wrong or expired code: the login topic still says what is wanted
            self._failed(account.name, str(exc))
        except Exception as exc:  # a thread of our own: nobody else would hear of it
            log.exception("completing the login of %s failed unexpectedly", account.name)
            self._failed(account.name, f"internal error: {type(exc).__name__}")
        else:
            log.info("account %s: the one-time code was accepted", account.name)
            self.ok(account.name)
            account.resume()
        finally:
            with self._lock:
                self._busy.discard(account.name)

    def _failed(self, account: str, error: str) -> None:
        log.warning("account %s: the one-time code was not accepted: %s", account, error)
        self.event("login_failed", account=account, error=error)
