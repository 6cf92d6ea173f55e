"""Commands every 0.3 s while instances are killed, restarted, frozen and woken: is any command sent twice?

Not part of the suite (random, about 70 s): ``python -m tests.cluster_churn [SECONDS]``. Three daemons on a private
Mosquitto, the simulator on the real clock (an execution takes 4 steps of 0.3 s). It prints how many commands were
sent, how many reached the vendor (``executeService`` calls) and with how many distinct vendor event ids, which
request ids were sent more than once (must be none), and what became of the rest.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from mqttbridge.simulator import SimulatorServer, demo_vehicles

from .cluster_helpers import BrokerAddress, Instances, settled
from .mqtt_helpers import Mosquitto, Observer, wait_until
from .restart_helpers import BASE, NAMES, vendor_requests

IDS = ("node-a", "node-b", "node-c")
FINAL = ("EXECUTED", "NOT_EXECUTED", "TIMED_OUT", "FAILED", "REJECTED")


def main(seconds: float = 45.0) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="churn"))
    broker = Mosquitto(tmp)
    broker.start()
    cars = demo_vehicles()
    vendor = SimulatorServer(cars, execution_step=0.3)
    vendor.start()
    vendor.cars = cars  # type: ignore[attr-defined]
    group = Instances(tmp, BrokerAddress("127.0.0.1", broker.port), vendor, IDS, takeover_s=5)
    obs = Observer(broker.port)
    roots = [f"{BASE}/{name}" for name in NAMES]
    plan = {0.22: ("kill", "node-a"), 0.40: ("start", "node-a"), 0.58: ("stop", "node-b"), 0.76: ("cont", "node-b")}
    sent: list[str] = []
    try:
        group.start()
        wait_until(lambda: settled(obs, IDS, [c.vin for c in cars]), 60, "every car served")
        start = time.monotonic()
        done: set[float] = set()
        while (elapsed := time.monotonic() - start) < seconds:
            for at, (what, who) in plan.items():
                if elapsed >= at * seconds and at not in done:
                    done.add(at)
                    print(f"{elapsed:5.1f} s: {what} {who}", flush=True)
                    if what == "kill":
                        group.kill(who)
                    elif what == "start":
                        group.daemons[who].start()
                    else:
                        group.send(who, signal.SIGSTOP if what == "stop" else signal.SIGCONT)
            request_id = f"c{len(sent) + 1}"
            root = random.choice(roots)
            if random.random() < 0.5:
                payload = {"action": random.choice(["LOCK", "UNLOCK"]), "request_id": request_id}
                obs.publish(f"{root}/lock/set", json.dumps(payload))
            else:
                obs.publish(f"{root}/flash_lights/set", json.dumps({"count": 1, "request_id": request_id}))
            sent.append(request_id)
            time.sleep(0.3)
        time.sleep(20)  # every takeover done, every execution ended
        records: dict[str, list[dict]] = defaultdict(list)
        for msg in obs.messages:
            if msg.topic.endswith("/execution") and msg.payload:
                record = json.loads(msg.payload)
                records[record["request_id"]].append(record)
        event_ids = {rid: {r["event_id"] for r in rs if r["event_id"]} for rid, rs in records.items()}
        twice = {rid: ids for rid, ids in event_ids.items() if len(ids) > 1}
        calls = len(vendor_requests(vendor, "executeService"))
        ends = Counter("+".join(sorted({r["status"] for r in rs if r["status"] in FINAL})) for rs in records.values())
        errors = Counter(r["error"] for rs in records.values() for r in rs if r.get("error"))
        events = [json.loads(m.payload) for m in obs.messages if m.topic == f"{BASE}/bridge/event"]
        refused = [e for e in events if e.get("event") == "command_rejected"]
        told = {e.get("request_id") for e in refused if "handed over" in str(e.get("error"))}
        busy = {e.get("request_id") for e in refused if "handed over" not in str(e.get("error"))}
        unanswered = [rid for rid in sent if rid not in records and rid not in busy]
        print(
            f"{len(sent)} commands; {calls} executeService calls with {sum(map(len, event_ids.values()))} distinct "
            f"event ids; sent twice: {twice or 'none'}"
        )
        print(f"ends: {dict(ends)}; errors: {dict(errors)}")
        print(f"refused as an identical command was still running (the double-tap rule): {len(busy)}")
        print(
            f"no record: {len(unanswered)} ({len([r for r in unanswered if r in told])} refused on bridge/event "
            f"while their car was being handed over, {len([r for r in unanswered if r not in told])} unanswered "
            "while their owner's death was not yet certain)"
        )
        return 1 if twice or calls != sum(map(len, event_ids.values())) else 0
    finally:
        obs.close()
        group.close()
        vendor.stop()
        broker.stop()


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 45.0))
