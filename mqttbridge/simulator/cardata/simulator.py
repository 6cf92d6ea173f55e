"""``CarDataSimulator``: the Python API over the simulation, and ``main`` for ``mqttbridge simulate``.

Tests and ``mqttbridge demo`` run it in-process; the CLI runs it until SIGINT/SIGTERM. The stream
broker is optional in-process (``stream=False`` keeps a test free of mosquitto).

Where it knowingly differs from BMW (facts file section 8), because a stock Mosquitto 2.0 decides:

* a new id_token ends the open stream session at once (dynsec's ``setClientPassword`` kicks the
  username); BMW keeps it until the old token expires. The bridge reconnects with each new token anyway;
* only the newest id_token of an account is a valid password (dynsec holds one per client);
* a refused subscription gets SUBACK 0x80/0x87 but the connection stays open (BMW closes it);
* refused CONNECTs are "not authorized" (5 / 0x87), never 4 "bad user name or password";
* a second session is seen in the broker's log a moment after it connected; then the older session
  is taken over by client ID (only it ends, as at BMW). No per-IP reconnect rate policy.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..web import POLL_INTERVAL, SimHTTPServer
from .clock import SimClock
from .oauth import REFRESH_LIFETIME
from .server import CarDataSimulation, make_simulation, temp_workdir
from .stream import Broker

logger = logging.getLogger(__name__)

__all__ = ["CarDataSimulator", "main"]

#: how often (real seconds) the watcher looks for expired id_tokens
EXPIRY_CHECK = 0.5


class CarDataSimulator:
    """OAuth + REST + ``/_sim/`` on ``url``, the stream on ``stream_port`` (when ``stream``)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        vehicles: int | None = None,
        stream: bool = True,
        stream_port: int = 0,
        stream_tls: bool = False,
        stream_plugin: str | None = None,
        clock: Callable[[], float] = time.time,
        fixtures: Path | bool | None = True,
        refresh_lifetime: float = REFRESH_LIFETIME,
    ):
        self.clock = SimClock(clock)
        self._workdir = temp_workdir()
        try:  # no mosquitto, no plug-in, a taken port: leave no folder behind
            self.broker = Broker(self._workdir, host, stream_port, stream_tls, stream_plugin) if stream else None
            self.simulation: CarDataSimulation = make_simulation(
                vehicles, self.clock, lambda: self.url, self.broker, fixtures, refresh_lifetime
            )
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._httpd = SimHTTPServer((host, port), self.simulation, family)
        except BaseException:
            shutil.rmtree(self._workdir, ignore_errors=True)
            raise
        bound = self._httpd.server_address[1]
        self.url = f"http://[{host}]:{bound}" if family == socket.AF_INET6 else f"http://{host}:{bound}"
        self.host = host
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def stream_port(self) -> int | None:
        return self.broker.port if self.broker else None

    @property
    def stream_ca(self) -> Path | None:
        return self.broker.ca_file if self.broker else None

    @property
    def vins(self) -> list[str]:
        return list(self.simulation.cars)

    def account(self, name: str, client_id: str, **extra: Any) -> dict[str, Any]:
        """A ``bmw_cardata`` account section that points a bridge at this simulator (its OAuth, REST and, when
        it runs one, its stream); ``extra`` adds or overrides keys (``vehicles``, ``stream``, ...)."""
        section: dict[str, Any] = {
            "name": name,
            "provider": "bmw_cardata",
            "client_id": client_id,
            "auth_url": self.url,
            "api_url": self.url,
        }
        if self.broker is not None:
            section |= {"stream_host": self.host, "stream_port": self.broker.port, "stream_tls": self.broker.tls}
            if self.broker.tls:
                section["stream_ca"] = str(self.broker.ca_file)
        return section | extra

    def start(self) -> CarDataSimulator:
        if self.broker is not None:
            self.broker.start()
        for target, name in ((self._serve, "cardata-sim-http"), (self._watch, "cardata-sim-expiry")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info("CarData simulator on %s with %d car(s)", self.url, len(self.simulation.cars))
        return self

    def _serve(self) -> None:
        self._httpd.serve_forever(POLL_INTERVAL)

    def _watch(self) -> None:
        while not self._stop.wait(EXPIRY_CHECK):
            try:
                self.simulation.expire_sessions()
            except Exception:  # keep watching; a broker hiccup must not end the thread
                logger.exception("checking id_token expiry failed")

    def stop(self) -> None:
        """Stop HTTP, the watcher and mosquitto; safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._threads:
            self._httpd.shutdown()
        self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.broker is not None:
            self.broker.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)
        logger.info("CarData simulator on %s stopped", self.url)

    def __enter__(self) -> CarDataSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- test hooks (the same as /_sim/) ------------------------------------------------------------

    def pending_user_codes(self) -> list[str]:
        with self.simulation.lock:
            return [str(p["user_code"]) for p in self.simulation.oauth.pending()]

    def approve(self, user_code: str, deny: bool = False) -> bool:
        with self.simulation.lock:
            return self.simulation.oauth.approve(user_code, deny)

    def revoke_client(self, client_id: str) -> None:
        with self.simulation.lock:
            self.simulation.oauth.revoke_client(client_id)

    def stream_message(self, vin: str, data: dict[str, Any]) -> dict[str, Any]:
        with self.simulation.lock:
            return self.simulation.stream_message(vin, data)

    def quota(self, gcid: str | None = None) -> dict[str, object]:
        with self.simulation.lock:
            return self.simulation.quota.state(gcid)

    def advance(self, seconds: float) -> list[str]:
        """Move the clock; returns the GCIDs whose stream sessions were closed for an expired id_token."""
        self.clock.advance(seconds)
        return self.simulation.expire_sessions()

    def gcid(self, client_id: str) -> str:
        with self.simulation.lock:
            return self.simulation.oauth.account(client_id).gcid


def main(args: argparse.Namespace) -> int:
    """``mqttbridge simulate --provider bmw_cardata``: serve until SIGINT or SIGTERM."""
    simulator = CarDataSimulator(
        host=args.host,
        port=args.port,
        vehicles=args.vehicles,
        stream_port=getattr(args, "stream_port", None) or 0,
        stream_tls=bool(getattr(args, "stream_tls", False)),
        stream_plugin=getattr(args, "stream_plugin", None),
    )
    done = threading.Event()

    def stop(_signum: int, _frame: Any) -> None:
        done.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        simulator.start()
        print(f"listening on {simulator.url}", flush=True)
        print(f"stream on mqtt://{simulator.host}:{simulator.stream_port}", flush=True)
        if simulator.stream_ca is not None:
            print(f"stream CA {simulator.stream_ca}", flush=True)
        for vin, car in simulator.simulation.cars.items():
            logger.info("serving %s (%s)", vin, car.model)
        done.wait()
    finally:
        simulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
