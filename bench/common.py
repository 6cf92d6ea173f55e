"""Shared pieces of the benchmarks: a private mosquitto, the simulator as a process and a daemon configuration
for it, percentiles, memory and CPU of a process."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from mqttbridge.simulator.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


class Broker:
    """``nodelay``: mosquitto's ``set_tcp_nodelay`` (off by default, which lets Nagle's algorithm hold
    a message to a client that has just published, for up to the peer's 40 ms delayed ACK)."""

    def __init__(self, nodelay: bool = True) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bench-mosquitto-"))
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 100000\n" + ("set_tcp_nodelay true\n" if nodelay else "")
        )
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1]


def status_mb(pid: int, key: str = "VmRSS") -> float:
    """A memory figure of ``/proc/PID/status`` in MB: ``VmRSS`` (resident now) or ``VmHWM`` (its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key}")


def rss_mb(pid: int) -> float:
    return status_mb(pid, "VmRSS")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_simulator(vehicles: int, root: Path = ROOT) -> tuple[subprocess.Popen[str], str]:
    """``mqttbridge simulate --vehicles N`` (of the checkout at ``root``) as a process, and its URL."""
    sim = subprocess.Popen(
        [sys.executable, "-m", "mqttbridge", "simulate", "--vehicles", str(vehicles), "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
    )
    assert sim.stdout is not None
    url = sim.stdout.readline().split()[-1]
    return sim, url


def simulator_config(work: Path, port: int, url: str, client_id: str, poll: dict[str, Any], **top: Any) -> Path:
    """A daemon configuration for one simulator account on the broker at ``port``, written to ``work``."""
    config = {
        "mqtt": {"host": "127.0.0.1", "port": port, "base_topic": "car", "client_id": client_id},
        "state_dir": str(work / "state"),
        "log_level": "WARNING",
        **top,
        "accounts": [
            {
                "name": "sim",
                "provider": "bmw_legacy",
                "base_url": url,
                "username": "demo@example.com",
                "password": "demo",
                "api_key": "bench-key",
                "api_secret": "bench-secret",
                "poll": poll,
            }
        ],
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)  # it holds the simulator's password: the daemon would warn otherwise
    return path
