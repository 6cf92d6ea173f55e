"""One instance at scale: the daemon's first round at 1,000 (and 10,000) vehicles against a bare paho client.

For each fleet size N, in one run: a private mosquitto, ``mqttbridge simulate --vehicles N`` as a process, and
the daemon as a process (``python -m mqttbridge run``, one account, Home Assistant discovery on, device mode).
Printed:

- the first round: seconds from the daemon's start until every vehicle's ``state`` reached a subscriber, the
  messages the daemon had published by then, its CPU seconds, its resident memory (and peak);
- bare paho: the daemon is stopped, then a bare paho client publishes the same number of messages with the same
  topics (under ``bare/``), payload sizes, retain flags and QoS 1 to the same broker, at most 1,000 unacknowledged
  (as the daemon; paho refuses a message beyond 65,535); the seconds from its connect until the same subscriber
  received the last of them; and the ratio of the two times;
- the steady poll cycle: the daemon's CPU over each of ``--rounds`` poll rounds after the first (its status reads
  only: the data sets are read every hour), divided by N;
- the simulator's resident memory after its start, after the first round and at the end.

A poll round is found by the simulator's count of requests (``GET /_sim/requests/count``): after the first round
(with its data sets) it goes still; the next round is N more requests, until it goes still again. The first round,
with its data sets, must end within the interval (``--interval 300`` for 10,000). ``--simulator-from DIR`` runs the
simulator of another checkout (to measure an older daemon against this simulator).

Run: python bench/scale_bench.py [--repeat R] [--rounds K] [--interval S] [N ...]   (default: 1000, K=1)
     python bench/scale_bench.py 1000 10000                       (10,000 takes several minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Broker, cpu_seconds, simulator_config, start_simulator, status_mb  # noqa: E402

#: the first round must end within this
ROUND_TIMEOUT_S = 1800.0
#: a poll round has ended when the simulator served no request for this long
STILL_S = 2.0
SAMPLE_S = 0.25
#: the bare client's messages go under this prefix (the daemon's stay retained where they are)
BARE = "bare/"
#: the bare client keeps at most this many messages unacknowledged (as the daemon does: backpressure.MAX_UNACKED)
WINDOW = 1000


@dataclass
class Result:
    vehicles: int
    first_round_s: float
    messages: int
    payload_mb: float
    cpu_s: float
    rss_mb: float
    peak_mb: float
    bare_s: float
    steady_cpu_ms: list[float] = field(default_factory=list)
    sim_rss_mb: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def ratio(self) -> float:
        return self.first_round_s / self.bare_s


class Observer:
    """One subscriber for everything: the daemon's messages (topic, size, retain) until every state arrived,
    then the bare client's messages (counted)."""

    def __init__(self, port: int, vehicles: int):
        self.vehicles = vehicles
        self.lock = threading.Lock()
        self.states: set[str] = set()
        self.all_states = threading.Event()
        self.recorded: list[tuple[str, int, bool]] = []
        self.recording = True
        self.bare_expected = -1
        self.bare_seen = 0
        self.bare_done = threading.Event()
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"scale-observer-{os.getpid()}",
            protocol=paho.MQTTv5,
        )  # fmt: skip
        subscribed = threading.Event()

        def on_connect(client: paho.Client, *_args: object) -> None:
            options = SubscribeOptions(qos=0, retainAsPublished=True)
            client.subscribe([("car/#", options), ("homeassistant/#", options), (f"{BARE}#", options)])

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.on_message = self.on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the observer could not subscribe")

    def on_message(self, _client: paho.Client, _userdata: object, msg: paho.MQTTMessage) -> None:
        topic = msg.topic
        if topic.startswith(BARE):
            with self.lock:
                self.bare_seen += 1
                if self.bare_seen == self.bare_expected:
                    self.bare_done.set()
            return
        with self.lock:
            if not self.recording:
                return
            self.recorded.append((topic, len(msg.payload), bool(msg.retain)))
            if topic.startswith("car/") and topic.endswith("/state"):
                name = topic.split("/")[1]
                if name != "bridge":
                    self.states.add(name)
                    if len(self.states) >= self.vehicles:
                        self.recording = False
                        self.all_states.set()

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def write_config(work: Path, port: int, url: str, interval: int, max_parallel: int | None) -> Path:
    poll: dict[str, int] = {"interval": interval, "datasets_interval": 3600}
    if max_parallel is not None:
        poll["max_parallel"] = max_parallel
    return simulator_config(work, port, url, "scale-bridge", poll, homeassistant={"discovery": "device"})


