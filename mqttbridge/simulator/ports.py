"""Free loopback ports for brokers the simulator (and the tests) start.

A port the kernel hands out for ``bind(0)`` lies in the ephemeral range, the same range outgoing connections take
their source ports from. Between the probe closing and the server binding it, any connection made on the machine
(a NATS route dialling a peer, a client reconnecting) may take it, and the server then fails with "address already
in use" (seen in CI: a NATS node's route port). Ports below (or above) that range are never given to outgoing
connections, so a probe there stays free for whoever binds it next on purpose.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from pathlib import Path

log = logging.getLogger(__name__)

RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10000  # below this lie the well-known services of a machine
ATTEMPTS = 200

_lock = threading.Lock()
_handed: set[int] = set()  # never the same port twice from one process, even before its server binds it


def ephemeral_range(path: Path = RANGE_FILE) -> tuple[int, int]:
    """The kernel's range for outgoing source ports (Linux's default where it cannot be read)."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def quiet_ranges(low: int, high: int) -> list[range]:
    """Port ranges no outgoing connection is given: below the ephemeral range, then above it."""
    ranges = [range(LOWEST, low), range(high + 1, 65536)]
    return [r for r in ranges if len(r) >= 100]


def _bind(host: str, port: int) -> int | None:
    """The port a probe could bind, or None where it is taken; port 0 (the kernel's choice) raises if it fails."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            if port == 0:
                raise  # not even the kernel finds one: the address is not this machine's, say why
            return None
        return int(probe.getsockname()[1])


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on and no outgoing connection can take before its server binds it."""
    ranges = quiet_ranges(*ephemeral_range())
    with _lock:
        for _ in range(ATTEMPTS if ranges else 0):
            pool = ranges[secrets.randbelow(len(ranges))]
            port = pool[secrets.randbelow(len(pool))]
            if port not in _handed and _bind(host, port) is not None:
                _handed.add(port)
                return port
        log.debug("no quiet port found outside the ephemeral range: asking the kernel for one")
        chosen = _bind(host, 0)
        assert chosen is not None  # port 0 raises instead
        _handed.add(chosen)
        return chosen
