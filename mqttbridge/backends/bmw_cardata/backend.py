"""The BMW CarData backend (CONTRACT §9): read-only, streamed, inside 50 REST calls a day.

``list_vehicles``: the mappings (PRIMARY cars) and, once ever per car, its basic data. ``read_status``: what
the stream delivered, when it delivered something for this car within the poll interval (no REST call);
else one ``telematicData`` call through our container. Both merge into the car's ``CarState``, so a stream
message changes only the fields it carries. ``start(sink)`` opens the account's one stream connection.
Every REST request is counted for the budget (``take_vendor_calls``); token calls and the stream are free.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from functools import partial
from typing import Any

import requests

from mqttbridge.backends.base import Backend, StatusSink
from mqttbridge.errors import BadResponseError, TransientError, UnsupportedError
from mqttbridge.model import CommandRequest, ExecutionUpdate, VehicleInfo, VehicleStatus
from mqttbridge.statestore import StateStore

from .auth import CarDataAuth
from .fields import CONTAINER_KEYS
from .mapping import CarState, entries_from_stream, entries_from_telematic, has_fuel_tank, vehicle_info
from .rest import CarDataRest
from .stream import CarDataStream

log = logging.getLogger(__name__)

READ_ONLY = "read-only provider: BMW CarData offers no commands"


class CarDataBackend(Backend):
    provider = "bmw_cardata"

    def __init__(
        self,
        account: Any,
        store: StateStore,
        *,
        session: requests.Session | None = None,
        stream_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(account, store, **kwargs)
        self.session = session or requests.Session()
        self.auth = CarDataAuth(
            account,
            store,
            session=self.session,
            clock=self.clock,
            closing=self.closing,
            wait=self.sleep,
            policy=self.policy,
            listener=lambda: getattr(self, "login_listener", None),
        )
        self.rest = CarDataRest(
            account,
            store,
            self.auth,
            keys=CONTAINER_KEYS,
            session=self.session,
            clock=self.clock,
            closing=self.closing,
            wait=self.sleep,
            policy=self.policy,
        )
        self.stream_options = dict(stream_options or {})
        self.stream: CarDataStream | None = None
        self._sink: StatusSink | None = None
        self._lock = threading.Lock()
        self._cars: dict[str, CarState] = {}
        #: VIN -> when (clock) the stream last delivered something for it
        self._streamed_at: dict[str, float] = {}

    # --- cars --------------------------------------------------------------------------------------------

    def _car(self, vin: str) -> CarState:
        car = self._cars.get(vin.upper())
        if car is None:
            car = self._cars[vin.upper()] = CarState()
        return car

    def list_vehicles(self) -> list[VehicleInfo]:
        self.auth.tokens()  # a login that is needed is said before any REST call is spent
        infos = []
        # an account that names its vehicles bridges only those: the others' basic data would waste calls
        wanted = {str(v.vin).upper() for v in getattr(self.account, "vehicles", ())}
        for mapping in self.rest.mappings():
            vin = str(mapping["vin"])
            if wanted and vin.upper() not in wanted:
                infos.append(vehicle_info(vin, None, mapping))
                continue
            try:
                basic = self.rest.basic_data(vin)
            except (TransientError, BadResponseError) as exc:  # the car is bridged anyway; read again next time
                log.warning("%s: basic data of %s: %s", self.account.name, vin, exc)
                basic = None
            info = vehicle_info(vin, basic, mapping)
            with self._lock:
                self._car(vin).has_fuel_tank = has_fuel_tank(info.drive_train)
            infos.append(info)
        return infos

    def _fresh_from_stream(self, vin: str) -> bool:
        streamed = self._streamed_at.get(vin.upper())
        interval = float(getattr(getattr(self.account, "poll", None), "interval", 3600) or 3600)
        return streamed is not None and self.clock() - streamed < interval and self._car(vin).has_data()

    def read_status(self, vehicle: VehicleInfo, *, force: bool = False) -> VehicleStatus:
        if force:
            raise UnsupportedError("BMW CarData cannot wake the car for a fresh reading (read-only API)")
        vin = vehicle.vin
        with self._lock:
            if self._fresh_from_stream(vin):  # the stream is live: no call spent
                return self._car(vin).status(vin, datetime.fromtimestamp(self._streamed_at[vin.upper()], UTC))
        return self.refresh_status(vehicle)

    def refresh_status(self, vehicle: VehicleInfo) -> VehicleStatus:
        """A user's refresh (CONTRACT §9: a REST read on ``refresh``), live stream or not: it also brings the
        keys the portal's stream selection leaves out."""
        vin = vehicle.vin
        entries = entries_from_telematic(self.rest.telematic(vin))
        with self._lock:
            car = self._car(vin)
            car.merge(entries)
            return car.status(vin, datetime.fromtimestamp(self.clock(), UTC))

    def _streamed(self, topic_vin: str, message: Any) -> None:
        """A stream message (on the stream's worker thread): merged, and pushed when something changed."""
        try:
            vin, entries = entries_from_stream(message)
        except BadResponseError as exc:
            log.warning("%s: stream message on %s: %s", self.account.name, topic_vin, exc)
            return
        now = self.clock()
        with self._lock:
            car = self._car(vin)
            changed = car.merge(entries)
            self._streamed_at[vin.upper()] = now
            status = car.status(vin, datetime.fromtimestamp(now, UTC)) if changed else None
        sink = self._sink
        if status is not None and sink is not None:
            sink.push(vin, status)

    # --- read-only ---------------------------------------------------------------------------------------

    def read_dataset(self, vehicle: VehicleInfo, name: str) -> Any:
        raise UnsupportedError(f"BMW CarData offers no data set {name!r}")

    def execute(self, vehicle: VehicleInfo, request: CommandRequest) -> ExecutionUpdate:
        raise UnsupportedError(READ_ONLY)

    def execution_status(self, vehicle: VehicleInfo, started: ExecutionUpdate) -> ExecutionUpdate:
        raise UnsupportedError(READ_ONLY)

    # --- life --------------------------------------------------------------------------------------------

    def start(self, sink: StatusSink) -> None:
        if self.stream is not None:
            return
        self._sink = sink
        if not getattr(getattr(self.account, "stream", None), "enabled", True):
            log.info("%s: the stream is off (stream.enabled: false): REST reads only", self.account.name)
            return
        self.stream = CarDataStream(
            self.account,
            self.auth,
            on_message=self._streamed,
            relay=getattr(sink, "relay", None),
            event=getattr(sink, "event", None),
            publish_state=partial(sink.account_state, "stream") if hasattr(sink, "account_state") else None,
            **self.stream_options,
        )
        self.stream.start()

    def stop(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.stop()

    @property
    def stream_state(self) -> dict[str, Any] | None:
        """The stream's state (connected, conflict, counters), None when it is not running."""
        stream = self.stream
        return stream.state if stream is not None else None

    def login(self) -> None:
        self.auth.login()

    def take_vendor_calls(self) -> int | None:
        return self.rest.take_calls()

    def close(self) -> None:
        super().close()
        self.stop()
        self.session.close()