def requests_served(url: str) -> int:
    """How many API requests the simulator has served (``GET /_sim/requests/count``)."""
    with urllib.request.urlopen(f"{url}/_sim/requests/count", timeout=10) as answer:
        return int(json.load(answer)["count"])


def wait_still(url: str, timeout: float) -> int:
    """Wait until the simulator served no request for STILL_S; the count then."""
    deadline = time.monotonic() + timeout
    last, since = requests_served(url), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(SAMPLE_S)
        count = requests_served(url)
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= STILL_S:
            return count
    raise RuntimeError(f"the simulator never went still for {STILL_S} s: the first round is longer than the interval")


def steady_rounds(pid: int, url: str, vehicles: int, rounds: int, interval: int) -> list[float]:
    """The daemon's CPU (ms) per vehicle over each of ``rounds`` poll rounds after the first.

    A round runs from the moment the simulator went still after the previous one (the first with its data sets)
    until it went still again after N more requests (the status reads; data sets are read hourly): one interval,
    its reads and its idle time.
    """
    figures: list[float] = []
    served = wait_still(url, ROUND_TIMEOUT_S)
    before = cpu_seconds(pid)
    for _ in range(rounds):
        deadline = time.monotonic() + 2 * interval + 60
        while requests_served(url) < served + vehicles:
            if time.monotonic() > deadline:
                raise RuntimeError("the next poll round did not come")
            time.sleep(SAMPLE_S)
        served = wait_still(url, interval)
        after = cpu_seconds(pid)
        figures.append((after - before) * 1000 / vehicles)
        before = after
    return figures


