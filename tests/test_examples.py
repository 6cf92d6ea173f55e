"""The shipped examples: ``examples/node-red-flow.json`` checked against what the bridge really does.

No broker is needed: the simulator's demo cars, under ``mqttbridge demo``'s names and base topic, are
bridged by the real bridge on an in-memory session that records every publish and hands the bridge the
commands a test sends, as a broker would. The flow's topic filters are matched against those real
topics, and the commands it sends go through the bridge's real command path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.client import topic_matches_sub

from mqttbridge.backends.bmw_legacy.demo import DEMO_NAMES
from mqttbridge.bridge import Bridge
from mqttbridge.commands import COMMANDS, Rejected, parse_command
from mqttbridge.simulator import SimulatorServer, demo_vehicles

from .conftest import FakeClock, account_data, make_config
from .fake_session import FakeSession
from .mqtt_helpers import wait_until

ROOT = Path(__file__).resolve().parents[1]
FLOW = ROOT / "examples" / "node-red-flow.json"
BASE = "car"  # `mqttbridge demo`'s default --base-topic
BRIDGE_STATE = f"{BASE}/bridge/state"

#: Node-RED core nodes the flow may use (no function node, no dashboard, nothing to install)
CORE_TYPES = {"tab", "comment", "mqtt-broker", "mqtt in", "mqtt out", "inject", "debug", "change", "switch", "json"}
FINAL = {"EXECUTED", "NOT_EXECUTED", "TIMED_OUT", "REJECTED", "FAILED"}


class RecordingSession(FakeSession):
    """The in-memory broker session of the tests, delivering only what the bridge subscribed to."""

    def deliver(self, topic: str, payload: str | bytes, **kwargs: Any) -> None:
        """A message from a client such as Node-RED (never retained), as the broker hands it over."""
        assert any(topic_matches_sub(sub, topic) for sub in self.subscriptions), f"the bridge ignores {topic}"
        super().deliver(topic, payload, **kwargs)


class Demo:
    def __init__(self, bridge: Bridge, clock: FakeClock):
        self.bridge = bridge
        self.session: RecordingSession = bridge.session
        self.clock = clock

    def roots(self) -> set[str]:
        info = json.loads(self.session.topics()[f"{BASE}/bridge/info"])
        return {vehicle["root"] for vehicle in info["vehicles"]}

    def status_after(self, mark: int, root: str, command: str, wanted: Callable[[str], bool]) -> str:
        topic = f"{root}/{command}/status"

        def seen() -> str | None:
            status = self.session.topics(mark).get(topic)
            return status.decode() if status is not None and wanted(status.decode()) else None

        return wait_until(seen, what=f"{topic} after the command")

    def run_to_the_end(self, mark: int, root: str, command: str) -> str:
        """The command's first status, then the simulator's clock moved on to its final one."""
        first = self.status_after(mark, root, command, lambda _: True)
        self.clock.advance(60)  # the simulator's executions move on its clock; the bridge checks every second
        final = self.status_after(mark, root, command, lambda status: status in FINAL)
        return f"{first}..{final}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's cars under the demo's names and base topic, bridged as ``mqttbridge demo`` bridges them, on an
    in-memory session and a simulator clock the test moves. Every car has been read and has locked once, so
    its command topics exist too."""
    clock = FakeClock()
    cars = demo_vehicles()
    simulator = SimulatorServer(cars, execution_step=2.0, clock=clock)
    simulator.start()
    vehicles = [
        {"vin": car.vin, "name": name, "allow_unlock": True} for car, name in zip(cars, DEMO_NAMES, strict=True)
    ]
    account = account_data(
        simulator.url,
        name="demo",
        retries=2,
        poll={"interval": 60},
        vehicles=vehicles,
        commands={"poll_interval": 1, "timeout": 60, "refresh_delay": 0},
    )
    config = make_config(tmp_path_factory.mktemp("demo"), [account], mqtt={"base_topic": BASE})
    bridge = Bridge(config, session_factory=RecordingSession)
    bridge.closers.append(simulator.stop)
    run = Demo(bridge, clock)
    bridge.start()
    try:
        roots = [f"{BASE}/{name}" for name in DEMO_NAMES]
        wait_until(lambda: all(f"{root}/state" in run.session.topics() for root in roots), what="every car's state")
        assert run.roots() == set(roots)
        mark = run.session.mark()
        for root in roots:
            run.session.deliver(f"{root}/lock/set", b"LOCK")
        for root in roots:
            assert run.run_to_the_end(mark, root, "lock").endswith("EXECUTED")
        yield run
    finally:
        bridge.stop()


@pytest.fixture(scope="module")
def flow() -> list[dict[str, Any]]:
    nodes = json.loads(FLOW.read_text(encoding="utf-8"))
    assert isinstance(nodes, list) and all(isinstance(node, dict) for node in nodes)
    return nodes


