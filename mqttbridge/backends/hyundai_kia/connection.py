"""One account's VehicleManager: built for its region and brand, its token kept, its requests counted.

Why apart from the login (``session``) and the cars (``backend``): everything the backend does goes
through this one manager, whose state outlives the process. Its token is kept in ``state_dir``
(``tokens``), with the device id US Kia's session belongs to, so a restart does not log in again;
its vendor requests are counted (``metering``) for the account's budget.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from hyundai_kia_connect_api import Token, VehicleManager
from hyundai_kia_connect_api.const import REGIONS as LIBRARY_REGIONS
from hyundai_kia_connect_api.exceptions import APIError

from mqttbridge.backends.base import Backend
from mqttbridge.backends.hyundai_kia.mapping import BRANDS, REGION_BRANDS, REGION_SINCE, REGIONS
from mqttbridge.backends.hyundai_kia.metering import Meter, install
from mqttbridge.backends.hyundai_kia.tokens import EXPIRED, register_token, token_from_json, token_to_json
from mqttbridge.errors import ConfigError
from mqttbridge.logsetup import register_secret
from mqttbridge.statestore import StateStore

log = logging.getLogger(__name__)


def library_version() -> str:
    """The installed hyundai_kia_connect_api release, for messages."""
    try:
        return package_version("hyundai_kia_connect_api")
    except PackageNotFoundError:  # pragma: no cover - imported above, so installed somehow
        return "unknown"


class HyundaiKiaConnection(Backend):
    """The library's VehicleManager for one Kia, Hyundai or Genesis account in one region, with its token.

    ``session.HyundaiKiaSession`` adds the login around each call, ``backend.HyundaiKiaBackend`` the cars.
    """

    def __init__(self, account: Any, store: StateStore, **kwargs: Any):
        super().__init__(account, store, **kwargs)
        self.region = str(account.region).lower()
        self.brand = str(account.brand).lower()
        if self.region not in REGIONS or self.brand not in BRANDS:
            raise ConfigError([f"account {account.name}: unknown region {account.region!r} or brand {account.brand!r}"])
        if REGIONS[self.region] not in LIBRARY_REGIONS:
            raise ConfigError(
                [
                    f"account {account.name}: region {self.region} needs hyundai-kia-connect-api "
                    f"{REGION_SINCE.get(self.region, 'newer')} or newer; {library_version()} is installed "
                    "(releases from 4.24 need Python 3.12 or newer)"
                ]
            )
        allowed = REGION_BRANDS.get(self.region)
        if allowed is not None and self.brand not in allowed:
            raise ConfigError(
                [
                    f"account {account.name}: the library serves only "
                    f"{', '.join(sorted(allowed))} in region {self.region}, not {self.brand}"
                ]
            )
        self.brand_name = BRANDS[self.brand][1]
        register_secret(account.password)
        register_secret(account.pin)
        install()  # every vendor request of this backend's threads is counted from now on
        self._lock = threading.RLock()
        self._calls = threading.local()  # vendor requests per thread, for take_vendor_calls
        self._token_file = f"tokens/{account.name}.json"
        self._identity = hashlib.sha256(
            f"hyundai_kia|{self.region}|{self.brand}|{account.username}".encode()
        ).hexdigest()[:16]
        self._saved: dict[str, Any] | None = None
        token = self._load_token()
        try:
            self.manager = VehicleManager(
                region=REGIONS[self.region],
                brand=BRANDS[self.brand][0],
                username=account.username,
                password=account.password,
                pin=account.pin or "",
                token=token,
            )
        except Exception as exc:  # APIError "Genesis EU CCI/GSPA is not supported yet", or a crash (Genesis in IN)
            detail = str(exc) if isinstance(exc, APIError) else f"{type(exc).__name__} building its API"
            raise ConfigError(
                [
                    f"account {account.name}: hyundai-kia-connect-api {library_version()} refuses {self.brand} "
                    f"in region {self.region}: {detail}"
                ]
            ) from None
        self._restore_device(token)

    # --- tokens ---------------------------------------------------------------------------------

    def _read_token(self) -> Token | None:
        data = self.store.read_json(self._token_file)
        if not isinstance(data, dict) or data.get("identity") != self._identity:
            return None
        stored = data.get("token")
        return token_from_json(stored, self.account) if isinstance(stored, dict) else None

    def _load_token(self) -> Token | None:
        token = self._read_token()
        if token is not None:
            register_token(token)
            self._saved = token_to_json(token)
            log.debug("%s: reusing the stored token", self.account.name)
        return token

    def _restore_device(self, token: Token | None) -> None:
        if token is not None and token.device_id and hasattr(self.manager.api, "device_id"):
            # US Kia makes up a device id per process; its session belongs to the stored one
            self.manager.api.device_id = token.device_id

    def _persist_token(self) -> None:
        """Write the token whenever the library changed it (login, refresh, a new control token)."""
        current = token_to_json(self.manager.token)
        if current == self._saved:
            return
        register_token(self.manager.token)
        if current is None:
            self.store.delete(self._token_file)
        else:
            self.store.write_json(self._token_file, {"identity": self._identity, "token": current})
        self._saved = current

    def _invalidate_token(self) -> None:
        """The vendor refused the token: the next check renews it (refresh token, else a login)."""
        if self.manager.token is not None:
            self.manager.token.valid_until = EXPIRED

    # --- vendor requests, counted for the budget --------------------------------------------------

    def take_vendor_calls(self) -> int:
        """The vendor requests this thread's calls made since the last take, all of them (a login, a
        token check, a control token, the several requests of one read), for the account's budget."""
        count = getattr(self._calls, "count", 0)
        self._calls.count = 0
        return count

    def _count(self, meter: Meter) -> None:
        self._calls.count = getattr(self._calls, "count", 0) + meter.requests

    # --- time, closing --------------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def close(self) -> None:
        super().close()
        session = getattr(self.manager.api, "session", None)
        if session is not None and hasattr(session, "close"):
            session.close()
