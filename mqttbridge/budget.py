"""Per-account daily call budget: counts vendor calls so the scheduler never gets an account locked.

Why a budget at all: the Hyundai/Kia backends punish polling. US Hyundai (Blue Link) allows 30 calls
per day in total (10 per action type); the EU limit is undocumented, but users got error 5091
("maximum number of daily vehicle checks exceeded") with a 15-minute poll, and even with kia_uvo's
defaults (cached read every 30 min, forced read every 4 h). A lock-out also blocks the official app.

So ``hyundai_kia`` defaults to 100 calls per account per day: enough for a cached read of one car
about every 15-20 minutes, with ``command_reserve`` calls kept back so that a lock or climate command
still works after the reads have stopped. US Hyundai users should set ``daily_budget: 30``.
``bmw_legacy`` has no known daily limit, so it has no budget (it still honours HTTP 429).

The ledger is pure logic plus one small state file (``budgets/<account>.json`` in ``state_dir``) so a
restart never hands out the day's calls a second time. Time is injected (``now``) for the tests; the
reset is a local wall-clock time, computed in the time zone of ``now()`` so DST days (23 or 25 hours)
are handled.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from mqttbridge.statestore import StateStore

log = logging.getLogger(__name__)

CALL_KINDS = ("cached_read", "forced_read", "command", "execution_check")
READ_KINDS = frozenset({"cached_read", "forced_read"})

_STATE_VERSION = 1
#: an account without a limit saves its counts at most this often (they decide nothing, and every vendor call
#: of a fleet would write and fsync the file); one with a limit saves at every call
UNLIMITED_SAVE_S = 60.0


def _local_now() -> datetime:
    return datetime.now().astimezone()


def _utc(moment: datetime) -> datetime:
    """Compare instants in UTC: Python compares two datetimes sharing a ZoneInfo by wall clock."""
    return moment.astimezone(UTC)


def _is_system_local(moment: datetime) -> bool:
    """A fixed offset equal to the system's at that instant is taken as the system zone (DST-aware).

    ``datetime.now().astimezone()`` carries only a fixed offset; without this the reset after a DST
    change would be an hour off.
    """
    return isinstance(moment.tzinfo, timezone) and moment.utcoffset() == moment.astimezone().utcoffset()


class BudgetLedger:
    """Calls spent by one account since the last reset, and whether the vendor has blocked it."""

    def __init__(
        self,
        account: str,
        *,
        limit: int | None,
        reset: time,
        reserve: int,
        store: StateStore,
        now: Callable[[], datetime] = _local_now,
    ):
        if not account or "/" in account or "\\" in account or account.startswith("."):
            raise ValueError(f"account name {account!r} cannot name a budget file")
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0 or None")
        if reserve < 0:
            raise ValueError("reserve must be >= 0")
        self.account = account
        self.limit = limit
        self.reserve = reserve
        #: the account's whole budget; ``share`` gives a cluster instance its part of it
        self._whole = (limit, reserve)
        #: a reset given in UTC (``HH:MM UTC``: BMW CarData's quota) falls on UTC days, else on local ones
        self._reset_in_utc = reset.tzinfo is not None
        self._reset = reset.replace(tzinfo=None)
        self._store = store
        self._clock = now
        self._file = f"budgets/{account}.json"
        self._counts: dict[str, int] = dict.fromkeys(CALL_KINDS, 0)
        self._blocked: datetime | None = None
        self._exhausted_logged = False
        #: vendor requests one read costs, as a metering backend last reported (a moving average)
        self._read_cost = 1.0
        #: when the counts were last saved, and whether they changed since (an account without a limit)
        self._saved_at: datetime | None = None
        self._dirty = False
        current = self._now()
        self._period_start = self._last_reset(current)
        self._period_end = self._next_reset(current)
        self._load(current)

    # --- time -------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        """The injected clock; a naive value is read as system local time rather than refused."""
        current = self._clock()
        return current if current.tzinfo is not None else current.astimezone()

    def _day(self, current: datetime) -> date:
        return _utc(current).date() if self._reset_in_utc else current.date()

    def _reset_on(self, day: date, ref: datetime) -> datetime:
        """The reset instant on a calendar day (local, or UTC for a reset in UTC), in the zone of ``ref``."""
        naive = datetime.combine(day, self._reset)
        if self._reset_in_utc:
            return naive.replace(tzinfo=UTC).astimezone(ref.tzinfo)
        if _is_system_local(ref):
            return naive.astimezone()
        zone = ref.tzinfo
        # A round trip through UTC gives the offset that really applies (ZoneInfo and DST gaps).
        return naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)

    def _last_reset(self, current: datetime) -> datetime:
        candidate = self._reset_on(self._day(current), current)
        if _utc(candidate) > _utc(current):
            candidate = self._reset_on(self._day(current) - timedelta(days=1), current)
        return candidate

    def _next_reset(self, current: datetime) -> datetime:
        candidate = self._reset_on(self._day(current), current)
        if _utc(candidate) <= _utc(current):
            candidate = self._reset_on(self._day(current) + timedelta(days=1), current)
        return candidate

    def _roll(self) -> datetime:
        """Start a new period when the reset has passed (checked lazily on every call); returns now."""
        current = self._now()
        if _utc(current) >= _utc(self._period_end):
            log.info("account %s: call budget reset (%d calls used in the last period)", self.account, self._used())
            self._counts = dict.fromkeys(CALL_KINDS, 0)
            self._period_start = self._last_reset(current)
            self._period_end = self._next_reset(current)
            self._exhausted_logged = False
        if self._blocked is not None and _utc(current) >= _utc(self._blocked):
            log.info("account %s: vendor limit lifted", self.account)
            self._blocked = None
        return current

    # --- persistence ------------------------------------------------------------------------------

    def _load(self, current: datetime) -> None:
        """Restore today's counts; an unreadable file costs the counts but never the daemon."""
        existed = self._store.path(self._file).exists()
        data = self._store.read_json(self._file)
        if data is None:
            if existed:
                log.warning("account %s: budget file unreadable; counting calls from zero", self.account)
            return
        try:
            start = datetime.fromisoformat(data["period_start"])
            counts = data.get("by_kind") or {}
            blocked_raw = data.get("blocked_until")
            blocked = datetime.fromisoformat(blocked_raw) if blocked_raw else None
            if start.tzinfo is None or (blocked is not None and blocked.tzinfo is None):
                raise ValueError("time without offset")
            parsed = {kind: counts.get(kind, 0) for kind in CALL_KINDS}
            if not all(type(n) is int and n >= 0 for n in parsed.values()):
                raise ValueError("bad counts")
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            log.warning("account %s: budget file malformed (%s); counting calls from zero", self.account, exc)
            return
        # A vendor block outlives the period only when the vendor gave a later time itself.
        if blocked is not None and _utc(blocked) > _utc(current):
            self._blocked = blocked
        if _utc(start) >= _utc(self._period_start):
            self._counts = parsed
        else:
            log.info("account %s: budget file is from an earlier period; new day", self.account)

    def _counted(self, current: datetime) -> None:
        """The counts changed: saved now, or for an account without a limit at most every ``UNLIMITED_SAVE_S``."""
        recent = (
            self._saved_at is not None and (_utc(current) - _utc(self._saved_at)).total_seconds() < UNLIMITED_SAVE_S
        )
        if self.limit is None and recent:
            self._dirty = True
            return
        self._saved_at = current
        self._save()

    def flush(self) -> None:
        """Save counts not saved yet (at stop)."""
        if self._dirty:
            self._save()

    def _save(self) -> None:
        self._dirty = False
        self._store.write_json(
            self._file,
            {
                "version": _STATE_VERSION,
                "account": self.account,
                "period_start": self._period_start.isoformat(),
                "by_kind": dict(self._counts),
                "blocked_until": self._blocked.isoformat() if self._blocked else None,
            },
        )

    # --- API --------------------------------------------------------------------------------------

    def _used(self) -> int:
        return sum(self._counts.values())

    def _remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self._used())

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in CALL_KINDS:
            raise ValueError(f"unknown call kind {kind!r}; expected one of {', '.join(CALL_KINDS)}")

    def spend(self, kind: str, n: int = 1) -> None:
        """Count calls that were made (even over the limit: the vendor counted them too); saved at once."""
        self._check_kind(kind)
        if n < 0:
            raise ValueError("cannot spend a negative number of calls")
        current = self._roll()
        if n == 0:
            return
        self._counts[kind] += n
        self._counted(current)
        if self.exhausted() and not self._exhausted_logged:
            self._exhausted_logged = True
            log.warning(
                "account %s: daily call budget spent (%d of %s); reads stop until %s, %d kept for commands",
                self.account,
                self._used(),
                self.limit,
                self._period_end.isoformat(timespec="minutes"),
                self._remaining() or 0,
            )

    @property
    def account_limit(self) -> int | None:
        """The account's whole daily budget (``limit`` is this instance's share of it in a cluster)."""
        return self._whole[0]

    def share(self, part: int, whole: int) -> None:
        """In a cluster each instance serves ``part`` of an account's ``whole`` cars and may spend that part of the
        account's budget: the vendor counts the account's calls, whichever instance makes them (CONTRACT §10)."""
        limit, reserve = self._whole
        if limit is None or whole <= 0:
            return
        fraction = min(1.0, max(0, part) / whole)
        # rounded down, so that the parts never add up to more than the whole (one call at least, for a car served)
        self.limit = max(1 if part > 0 else 0, math.floor(limit * fraction))
        self.reserve = min(self.limit, math.floor(reserve * fraction))

    def unspend(self, kind: str, n: int = 1) -> None:
        """Take back calls counted in advance that the vendor never saw (a read answered from a stream)."""
        self._check_kind(kind)
        current = self._roll()
        n = min(n, self._counts[kind])
        if n > 0:
            self._counts[kind] -= n
            self._counted(current)

    def allows(self, kind: str) -> bool:
        """Reads keep the reserve free for commands; a vendor block stops every call, budget or not."""
        self._check_kind(kind)
        self._roll()
        if self._blocked is not None:
            return False
        remaining = self._remaining()
        if remaining is None:
            return True
        return remaining > self.reserve if kind in READ_KINDS else remaining > 0

    def remaining(self) -> int | None:
        self._roll()
        return self._remaining()

    def exhausted(self) -> bool:
        """True once reads have stopped (remaining <= reserve), so the caller can alert on the change."""
        self._roll()
        remaining = self._remaining()
        return remaining is not None and remaining <= self.reserve

    def resets_at(self) -> datetime:
        """The next local reset time after now."""
        self._roll()
        return self._period_end

    def read_interval(self, vehicles: int, configured: float) -> float:
        """Seconds between read rounds so the reads left last until the reset (never below ``configured``).

        The time left is split into one more gap than there are rounds left, so the last round falls
        one gap before the reset instead of on it (where the new period would get it and today's last
        round would be wasted); the first round of the new day then follows one gap later. A vendor
        block is not considered here: the caller asks ``allows()`` before each call.
        """
        current = self._roll()
        remaining = self._remaining()
        if remaining is None or vehicles <= 0:
            return configured
        until_reset = (_utc(self._period_end) - _utc(current)).total_seconds()
        reads_left = (remaining - self.reserve) / self._read_cost
        if reads_left < 1:
            return until_reset
        return max(configured, until_reset * vehicles / (reads_left + vehicles))

    def read_cost(self, requests: int) -> None:
        """One read just cost the vendor ``requests`` requests: reads are spread by what they really cost."""
        if requests >= 1:
            self._read_cost = 0.7 * self._read_cost + 0.3 * requests

    def vendor_limited(self, until: datetime | None = None) -> None:
        """The vendor refused for its own limit (HTTP 429, code 5091): no calls until ``until`` or the reset."""
        current = self._roll()
        target = until if until is not None else self._period_end
        if target.tzinfo is None:
            target = target.astimezone()
        if _utc(target) <= _utc(current):
            return
        if self._blocked is None or _utc(target) > _utc(self._blocked):
            self._blocked = target
        log.warning(
            "account %s: vendor call limit reached; no calls until %s",
            self.account,
            self._blocked.isoformat(timespec="minutes"),
        )
        self._save()

    def blocked_until(self) -> datetime | None:
        self._roll()
        return self._blocked

    def snapshot(self) -> dict[str, Any]:
        """The retained ``bridge/accounts/<name>/budget`` payload (CONTRACT section 8)."""
        self._roll()
        data: dict[str, Any] = {
            "limit": self.limit,
            "used": self._used(),
            "remaining": self._remaining(),
            "by_kind": dict(self._counts),
            "resets_at": self._period_end.isoformat(timespec="seconds"),
        }
        if self._blocked is not None:
            data["blocked_until"] = self._blocked.isoformat(timespec="seconds")
        return data