def bare_publish(port: int, observer: Observer, recorded: list[tuple[str, int, bool]]) -> float:
    """Seconds from a bare paho client's connect until the observer received all of ``recorded`` from it."""
    payloads: dict[int, bytes] = {}
    prepared = [(BARE + t, payloads.setdefault(n, b"x" * n), r) for t, n, r in recorded]  # outside the clock
    with observer.lock:
        observer.bare_seen, observer.bare_expected = 0, len(prepared)
        observer.bare_done.clear()
    connected = threading.Event()
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"scale-bare-{os.getpid()}", protocol=paho.MQTTv5
    )
    client.on_connect = lambda *_args: connected.set()
    acked = threading.Condition()
    count = [0]

    def on_publish(*_args: object) -> None:
        with acked:
            count[0] += 1
            acked.notify_all()

    client.on_publish = on_publish
    started = time.monotonic()
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(10):
        raise RuntimeError("the bare client could not connect")
    for sent, (topic, payload, retain) in enumerate(prepared):
        if sent - count[0] >= WINDOW:  # paho refuses (drops) a message beyond 65,535 unacknowledged
            with acked:
                acked.wait_for(lambda sent=sent: sent - count[0] < WINDOW // 2, 60)
        client.publish(topic, payload, qos=1, retain=retain)
    if not observer.bare_done.wait(ROUND_TIMEOUT_S):
        raise RuntimeError(f"the observer received {observer.bare_seen} of {len(prepared)} bare messages")
    elapsed = time.monotonic() - started
    client.loop_stop()
    client.disconnect()
    return elapsed


def measure(
    vehicles: int,
    rounds: int,
    interval: int,
    max_parallel: int | None,
    profile: str | None = None,
    simulator_root: Path = ROOT,
) -> Result:
    broker = Broker()
    sim, url = start_simulator(vehicles, simulator_root)
    sim_start = status_mb(sim.pid, "VmRSS")
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    config = write_config(work, broker.port, url, interval, max_parallel)
    observer = Observer(broker.port, vehicles)
    daemon: subprocess.Popen[bytes] | None = None
    try:
        started = time.monotonic()
        daemon = subprocess.Popen(
            [sys.executable, "-m", "mqttbridge", "run", "-c", str(config)],
            cwd=ROOT,
            stderr=open(work / "daemon.log", "wb"),  # noqa: SIM115
        )
        spy = None
        if profile:  # py-spy samples the daemon's first round (collapsed stacks: flamegraph.pl, speedscope)
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--gil",
                    "--pid",
                    str(daemon.pid),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "-o",
                    profile,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        if not observer.all_states.wait(ROUND_TIMEOUT_S):
            raise RuntimeError(f"only {len(observer.states)} of {vehicles} states after {ROUND_TIMEOUT_S:.0f} s")
        first = time.monotonic() - started
        cpu, rss, peak = cpu_seconds(daemon.pid), status_mb(daemon.pid, "VmRSS"), status_mb(daemon.pid, "VmHWM")
        recorded = list(observer.recorded)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        steady = steady_rounds(daemon.pid, url, vehicles, rounds, interval) if rounds else []
        sim_after_first = status_mb(sim.pid, "VmRSS")
        daemon.terminate()
        daemon.wait(60)
        bare = bare_publish(broker.port, observer, recorded)
        sim_end = status_mb(sim.pid, "VmRSS")
        return Result(
            vehicles,
            first,
            len(recorded),
            sum(n for _, n, _ in recorded) / 1e6,
            cpu,
            rss,
            peak,
            bare,
            steady,
            (sim_start, sim_after_first, sim_end),
        )
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(60)
        observer.stop()
        sim.terminate()
        sim.wait(10)
        broker.stop()


def report(r: Result, label: str = "") -> None:
    print(
        f"{r.vehicles:>6} vehicles{label}: all states after {r.first_round_s:6.1f} s ({r.messages} messages, "
        f"{r.payload_mb:.1f} MB); bare paho {r.bare_s:5.1f} s; ratio {r.ratio:.2f} (limit 2)",
        flush=True,
    )
    print(
        f"        daemon at the first round: CPU {r.cpu_s:5.1f} s, resident {r.rss_mb:6.1f} MB (peak {r.peak_mb:.1f})",
        flush=True,
    )
    if r.steady_cpu_ms:
        each = ", ".join(f"{x:.2f}" for x in r.steady_cpu_ms)
        print(f"        steady poll round: daemon CPU per vehicle {each} ms", flush=True)
    start, first, end = r.sim_rss_mb
    print(
        f"        simulator resident: {start:.1f} MB at start, {first:.1f} after the first round, {end:.1f} at the end"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000], help="fleet sizes (default: 1000)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (a fresh daemon each)")
    parser.add_argument("--rounds", type=int, default=1, help="steady poll rounds measured after the first (0: none)")
    parser.add_argument("--interval", type=int, default=60, help="poll.interval of the run (>= 60 s)")
    parser.add_argument("--max-parallel", type=int, default=None, help="poll.max_parallel (default: the daemon's)")
    parser.add_argument("--simulator-from", metavar="DIR", type=Path, default=ROOT, help="the simulator's checkout")
    parser.add_argument("--profile", metavar="FILE", help="py-spy the daemon's first round into FILE (raw stacks)")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores", flush=True)
    for vehicles in args.sizes:
        results = []
        for number in range(args.repeat):
            results.append(
                measure(vehicles, args.rounds, args.interval, args.max_parallel, args.profile, args.simulator_from)
            )
            report(results[-1], f" (run {number + 1})" if args.repeat > 1 else "")
        if args.repeat > 1:
            ratios = [r.ratio for r in results]
            firsts = [r.first_round_s for r in results]
            print(
                f"{vehicles:>6} vehicles (median of {args.repeat}): all states after "
                f"{statistics.median(firsts):.1f} s, ratio {statistics.median(ratios):.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
