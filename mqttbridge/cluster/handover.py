"""What crosses a change of a vehicle's owner: the previous owner's commands, followed from their retained records
(never sent again), and the commands that arrived in the gap of the take-over (``parked.py``), answered once the
vehicle is taken."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from mqttbridge.cluster.parked import ParkedCommands
from mqttbridge.cluster.rules import LiveSet, inherited
from mqttbridge.commands import Rejected
from mqttbridge.model import ExecutionStatus
from mqttbridge.mqtt import Incoming

if TYPE_CHECKING:
    from mqttbridge.bridge import Bridge
    from mqttbridge.vehicle import VehicleContext

log = logging.getLogger(__name__)


class Handover:
    """The retained execution records of every vehicle and the commands kept in a take-over's gap."""

    def __init__(self, bridge: Bridge, view: LiveSet, clock: Callable[[], float], keep_s: float):
        self.bridge = bridge
        self.view = view
        self.clock = clock
        #: the latest retained execution record of every vehicle, as published (by any instance)
        self.records: dict[str, bytes] = {}
        #: commands that came in the gap of a take-over of a vehicle that is to be ours (``park``)
        self.parked = ParkedCommands(keep_s=keep_s)

    def record(self, topic: str, payload: bytes) -> None:
        if payload:
            self.records[topic] = payload
        else:
            self.records.pop(topic, None)

    def park(self, ctx: VehicleContext, msg: Incoming, command: str, now: float) -> None:
        """Keep a command that nobody may act on now; it is answered at the take-over (``taken``)."""
        self.parked.park(ctx.vin, msg, command, now, self.records.get(f"{ctx.root}/{command}/execution"))

    def prune(self, now: float) -> None:
        self.parked.prune(now)

    def taken(self, ctx: VehicleContext) -> None:
        """This instance took hold of ``ctx``: the previous owner's commands, then what came in the gap."""
        self._inherit(ctx)
        self._answer_parked(ctx)

    def _answer_parked(self, ctx: VehicleContext) -> None:
        """Taken over: what came in the gap is refused, unless the previous owner's record shows it acted."""
        for kept in self.parked.take(ctx.vin, self.clock()):
            if self.records.get(f"{ctx.root}/{kept.command}/execution") != kept.record_then:
                continue  # a record of that command was published since: the previous owner answered it
            self.bridge.gateway.not_served(
                ctx,
                kept.msg,
                kept.command,
                "not executed: the instance serving this vehicle stopped as the command arrived; send it again",
            )

    def _inherit(self, ctx: VehicleContext) -> None:
        """The previous owner's commands of this vehicle, from their retained records: followed, or ended FAILED.
        Our own, still running (taken again after a gap), are shown again: their records of the gap were dropped."""
        ctx.runner.show_again()
        prefix = f"{ctx.root}/"
        for topic, payload in sorted(self.records.items()):
            if not topic.startswith(prefix) or topic.count("/") != ctx.root.count("/") + 2:
                continue
            if ctx.runner.busy(topic[len(prefix) :].partition("/")[0]):
                continue  # ours, running here: its record is the worker's to publish
            try:
                record = json.loads(payload)
            except ValueError:
                continue
            execution = inherited(record, self._sender(ctx.vin)) if isinstance(record, dict) else None
            if execution is None:
                continue
            what = f"{execution.command} {execution.action} of {ctx.vin} (request {execution.request_id})"
            if execution.status is ExecutionStatus.FAILED:
                log.warning("cluster: %s: %s", what, execution.error)
                ctx.publish(execution)
                continue
            log.info("cluster: following %s at %s", what, execution.status.value)
            try:
                ctx.runner.resume(execution)
            except Rejected as exc:
                log.warning("cluster: not following %s of %s: %s", execution.request_id, ctx.vin, exc)

    def _sender(self, vin: str) -> str:
        """The instance that last listed ``vin`` (the one that received its commands), for the error text."""
        listed = [i for i, p in self.view.peers.items() if vin in p.vins]
        return listed[0] if listed else ""