def _of_type(flow: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [node for node in flow if node["type"] == kind]


def _feeding(flow: list[dict[str, Any]], target: dict[str, Any]) -> list[dict[str, Any]]:
    return [node for node in flow if any(target["id"] in port for port in node.get("wires", []))]


def _json_problems(topic_filter: str, published: dict[str, bytes]) -> list[str]:
    """Topics the filter matches whose payload a "parsed JSON object" mqtt-in node cannot turn into an object."""
    problems = []
    for topic, payload in published.items():
        if not topic_matches_sub(topic_filter, topic):
            continue
        try:
            value = json.loads(payload)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            problems.append(f"{topic}: {payload[:40]!r}")
    return problems


def test_the_flow_is_an_export_of_core_nodes_wired_correctly(flow) -> None:
    ids = [node.get("id") for node in flow]
    assert all(isinstance(node_id, str) and node_id for node_id in ids)
    assert len(ids) == len(set(ids)), "node ids must be unique"
    by_id = {node["id"]: node for node in flow}
    assert {node["type"] for node in flow} <= CORE_TYPES
    tabs = {node["id"] for node in _of_type(flow, "tab")}
    assert tabs, "a tab, so that importing makes a flow of its own"
    (broker,) = _of_type(flow, "mqtt-broker")
    assert broker["broker"] == "localhost" and int(broker["port"]) == 1883
    for node in flow:
        if node["type"] in ("tab", "mqtt-broker"):
            continue
        assert node.get("z") in tabs, f"{node['id']} is not on the flow's tab"
        wires = node.get("wires")
        assert isinstance(wires, list) and all(isinstance(port, list) for port in wires), node["id"]
        for port in wires:
            for target in port:
                assert target in by_id, f"{node['id']} is wired to {target}, which is not in the flow"
                assert by_id[target]["type"] not in ("tab", "mqtt-broker", "comment", "inject", "mqtt in")
    for node in _of_type(flow, "mqtt in") + _of_type(flow, "mqtt out"):
        assert node["broker"] == broker["id"], f"{node['id']} does not use the flow's broker"
    assert _of_type(flow, "mqtt in") and _of_type(flow, "mqtt out") and _of_type(flow, "inject")
    # the lock command's progress is shown under a node (its status), not only in the sidebar
    status_shown = [node for node in _of_type(flow, "debug") if node.get("tostatus") is True]
    assert any(
        feeder["type"] == "mqtt in" and feeder["topic"].endswith("/lock/status")
        for node in status_shown
        for feeder in _feeding(flow, node)
    )


def test_the_comment_says_it_uses_the_demo_cars(flow) -> None:
    text = " ".join(f"{node.get('name', '')} {node.get('info', '')}" for node in _of_type(flow, "comment"))
    assert "mqttbridge demo" in text
    for name in DEMO_NAMES:
        assert re.search(rf"(?<![\w/]){re.escape(name)}(?!\w)", text), f"the comment does not name {name}"


def test_subscriptions_miss_bridge_state_and_match_what_the_bridge_publishes(flow, demo) -> None:
    published = demo.session.topics()
    # the pitfall is real: the bridge's own state is a plain word where a car's state is a JSON object
    assert published[BRIDGE_STATE] == b"online"
    assert _json_problems(f"{BASE}/+/state", published) == [f"{BRIDGE_STATE}: b'online'"]
    subscriptions = _of_type(flow, "mqtt in")
    for node in subscriptions:
        topic_filter = node["topic"]
        assert not topic_matches_sub(topic_filter, BRIDGE_STATE), f"{topic_filter} also gets {BRIDGE_STATE}"
        matched = [topic for topic in published if topic_matches_sub(topic_filter, topic)]
        assert matched, f"{topic_filter} matches nothing the bridge publishes for the demo cars"
        if node["datatype"] == "json":
            assert _json_problems(topic_filter, published) == []
    assert any(node["datatype"] == "json" and node["topic"] == f"{BASE}/i3/state" for node in subscriptions)


def test_the_state_summary_reads_fields_the_car_publishes(flow, demo) -> None:
    published = demo.session.topics()
    checked = 0
    for node in _of_type(flow, "change"):
        for feeder in _feeding(flow, node):
            if feeder["type"] != "mqtt in" or feeder["datatype"] != "json":
                continue
            states = [
                json.loads(payload) for topic, payload in published.items() if topic_matches_sub(feeder["topic"], topic)
            ]
            for rule in node["rules"]:
                if rule.get("tot") != "jsonata":
                    continue
                fields = re.findall(r"\bpayload\.(\w+)", rule["to"])
                assert fields, rule["to"]
                for state in states:
                    assert set(fields) <= state.keys(), f"{feeder['topic']} has no {set(fields) - state.keys()}"
                checked += 1
    assert checked, "a change node summarises the car's state"


def test_commands_the_flow_sends_are_accepted_by_the_bridge(flow, demo) -> None:
    roots = demo.roots()
    senders = _of_type(flow, "mqtt out")
    for out in senders:
        root, _, command = out["topic"].rpartition("/set")[0].rpartition("/")
        assert out["topic"] == f"{root}/{command}/set" and command in COMMANDS, f"{out['topic']} is no command topic"
        assert root in roots, f"{root} is not one of the demo's cars ({', '.join(sorted(roots))})"
        assert out.get("retain") != "true", "the bridge never acts on a retained command"
        injects = [node for node in _feeding(flow, out) if node["type"] == "inject"]
        assert injects, f"nothing sends to {out['topic']}"
        for inject in injects:
            assert inject["payloadType"] == "str"
            payload = inject["payload"].encode()
            try:
                parse_command(command, payload)
            except Rejected as exc:
                pytest.fail(f"the bridge refuses {payload!r} on {out['topic']}: {exc}")
            mark = demo.session.mark()
            demo.session.deliver(out["topic"], payload)
            progress = demo.run_to_the_end(mark, root, command)
            assert not progress.startswith("REJECTED") and progress.endswith("EXECUTED"), progress
