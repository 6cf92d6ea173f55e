"""Prometheus metrics, served on ``metrics.host:metrics.port`` when the configuration has ``metrics:``.

``prometheus-client`` is an optional extra (``pip install 'mqttbridge[metrics]'``), imported only
when metrics are configured: a bridge without them neither needs nor loads it. Every method is a
cheap no-op while metrics are off, so callers never check.

The metrics live in a registry of their own (not the library's global one), so several bridges in
one process (tests) never collide, and the process's own default collectors do not drown them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from mqttbridge.errors import MqttBridgeError

log = logging.getLogger(__name__)

#: command durations run from seconds (a refresh) to the two-minute vendor timeout and beyond
DURATION_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Metrics:
    """The bridge's metrics; ``Metrics(None)`` is the switched-off kind."""

    def __init__(self, config: Any | None):
        self.config = config
        self.enabled = config is not None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        if not self.enabled:
            return
        try:
            import prometheus_client as prom
        except ImportError:
            raise MqttBridgeError(
                "metrics: is configured but the prometheus-client package is missing; install it with "
                "pip install 'mqttbridge[metrics]', or remove the metrics section"
            ) from None
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        registry = self.registry
        self.vendor_calls = prom.Counter(
            "mqttbridge_vendor_calls",
            "Calls to the vendor's API, by account, kind and result",
            ("account", "kind", "result"),
            registry=registry,
        )
        self.commands = prom.Counter(
            "mqttbridge_commands", "Commands by their final status", ("command", "status"), registry=registry
        )
        self.command_duration = prom.Histogram(
            "mqttbridge_command_duration_seconds",
            "Seconds from a command's arrival to its final status",
            ("command", "status"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.budget_remaining = prom.Gauge(
            "mqttbridge_budget_remaining_calls",
            "Calls left in the account's daily budget",
            ("account",),
            registry=registry,
        )
        self.broker_connected = prom.Gauge(
            "mqttbridge_broker_connected", "1 while the bridge is connected to the MQTT broker", registry=registry
        )
        self.last_read = prom.Gauge(
            "mqttbridge_vehicle_last_read_timestamp_seconds",
            "Unix time of the last successful status read",
            ("vin", "vehicle"),
            registry=registry,
        )

    def start(self, connected: Callable[[], bool]) -> None:
        """Serve ``/metrics``; the broker gauge asks ``connected`` at each scrape, so it is never stale."""
        if not self.enabled:
            return
        self.broker_connected.set_function(lambda: 1.0 if connected() else 0.0)
        assert self.config is not None  # enabled means configured
        host, port = self.config.host, self.config.port
        try:
            self._server, self._thread = self._prom.start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise MqttBridgeError(
                f"metrics: cannot listen on {host}:{port}: {exc.strerror or exc}; choose another metrics.port"
            ) from None
        log.info("metrics on http://%s:%s/metrics", host, self.port)

    @property
    def port(self) -> int | None:
        """The port actually served, once started."""
        if self._server is None:
            return None
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- what the bridge reports -------------------------------------------------------------------

    def vendor_call(self, account: str, kind: str, result: str) -> None:
        if self.enabled:
            self.vendor_calls.labels(account, kind, result).inc()

    def command_finished(self, command: str, status: str, seconds: float) -> None:
        if self.enabled:
            self.commands.labels(command, status).inc()
            self.command_duration.labels(command, status).observe(max(0.0, seconds))

    def budget(self, account: str, remaining: int | None) -> None:
        if self.enabled and remaining is not None:
            self.budget_remaining.labels(account).set(remaining)

    def vehicle_read(self, vin: str, name: str, when: float) -> None:
        if self.enabled:
            self.last_read.labels(vin, name).set(when)
