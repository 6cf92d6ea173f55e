"""Several daemons on one base topic (CONTRACT section 10), for any broker: a private Mosquitto here, a NATS
cluster's MQTT listener elsewhere (``broker`` is only a host, a port and a protocol)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mqttbridge.cluster import owner

from .mqtt_helpers import Daemon, Observer
from .restart_helpers import BASE, NAMES, config_for, is_record, record


@dataclass(frozen=True)
class BrokerAddress:
    """Where the daemons connect: ``protocol`` is ``"5"`` or ``"3.1.1"`` (NATS's MQTT listener speaks only 3.1.1)."""

    host: str
    port: int
    protocol: str = "5"


def instance_config(
    broker: BrokerAddress, vendor: Any, state_dir: Path, instance: str, *, takeover_s: int = 5, **top: Any
) -> dict:
    """One instance: its own cluster id, client id and state_dir; the same base topic and account as the others."""
    config = config_for(SimpleNamespace(port=broker.port), vendor, state_dir, names=NAMES, **top)
    config["mqtt"].update(host=broker.host, protocol=broker.protocol, client_id=f"bridge-{instance}")
    config["cluster"] = {"id": instance, "takeover_s": takeover_s}
    return config


class Instances:
    """The daemons of one cluster, each in a folder of its own (its config, log and state_dir), all on ``broker`` or
    each on its own (``{instance: broker}``: one per node of a clustered broker)."""

    def __init__(
        self,
        tmp_path: Path,
        broker: BrokerAddress | Mapping[str, BrokerAddress],
        vendor: Any,
        ids: tuple[str, ...],
        takeover_s: int = 5,
    ):
        self.ids = ids
        self.daemons: dict[str, Daemon] = {}
        for instance in ids:
            folder = tmp_path / instance
            folder.mkdir()
            address = broker[instance] if isinstance(broker, Mapping) else broker
            config = instance_config(address, vendor, folder / "state", instance, takeover_s=takeover_s)
            self.daemons[instance] = Daemon(folder, config)

    def start(self, *only: str) -> None:
        for instance, daemon in self.daemons.items():
            if not only or instance in only:
                daemon.start()

    def kill(self, instance: str) -> None:
        self.daemons[instance].stop(signal.SIGKILL)

    def send(self, instance: str, sig: int) -> None:
        """E.g. SIGSTOP: the process stays connected but says nothing (as if its broker node died without a will)."""
        proc = self.daemons[instance].proc
        assert proc is not None
        proc.send_signal(sig)

    def alive(self) -> tuple[str, ...]:
        return tuple(i for i, d in self.daemons.items() if d.alive())

    def logs(self) -> str:
        return "\n".join(f"--- {i} ---\n{d.tail(6000)}" for i, d in self.daemons.items())

    def close(self) -> None:
        for daemon in self.daemons.values():
            if daemon.alive():
                daemon.stop(signal.SIGKILL)


def served(obs: Observer, ids: tuple[str, ...]) -> dict[str, set[str]]:
    """What each instance says it serves now (its latest info seen by ``obs``)."""
    out: dict[str, set[str]] = {}
    for instance in ids:
        last = obs.last(f"{BASE}/bridge/instances/{instance}/info")
        out[instance] = set(json.loads(last.payload)["vins"]) if last is not None and last.payload else set()
    return out


def settled(obs: Observer, live: tuple[str, ...], vins: list[str]) -> bool:
    """Every vehicle served by exactly one live instance: the one the rendezvous rule names."""
    now = served(obs, live)
    return all(now[i] == {v for v in vins if owner(v, live) == i} for i in live)


def follow(obs: Observer, vendor: Any, request_id: str, root: str, start: int, *, timeout: float) -> str:
    """Move the vendor's clock one execution step at a time until the command's record says it ended."""
    mine = is_record(request_id, root=root)
    for _ in range(8):
        mark = obs.mark()  # before the last record is read: one landing in between then ends the wait below
        last = record([m for m in obs.since(start) if mine(m)][-1])["status"]
        if last in ("EXECUTED", "NOT_EXECUTED", "TIMED_OUT", "FAILED"):
            return str(last)
        vendor.clock.advance(1.0)
        obs.wait_for(mine, start=mark, timeout=timeout, what=f"the record after {last}")
    raise AssertionError(f"{request_id} did not end")


def check_retained_after_takeover(
    retained: Mapping[str, bytes], victim: str, survivors: Iterable[str], roots: Iterable[str], locked: Iterable[str]
) -> None:
    """What a new subscriber gets after ``victim`` died and the survivors took its cars: the bridge and the
    survivors online, the victim offline, every car (``roots``) online with its state, and each LOCK that was
    followed across the take-over (``locked``) ended EXECUTED with the car LOCKED."""
    assert retained[f"{BASE}/bridge/state"] == b"online"
    assert retained[f"{BASE}/bridge/instances/{victim}"] == b"offline"
    assert all(retained[f"{BASE}/bridge/instances/{i}"] == b"online" for i in survivors)
    for car_root in roots:
        assert retained[f"{car_root}/availability"] == b"online", car_root
        assert json.loads(retained[f"{car_root}/state"])["odometer"], car_root
    for car_root in locked:
        assert retained[f"{car_root}/lock/status"] == b"EXECUTED", car_root
        assert retained[f"{car_root}/lock"] == b"LOCKED", car_root
