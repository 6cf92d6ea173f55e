"""The command gateway: every message on a ``<root>/<command>/set`` topic ends here.

It refuses what must not reach the vendor (retained commands, junk, unsupported commands, unlocks
that are not allowed or locked out, response topics on our own topics) with an answer on
``bridge/event`` and the response topic, hands the rest to the vehicle's command runner, and publishes
every execution record. The rule for retained records: a refusal never replaces the record of an
execution of the same command that is queued or running.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mqttbridge import providers
from mqttbridge.commands import COMMANDS as _KNOWN_COMMANDS
from mqttbridge.commands import ParsedCommand, Rejected, WrongCode, check_unlock, is_unlock
from mqttbridge.commands import parse_command as parse_command_payload
from mqttbridge.config import valid_topic
from mqttbridge.execution import Execution
from mqttbridge.model import ExecutionStatus
from mqttbridge.mqtt import Incoming
from mqttbridge.normalize import iso
from mqttbridge.publish import encode

if TYPE_CHECKING:
    from mqttbridge.bridge import Bridge
    from mqttbridge.vehicle import VehicleContext

log = logging.getLogger(__name__)

#: retained commands kept until their vehicle is bridged (more are junk: left alone)
MAX_EARLY_RETAINED = 100


class CommandGateway:
    def __init__(self, bridge: Bridge):
        self.bridge = bridge
        self.base = bridge.base
        self.config = bridge.config
        self.stopping = bridge.stopping
        self.publisher = bridge.publisher
        self.lockout = bridge.lockout
        self.metrics = bridge.metrics
        self.event = bridge.event
        self._lock = threading.Lock()
        #: retained commands that arrived before their vehicle was bridged
        self._early_retained: list[Incoming] = []

    @property
    def by_root(self) -> dict[str, VehicleContext]:
        return self.bridge.by_root

    def vehicle_added(self, ctx: VehicleContext) -> None:
        """Retained commands that arrived before ``ctx`` was bridged: reported and deleted, never acted on."""
        with self._lock:
            early = [m for m in self._early_retained if m.topic.startswith(f"{ctx.root}/")]
            self._early_retained = [m for m in self._early_retained if m not in early]
        for msg in early:
            self.handle(msg)

    def handle(self, msg: Incoming) -> None:
        """A message on a ``/set`` topic (the dispatcher thread)."""
        parts = msg.topic.rsplit("/", 2)
        if len(parts) != 3:
            return
        root, command, _ = parts
        ctx = self.by_root.get(root)
        log.debug("command on %s (%d bytes, retain %s)", msg.topic, len(msg.payload), msg.retain)
        if ctx is None:
            self._unknown_vehicle(msg, root, command)
            return
        cluster = self.bridge.cluster
        if cluster is not None and not cluster.acts_on(ctx.vin):  # CONTRACT section 10
            live = not msg.retain and bool(msg.payload) and not self.stopping.is_set()
            if live and cluster.park(ctx, msg, command):
                return  # in the gap of a take-over: answered when this instance takes the vehicle
            refusal = cluster.refusal(ctx.vin)  # None: another instance serves it and answers
            if refusal is not None and live:
                self.not_served(ctx, msg, command, refusal)
            return
        if msg.retain:
            if not msg.payload:
                return  # the deletion of a retained command (ours, below) is no command
            # never act on a retained command; delete it so it is not delivered again at every reconnect
            self.publisher.clear(msg.topic)
            log.warning("ignored a retained command on %s", msg.topic)
            self.event("retained_command_ignored", topic=msg.topic, vin=ctx.vin)
            return
        if self.stopping.is_set():
            return
        execution = Execution(request_id="", command=command, action="")
        fence = self._response_topic_problem(msg.response_topic)
        if fence is None:
            execution.response_topic, execution.correlation_data = msg.response_topic, msg.correlation_data
        try:
            parsed = parse_command_payload(command, msg.payload)
            execution.request_id, execution.action = parsed.request_id, parsed.request.action
            if fence is not None:
                raise Rejected(fence)
            self._check(ctx, parsed, msg.topic)
            ctx.runner.submit(parsed, execution)
        except Rejected as exc:
            execution.request_id = execution.request_id or _request_id_of(msg.payload)
            execution.status, execution.error = ExecutionStatus.REJECTED, str(exc)
            # the audit trail: who asked what of which car, and why it was refused (never the code)
            log.warning(
                "rejected %s %s for %s (request %s, topic %s): %s",
                command,
                execution.action or "-",
                ctx.vin,
                execution.request_id,
                msg.topic,
                exc,
            )
            # A refusal never reached the vendor: while an execution of this command is queued or running,
            # <cmd>/execution and /status stay that execution's (the refusal goes to the event and the
            # response topic only), so a double tap never shows REJECTED while the car is locking.
            running = ctx.runner.busy(command)
            self.publish_execution(ctx, execution, retained=not running)
            self.event(
                "command_rejected",
                vin=ctx.vin,
                topic=msg.topic,
                command=command,
                action=execution.action or None,
                request_id=execution.request_id,
                error=str(exc),
                retained=not running,
            )
            return
        if command == "lock":
            log.info(
                "accepted %s %s for %s (request %s, topic %s)",
                command,
                parsed.request.action,
                ctx.vin,
                parsed.request_id,
                msg.topic,
            )
            self.event(
                "command_accepted",
                vin=ctx.vin,
                topic=msg.topic,
                command=command,
                action=parsed.request.action,
                request_id=parsed.request_id,
            )

    def not_served(self, ctx: VehicleContext, msg: Incoming, command: str, error: str) -> None:
        """A command nobody would act on (its vehicle is moving between instances): said, never sent. Not retained:
        the vehicle's records belong to whoever serves it."""
        request_id = _request_id_of(msg.payload)
        log.warning("command on %s (request %s): %s", msg.topic, request_id, error)
        execution = Execution(request_id=request_id, command=command, action="", status=ExecutionStatus.REJECTED)
        execution.error = error
        execution.response_topic, execution.correlation_data = msg.response_topic, msg.correlation_data
        self.publish_execution(ctx, execution, retained=False)
        self.event(
            "command_rejected", vin=ctx.vin, topic=msg.topic, command=command, request_id=request_id, error=error
        )

    def _unknown_vehicle(self, msg: Incoming, root: str, command: str) -> None:
        """A command under the base topic for a vehicle nobody bridges: said on bridge/event, not dropped."""
        if msg.retain and msg.payload:
            # the broker hands retained commands over at connect, before the accounts listed their vehicles:
            # kept so that the vehicle, once bridged, reports and deletes them (never acts on them)
            with self._lock:
                if root not in self.by_root and len(self._early_retained) < MAX_EARLY_RETAINED:
                    self._early_retained.append(msg)
                    return
        if msg.retain or not msg.payload or self.stopping.is_set() or root == f"{self.base}/bridge":
            return
        if self.bridge.cluster is not None and not self.bridge.cluster.answers(root):
            return  # one instance answers, not each of them
        roots = sorted(self.by_root)
        error = f"no vehicle is bridged at {root}; bridged: {', '.join(roots) or 'none yet'}"
        request_id = _request_id_of(msg.payload)
        log.warning("command on %s (request %s): %s", msg.topic, request_id, error)
        self.event("command_rejected", topic=msg.topic, command=command, request_id=request_id, error=error)
        if msg.response_topic and self._response_topic_problem(msg.response_topic) is None:
            record = Execution(
                request_id=request_id, command=command, action="", status=ExecutionStatus.REJECTED, error=error
            )
            self.publisher.transient(msg.response_topic, encode(record.record()), correlation_data=msg.correlation_data)

    def _response_topic_problem(self, topic: str | None) -> str | None:
        """Why an MQTT 5 response topic is refused: the bridge never publishes its records onto its own topics
        (a response topic of ``<root>/charging_profile/set`` would make the record a command)."""
        if topic is None:
            return None
        problem = valid_topic(topic)
        if problem is not None:
            return f"the response topic {topic[:80]!r} {problem}"
        owned = {self.base, self.config.homeassistant.prefix, *self.by_root}
        for prefix in sorted(owned):
            if topic == prefix or topic.startswith(f"{prefix}/"):
                return (
                    f"the response topic {topic[:80]!r} is under {prefix}/, which the bridge publishes to; "
                    "use a topic of your own"
                )
        return None

    def _check(self, ctx: VehicleContext, parsed: ParsedCommand, topic: str) -> None:
        request = parsed.request
        if not ctx.info.supports(request.command, request.action):
            spec = providers.available().get(ctx.runtime.account.provider)
            if spec is not None and spec.read_only and not ctx.info.supports(request.command):
                raise Rejected(f"read-only provider: {spec.name} cannot {request.command} (only refresh reads the car)")
            raise Rejected(f"this vehicle does not support {request.command} {request.action}")
        if is_unlock(request) and ctx.config.allow_unlock:
            refusal = self.lockout.refusal(ctx.vin)
            if refusal is not None:  # even with the right code: no way to keep guessing
                raise Rejected(refusal)
        try:
            check_unlock(parsed, ctx.config.allow_unlock, ctx.config.unlock_code)
        except WrongCode as exc:
            until = self.lockout.wrong_code(ctx.vin)
            if until is None:
                raise
            refusal = self.lockout.refusal(ctx.vin) or "locked out"
            log.warning("unlocking %s is %s (request %s, topic %s)", ctx.vin, refusal, parsed.request_id, topic)
            self.event(
                "unlock_locked_out",
                vin=ctx.vin,
                root=ctx.root,
                topic=topic,
                request_id=parsed.request_id,
                attempts=self.lockout.attempts,
                until=iso(datetime.fromtimestamp(until, UTC)),
                minutes=self.config.unlock_lockout.minutes,
            )
            raise Rejected(f"{exc}; {refusal}") from None
        if is_unlock(request) and ctx.config.unlock_code is not None:
            self.lockout.right_code(ctx.vin)
        if request.command == "force_refresh":
            reason = self.forced_read_refusal(ctx)
            if reason is not None:
                self.event("forced_read_skipped", account=ctx.runtime.account.name, vin=ctx.vin, reason=reason)
                raise Rejected(f"forced read skipped: {reason}")

    def forced_read_refusal(self, ctx: VehicleContext) -> str | None:
        """Why a forced (waking) read must not happen now (battery protection, budget), or None."""
        battery = ctx.status.fields.get("battery_12v") if ctx.status else None
        spec = ctx.offers.field("battery_12v")
        reason = ctx.runtime.policy.refusal(datetime.now().astimezone(), battery, spec.unit if spec else "%")
        if reason is None and not ctx.runtime.ledger.allows("forced_read"):
            reason = "the daily call budget has no room for a forced read"
        return reason

    def publish_execution(self, ctx: VehicleContext, execution: Execution, *, retained: bool = True) -> None:
        """The record on ``<cmd>/execution`` and ``/status`` (unless ``retained`` is False: a refusal while
        another execution of the command runs) and on the request's response topic."""
        record = encode(execution.record())
        known = execution.command in _KNOWN_COMMANDS
        base = f"{ctx.root}/{execution.command}"
        if execution.status.final and execution.status is not ExecutionStatus.REJECTED:
            _log_outcome(ctx, execution)  # first: whoever sees the end published finds it in the log
        if known and retained:
            self.publisher.retained(f"{base}/execution", record)
            self.publisher.retained(f"{base}/status", execution.status.value)
        elif not known:  # a made-up command name gets an answer but leaves no retained topic behind
            self.publisher.transient(f"{base}/execution", record)
        if execution.response_topic and self._response_topic_problem(execution.response_topic) is None:
            self.publisher.transient(execution.response_topic, record, correlation_data=execution.correlation_data)
        if execution.status.final:  # refusals are logged by _command and the runner
            self.metrics.command_finished(
                execution.command if known else "unknown", execution.status.value, time.time() - execution.arrived
            )
        if execution.status in (ExecutionStatus.NOT_EXECUTED, ExecutionStatus.TIMED_OUT, ExecutionStatus.FAILED):
            self.event(
                "command_failed",
                account=ctx.runtime.account.name,
                vin=ctx.vin,
                command=execution.command,
                status=execution.status.value,
                request_id=execution.request_id,
                error=execution.error,
            )

    # --- events ------------------------------------------------------------------------------------


def _request_id_of(payload: bytes) -> str:
    """Echo a request_id even when the rest of the payload was refused."""
    try:
        value = json.loads(payload).get("request_id")
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):  # junk: a request id of our own
        value = None
    if isinstance(value, str | int) and not isinstance(value, bool) and 0 < len(str(value)) <= 64:
        return str(value)
    return uuid.uuid4().hex[:12]


def _log_outcome(ctx: VehicleContext, execution: Execution) -> None:
    """Each command's end in the daemon log too (the audit trail; never the unlock code)."""
    level = logging.INFO if execution.status is ExecutionStatus.EXECUTED else logging.WARNING
    error = f": {execution.error}" if execution.error else ""
    log.log(
        level,
        "%s %s %s for %s at %s (request %s, event %s)%s",
        execution.command,
        execution.action or "-",
        execution.status.value,
        ctx.vin,
        ctx.root,
        execution.request_id,
        execution.event_id or "-",
        error,
    )
