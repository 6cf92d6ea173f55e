"""Resident memory of the daemon at fleet size: 100 and 1,000 simulated vehicles on one account.

Each size runs in a fresh daemon process (`python -m mqttbridge run`) against its own
`mqttbridge simulate --vehicles N` and its own private mosquitto, with Home Assistant discovery on (device
mode). Printed per run: the time from the daemon's start until every vehicle's `state` reached a subscriber
(the first round), then, once the first round of data sets has been read too, the daemon's resident memory
(VmRSS), its peak (VmHWM) and the CPU seconds it used. With --reconnect the broker is then restarted (empty:
it keeps nothing), and the same is printed once the daemon has published again every retained topic it had
published before (the bridge's, the vehicles' and the discovery configs).
Run: python bench/memory_bench.py [--repeat R] [--reconnect] [N ...]
(default: 100 1000, once each; with R > 1 the median too)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Broker, cpu_seconds, simulator_config, start_simulator, status_mb  # noqa: E402

#: after every state arrived, the data sets of the first round are still being read: wait this long at most
SETTLE_S = 60.0
#: the first round must end within this
ROUND_TIMEOUT_S = 1800.0
#: after the broker's restart, everything must be published again within this
REPUBLISH_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Run:
    vehicles: int
    #: seconds from the daemon's start (or the broker's restart) until every vehicle's state had arrived
    first_round_s: float
    rss_mb: float
    peak_mb: float
    cpu_s: float


def measure(vehicles: int, reconnect: bool = False) -> list[Run]:
    """The first round; with ``reconnect`` also the republish after a broker restart."""
    broker = Broker()
    sim, url = start_simulator(vehicles)
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    config_file = simulator_config(work, broker.port, url, "bench-bridge", {"interval": 3600})
    seen: set[str] = set()
    datasets: set[str] = set()
    all_states = threading.Event()
    #: every retained topic the daemon holds (the first phase); after the restart, those not published again
    retained: set[str] = set()
    missing: set[str] = set()
    republished = threading.Event()
    lock = threading.Lock()

    def on_message(_client: paho.Client, _userdata: object, msg: paho.MQTTMessage) -> None:
        topic = msg.topic
        with lock:
            if republished.is_set():
                return
            if missing:  # after the restart
                missing.discard(topic)
                if not missing:
                    republished.set()
                return
            if msg.retain:  # retain as published: events and markers are not retained
                (retained.add if msg.payload else retained.discard)(topic)
            name = topic.split("/")[1]
            if topic.startswith("car/") and topic.endswith("/state") and name != "bridge":
                seen.add(name)
                if len(seen) >= vehicles:
                    all_states.set()
            elif topic.endswith("/last_trip"):
                datasets.add(name)

    subscribed = threading.Event()

    def on_connect(client: paho.Client, _userdata: object, _flags: object, _reason: object, _props: object) -> None:
        options = SubscribeOptions(qos=0, retainAsPublished=True)
        client.subscribe([("car/#", options), ("homeassistant/#", options)])  # again after the broker's restart
        subscribed.set()

    observer = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-observer", protocol=paho.MQTTv5
    )
    observer.on_message = on_message
    observer.on_connect = on_connect
    observer.reconnect_delay_set(1, 2)
    observer.connect("127.0.0.1", broker.port)
    observer.loop_start()
    if not subscribed.wait(10):
        raise RuntimeError("the observer could not connect")
    started = time.monotonic()
    daemon = subprocess.Popen([sys.executable, "-m", "mqttbridge", "run", "-c", str(config_file)], cwd=ROOT)
    try:
        if not all_states.wait(ROUND_TIMEOUT_S):
            raise RuntimeError(f"only {len(seen)} of {vehicles} states after {ROUND_TIMEOUT_S:.0f} s")
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:  # the first round of data sets (trips) of the cars that have them
            with lock:
                if len(datasets) >= vehicles // 2:
                    break
            time.sleep(0.5)
        time.sleep(2.0)
        runs = [
            Run(
                vehicles,
                elapsed,
                status_mb(daemon.pid, "VmRSS"),
                status_mb(daemon.pid, "VmHWM"),
                cpu_seconds(daemon.pid),
            )
        ]
        if reconnect:
            with lock:
                missing.update(retained)
            broker.proc.terminate()
            broker.proc.wait(10)
            started = time.monotonic()
            binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
            broker.proc = subprocess.Popen(
                [binary, "-c", str(broker.dir / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if republished.wait(REPUBLISH_TIMEOUT_S):
                elapsed = time.monotonic() - started
                print(f"    ({len(retained)} retained topics published again after the broker's restart)", flush=True)
            else:  # the contract says everything is published again: say what was not
                elapsed = float("nan")
                with lock:
                    lost = sorted(missing)
                print(
                    f"    {len(lost)} of {len(retained)} retained topics NOT published again within "
                    f"{REPUBLISH_TIMEOUT_S:.0f} s, e.g. {lost[:3]}",
                    flush=True,
                )
            time.sleep(2.0)
            runs.append(
                Run(
                    vehicles,
                    elapsed,
                    status_mb(daemon.pid, "VmRSS"),
                    status_mb(daemon.pid, "VmHWM"),
                    cpu_seconds(daemon.pid),
                )
            )
        return runs
    finally:
        daemon.terminate()
        daemon.wait(30)
        observer.loop_stop()
        sim.terminate()
        sim.wait(10)
        broker.stop()


def line(run: Run, label: str = "") -> str:
    return (
        f"{run.vehicles:>6} vehicles{label}: all states published after {run.first_round_s:6.1f} s; "
        f"resident {run.rss_mb:6.1f} MB, peak {run.peak_mb:6.1f} MB; daemon CPU {run.cpu_s:5.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[100, 1000], help="fleet sizes (default: 100 1000)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (a fresh daemon each)")
    parser.add_argument("--reconnect", action="store_true", help="then restart the broker and measure again")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    for vehicles in args.sizes:
        runs: list[list[Run]] = []
        for number in range(args.repeat):
            runs.append(measure(vehicles, args.reconnect))
            run = f" (run {number + 1})" if args.repeat > 1 else ""
            print(line(runs[-1][0], run), flush=True)
            if args.reconnect:
                print(
                    line(runs[-1][1], f"{run}, after a reconnect").replace("all states published", "republished"),
                    flush=True,
                )
        if args.repeat > 1:
            for phase, label in enumerate([" (median)", " (median), after a reconnect"][: len(runs[0])]):
                median = Run(
                    vehicles,
                    *(
                        statistics.median(getattr(r[phase], f) for r in runs)
                        for f in ("first_round_s", "rss_mb", "peak_mb", "cpu_s")
                    ),
                )
                text = line(median, label)
                print(text.replace("all states published", "republished") if phase else text, flush=True)


if __name__ == "__main__":
    main()
