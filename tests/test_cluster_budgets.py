"""An account's budget topic in a cluster adds up every instance's calls (the vendor counts the account's calls,
whichever instance made them); each instance's own share stays under ``instance``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mqttbridge.cluster.budgets import BudgetParts, own_parts, parts_of

from .conftest import FakeClock, Sim
from .test_cluster import Node

PERIOD = "2026-12-01T00:00:00+00:00"


def snapshot(used: int, limit: int | None = 20, resets_at: str = PERIOD) -> dict:
    return {
        "limit": limit,
        "used": used,
        "remaining": None if limit is None else max(0, limit - used),
        "by_kind": {"status_read": used, "command": 0},
        "resets_at": resets_at,
    }


def test_the_account_topic_adds_the_other_instances_calls_of_the_same_period() -> None:
    parts = BudgetParts()
    assert parts.update(
        "node-b", {"bmw": {"used": 7, "by_kind": {"status_read": 6, "command": 1}, "resets_at": PERIOD}}
    )
    parts.update("node-c", {"bmw": {"used": 3, "by_kind": {"status_read": 3}, "resets_at": PERIOD}})
    parts.update(
        "node-d", {"bmw": {"used": 9, "by_kind": {"status_read": 9}, "resets_at": "2026-11-30T00:00:00+00:00"}}
    )
    view = parts.view("node-a", "bmw", snapshot(5), account_limit=40)
    assert view["used"] == 15 and view["limit"] == 40 and view["remaining"] == 25  # node-d's count is yesterday's
    assert view["by_kind"] == {"status_read": 14, "command": 1}
    assert view["instances"] == {"node-a": 5, "node-b": 7, "node-c": 3}
    assert view["instance"] == {"id": "node-a", "limit": 20, "used": 5, "remaining": 15}
    assert view["resets_at"] == PERIOD


def test_without_a_limit_nothing_remains_to_count_and_spent_more_than_the_limit_is_none_left() -> None:
    parts = BudgetParts()
    parts.update("node-b", {"bmw": {"used": 30, "by_kind": {}, "resets_at": PERIOD}})
    assert parts.view("node-a", "bmw", snapshot(2, limit=None), account_limit=None)["remaining"] is None
    assert parts.view("node-a", "bmw", snapshot(15), account_limit=40)["remaining"] == 0


def test_a_changed_count_makes_the_account_due_and_a_forgotten_instance_counts_no_more() -> None:
    parts = BudgetParts()
    first = {"bmw": {"used": 1, "by_kind": {}, "resets_at": PERIOD}}
    assert parts.update("node-b", first) == {"bmw"}
    assert parts.update("node-b", first) == set()  # the same heartbeat again: nothing to publish
    assert parts.update("node-b", {"bmw": {"used": 2, "by_kind": {}, "resets_at": PERIOD}}) == {"bmw"}
    assert parts.forget("node-b") == {"bmw"}
    assert parts.view("node-a", "bmw", snapshot(4), account_limit=40)["used"] == 4


@pytest.mark.parametrize(
    "info",
    [
        None,
        "junk",
        {"vins": []},  # an instance of an older version
        {"budgets": "junk"},
        {"budgets": {"bmw": "junk"}},
        {"budgets": {"bmw": {"used": -1, "resets_at": PERIOD}}},
        {"budgets": {"bmw": {"used": True, "resets_at": PERIOD}}},
        {"budgets": {"bmw": {"used": 3}}},
    ],
)
def test_an_unreadable_part_is_left_out(info) -> None:
    assert parts_of(info) == {}


def test_a_readable_part_keeps_only_whole_counts() -> None:
    info = {"budgets": {"bmw": {"used": 3, "by_kind": {"status_read": 3, "x": "y"}, "resets_at": PERIOD, "z": 1}}}
    assert parts_of(info) == {"bmw": {"used": 3, "by_kind": {"status_read": 3}, "resets_at": PERIOD}}
    assert own_parts({"bmw": snapshot(3)}) == {
        "bmw": {"used": 3, "by_kind": snapshot(3)["by_kind"], "resets_at": PERIOD}
    }


def test_a_bridge_announces_its_calls_and_publishes_the_accounts_total(tmp_path: Path, sim: Sim) -> None:
    node = Node(tmp_path, sim, FakeClock())
    bridge, session = node.bridge, node.session
    bridge.start()
    try:
        runtime = bridge.accounts[0]
        assert runtime.listed.wait(20)  # listing the vehicles was a call
        node.echo()
        bridge.cluster.publish_info()  # type: ignore[union-attr]  # what its heartbeat does every takeover_s / 4
        own = runtime.ledger.snapshot()
        assert own["used"] >= 1
        assert node.info()["budgets"] == {"bmw": {k: own[k] for k in ("used", "by_kind", "resets_at")}}

        # node-b announces 6 calls of this period, node-c 4 of another
        for instance, used, period in (("node-b", 6, own["resets_at"]), ("node-c", 4, "2000-01-01T00:00:00+00:00")):
            part = {"used": used, "by_kind": {"status_read": used}, "resets_at": period}
            info = {"vins": [], "budgets": {"bmw": part}}
            session.deliver(f"car/bridge/instances/{instance}/info", json.dumps(info), retain=True)
        runtime.budget_out.flush()
        topic = json.loads(session.retained()["car/bridge/accounts/bmw/budget"])
        own = runtime.ledger.snapshot()
        assert topic["used"] == own["used"] + 6 and topic["limit"] == 40
        assert topic["remaining"] == 40 - own["used"] - 6
        assert topic["instances"] == {"node-a": own["used"], "node-b": 6}
        assert topic["instance"] == {"id": "node-a", **{k: own[k] for k in ("limit", "used", "remaining")}}
    finally:
        bridge.stop()
