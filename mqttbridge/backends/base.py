"""The interface every vendor backend implements: the bridge speaks only this."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from mqttbridge.errors import ActionRequiredError, UnsupportedError
from mqttbridge.model import CommandRequest, ExecutionUpdate, VehicleInfo, VehicleStatus
from mqttbridge.statestore import StateStore


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one vendor call tries. The defaults follow bimmer_connected's 5 tries on 500s;
    interactive commands (``mqttbridge status``) pass fewer so a dead server is reported quickly."""

    attempts: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    #: a 429 asking to wait longer than this is raised at once, for the scheduler to back off
    max_retry_after: float = 60.0


class StatusSink(Protocol):
    """Where a pushing backend hands its statuses: the bridge publishes them like a read (only what changed)
    and charges no budget."""

    def push(self, vin: str, status: VehicleStatus) -> None: ...

    def event(self, kind: str, /, **data: Any) -> None:
        """Something users should hear of (on ``<base>/bridge/event``, with the account's name added)."""

    def relay(self, topic: str, payload: bytes) -> None:
        """Publish a vendor's raw message unchanged, not retained, on the bridge's broker (sharing a stream)."""

    def account_state(self, name: str, data: dict[str, Any]) -> None:
        """Retained on ``<base>/bridge/accounts/<account>/<name>``: a state users look at (a stream's connection)."""


class LoginListener(Protocol):
    """Told by a backend whose login completes or changes on its own (a device-code flow polled in the
    background): the bridge shows a new code at once, and reads the account as soon as the user approved."""

    def login_required(self, exc: ActionRequiredError) -> None: ...

    def login_completed(self) -> None: ...


class Backend(ABC):
    """One account at one vendor. Methods block (HTTP); callers run them off the MQTT thread.

    Errors are raised as ``mqttbridge.errors.BackendError`` subclasses, never as a library's own
    exceptions, so the bridge decides by class what to retry, report or give up on.
    """

    provider: ClassVar[str]

    def __init__(
        self,
        account: Any,
        store: StateStore,
        *,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.time,
        policy: RetryPolicy | None = None,
    ):
        self.account = account
        self.store = store
        #: set by close(): retries stop, and a back-off between them ends at once (a stopping daemon does not
        #: wait out a failing vendor's retries)
        self.closing = threading.Event()
        self.sleep: Callable[[float], None] = sleep if sleep is not None else self._wait_closing
        self.clock = clock
        self.policy = policy or RetryPolicy(attempts=getattr(account, "retries", RetryPolicy.attempts))
        #: set by whoever runs the backend (the bridge, ``mqttbridge login``) to hear of logins that change alone
        self.login_listener: LoginListener | None = None

    def _wait_closing(self, seconds: float) -> None:
        """The default ``sleep``: waits ``seconds``, less when ``close()`` is called meanwhile."""
        self.closing.wait(seconds)

    @abstractmethod
    def list_vehicles(self) -> list[VehicleInfo]:
        """The account's cars with what each supports."""

    @abstractmethod
    def read_status(self, vehicle: VehicleInfo, *, force: bool = False) -> VehicleStatus:
        """One status read, normalised to the contract's field names. ``force`` wakes the car for a
        fresh reading (costly: the 12 V battery); a backend without such a read raises ``UnsupportedError``."""

    def refresh_status(self, vehicle: VehicleInfo) -> VehicleStatus:
        """A read a user asked for (``refresh``): the same as ``read_status`` unless the backend may answer a
        scheduled read from data it was pushed (a stream), when this one must still ask the vendor."""
        return self.read_status(vehicle)

    @abstractmethod
    def read_dataset(self, vehicle: VehicleInfo, name: str) -> Any:
        """One of ``model.DATASETS`` the vehicle supports; ``UnsupportedError`` otherwise."""

    @abstractmethod
    def execute(self, vehicle: VehicleInfo, request: CommandRequest) -> ExecutionUpdate:
        """Send a command once. Raises ``CommandOutcomeUnknown`` when it may have arrived unanswered."""

    @abstractmethod
    def execution_status(self, vehicle: VehicleInfo, started: ExecutionUpdate) -> ExecutionUpdate:
        """Where the execution ``started`` (as ``execute`` returned it) stands now."""

    def start(self, sink: StatusSink) -> None:  # noqa: B027 - optional: polled backends push nothing
        """Called once the account's vehicles are listed: a backend that receives data (a stream) starts
        handing statuses to ``sink`` here, from a thread of its own. It must not block."""

    def stop(self) -> None:  # noqa: B027 - optional
        """The bridge stops: end what ``start`` began (``close`` follows)."""

    def login(self) -> None:
        """Log in now, for ``mqttbridge login`` and after a code was given. ``ActionRequiredError`` (with its
        ``kind``) says what the user must do first; the default lists the vehicles, which logs in."""
        self.list_vehicles()

    def submit_code(self, kind: str, code: str) -> None:
        """Complete a login that raised ``ActionRequiredError(kind=kind)`` with the user's ``code`` and keep
        the tokens in ``state_dir``. ``AuthError`` for a wrong or expired code (a new one may then be
        needed: the error says so), ``UnsupportedError`` where the provider cannot take codes."""
        raise UnsupportedError(f"{self.provider} takes no one-time code")

    def take_vendor_calls(self) -> int | None:
        """How many requests the vendor saw for this thread's calls since the last take, where one call of
        ours may cost several (the Hyundai/Kia library's token checks and extra reads); None: one each."""
        return None

    def takes_codes(self) -> bool:
        """Whether ``submit_code`` can complete a login (the bridge then offers a code entity)."""
        return type(self).submit_code is not Backend.submit_code

    def close(self) -> None:
        """Release connections; subclasses call this too."""
        self.closing.set()
