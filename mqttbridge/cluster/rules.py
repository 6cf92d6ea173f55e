"""The rules every instance computes alike (see the package's docstring): owners, life and death, and what a new
owner does with the commands of a dead one. Pure: times are passed in."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mqttbridge.execution import Execution
from mqttbridge.model import ExecutionStatus

#: the error of a command a dead instance had received without the vendor's confirmation (never resent)
NOT_SENT = "the instance{instance} that received this command stopped before the vendor confirmed it; not sent again"


def rank(instance: str, vin: str) -> bytes:
    """The rendezvous weight of ``instance`` for ``vin``: the highest serves it."""
    return hashlib.sha256(f"{instance}/{vin}".encode()).digest()


def owner(vin: str, instances: Iterable[str]) -> str | None:
    """The instance that serves ``vin`` among ``instances`` (None when there is none)."""
    return max(instances, key=lambda instance: rank(instance, vin), default=None)


@dataclass
class Peer:
    """What this instance knows of another: its last state word and info, and when they arrived (monotonic)."""

    state: str | None = None
    state_at: float = 0.0
    info_at: float | None = None
    vins: frozenset[str] = frozenset()
    #: its run (a restart makes a new one), and since when it has been alive without a break
    run: str | None = None
    since: float | None = None


class LiveSet:
    """The other instances as this one sees them, and the contract's rules of life and death."""

    def __init__(self, me: str, takeover_s: float):
        self.me = me
        self.takeover_s = takeover_s
        self.peers: dict[str, Peer] = {}

    def state(self, instance: str, word: str, now: float) -> None:
        peer = self.peers.setdefault(instance, Peer())
        if word != peer.state:
            peer.state, peer.state_at = word, now

    def info(self, instance: str, vins: Iterable[str], now: float, run: str | None = None) -> None:
        peer = self.peers.setdefault(instance, Peer())
        if peer.since is None or run != peer.run or not self.alive(instance, now):
            peer.since = now  # new, restarted, or back after it was counted dead
        peer.info_at, peer.vins, peer.run = now, frozenset(vins), run

    def alive_for(self, instance: str, now: float) -> float:
        """How long ``instance`` has been alive without a break, as seen here (0 when it is not alive)."""
        peer = self.peers.get(instance)
        if peer is None or peer.since is None or not self.alive(instance, now):
            return 0.0
        return now - peer.since

    def forget(self, instance: str) -> None:
        """Its retained topics were deleted (``purge``): nothing is known of it any more."""
        self.peers.pop(instance, None)

    def alive(self, instance: str, now: float) -> bool:
        peer = self.peers.get(instance)
        if peer is None or peer.info_at is None or peer.state == "offline":
            return False
        return now - peer.info_at < self.takeover_s

    def certainly_dead(self, instance: str, now: float) -> bool:
        """Dead, and surely no longer acting: silent for ``takeover_s``, or ``offline`` for ``takeover_s / 2``."""
        peer = self.peers.get(instance)
        if peer is None or peer.info_at is None or now - peer.info_at >= self.takeover_s:
            return True
        return peer.state == "offline" and now - peer.state_at >= self.takeover_s / 2

    def live(self, now: float) -> frozenset[str]:
        """The live instances, this one included."""
        return frozenset([self.me, *(i for i in self.peers if i != self.me and self.alive(i, now))])

    def blockers(self, vin: str, now: float) -> list[str]:
        """Other instances that list ``vin`` and may still act on it: this one must not take it yet."""
        return sorted(
            i for i, p in self.peers.items() if i != self.me and vin in p.vins and not self.certainly_dead(i, now)
        )


def inherited(record: Mapping[str, Any], instance: str) -> Execution | None:
    """What a new owner does with a retained execution record: None (it ended), a running one to follow (it has the
    vendor's ``event_id``), or one ended ``FAILED`` (the vendor never confirmed it: it is not sent again)."""
    try:
        status = ExecutionStatus(str(record["status"]))
        execution = Execution(
            request_id=str(record["request_id"]),
            command=str(record["command"]),
            action=str(record["action"]),
            service=record.get("service") if isinstance(record.get("service"), str) else None,
            status=status,
            event_id=record.get("event_id") if isinstance(record.get("event_id"), str) else None,
            received_at=str(record["received_at"]),
            updated_at=str(record.get("updated_at") or record["received_at"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    if status.final or status is ExecutionStatus.UNKNOWN:
        return None
    if not execution.event_id:
        execution.status = ExecutionStatus.FAILED
        execution.error = NOT_SENT.format(instance=f" {instance}" if instance else "")
    return execution
