"""An account's budget topic in a cluster: the account's calls, whichever instance made them.

Each instance spends only its share of an account's daily budget (``BudgetLedger.share``), and knows only its own
calls. The vendor counts the account's. So each instance tells the others what it spent, per account, in its
retained info (``budgets``), and every instance publishes on ``bridge/accounts/<name>/budget`` the account's total:
its own calls and the latest count of every other instance in the same budget period, the dead ones included (the
vendor counted their calls too). Its own part is under ``instance``, each instance's count under ``instances``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

#: the keys of a ledger snapshot an instance tells the others (``BudgetLedger.snapshot``)
SHARED_KEYS = ("used", "by_kind", "resets_at")


def own_parts(snapshots: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """What this instance's info says of its spending: account -> used, by kind, and when the period ends."""
    return {account: {key: snapshot[key] for key in SHARED_KEYS} for account, snapshot in snapshots.items()}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def parts_of(info: Any) -> dict[str, dict[str, Any]]:
    """Another instance's ``budgets`` from its info, what can be read of it (an older version sends none)."""
    budgets = info.get("budgets") if isinstance(info, dict) else None
    if not isinstance(budgets, dict):
        return {}
    parts: dict[str, dict[str, Any]] = {}
    for account, part in budgets.items():
        if not isinstance(part, dict) or _count(part.get("used")) is None or not isinstance(part.get("resets_at"), str):
            continue
        kinds = part.get("by_kind")
        by_kind = {str(k): n for k, n in kinds.items() if _count(n) is not None} if isinstance(kinds, dict) else {}
        parts[str(account)] = {"used": part["used"], "by_kind": by_kind, "resets_at": part["resets_at"]}
    return parts


class BudgetParts:
    """The latest spending each other instance announced, per account (called from the MQTT dispatcher and read
    by whoever publishes a budget topic: locked)."""

    def __init__(self) -> None:
        self._parts: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def update(self, instance: str, parts: dict[str, dict[str, Any]]) -> set[str]:
        """Keep ``instance``'s parts; the accounts whose count changed (their budget topic is due again)."""
        with self._lock:
            before = self._parts.get(instance, {})
            self._parts[instance] = parts
        return {a for a in before.keys() | parts.keys() if before.get(a) != parts.get(a)}

    def forget(self, instance: str) -> set[str]:
        """Its retained info was deleted (``purge``): nothing is known of its spending any more."""
        with self._lock:
            before = self._parts.pop(instance, {})
        return set(before)

    def view(self, me: str, account: str, own: Mapping[str, Any], account_limit: int | None) -> dict[str, Any]:
        """The account's budget topic: ``own`` (this instance's ledger snapshot) plus the others' parts of the same
        period; ``account_limit`` is the account's whole daily budget (None: no limit)."""
        with self._lock:
            others = {
                instance: parts[account]
                for instance, parts in self._parts.items()
                if instance != me and account in parts and parts[account]["resets_at"] == own["resets_at"]
            }
        counts = {me: own["used"], **{instance: part["used"] for instance, part in others.items()}}
        by_kind = dict(own["by_kind"])
        for part in others.values():
            for kind, n in part["by_kind"].items():
                by_kind[kind] = by_kind.get(kind, 0) + n
        used = sum(counts.values())
        view = dict(own)
        view.update(
            limit=account_limit,
            used=used,
            remaining=None if account_limit is None else max(0, account_limit - used),
            by_kind=by_kind,
            instance={"id": me, "limit": own["limit"], "used": own["used"], "remaining": own["remaining"]},
            instances=dict(sorted(counts.items())),
        )
        return view
