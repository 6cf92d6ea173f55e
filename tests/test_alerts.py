"""Alerts: both wire formats, the rate limit, and that broken targets never hurt the caller."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from mqttbridge import logsetup
from mqttbridge.alerts import ALERT_KINDS, Notifier, NotifyTarget
from mqttbridge.simulator.ports import free_port

from .conftest import FakeClock

TOKEN = "s3cr3t-token-%22abc%22"
WAIT = 10.0  # generous upper bound for event waits; never a sleep
HANDLER_MAX = 60.0  # a blocked handler's own safety net; teardown always releases it first


class Recorder:
    """A loopback HTTP server that records each POST and answers as the test says."""

    def __init__(self, status: int = 200, body: bytes = b'{"success": true}', block: bool = False):
        self.status = status
        self.body = body
        self.block = block
        self.release = threading.Event()
        self.entered = threading.Event()
        self.requests: list[dict] = []
        self.cond = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if recorder.block:
                    recorder.entered.set()
                    recorder.release.wait(HANDLER_MAX)
                with recorder.cond:
                    recorder.requests.append(
                        {"path": self.path, "content_type": self.headers.get("Content-Type"), "body": raw}
                    )
                    recorder.cond.notify_all()
                try:
                    self.send_response(recorder.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(recorder.body)))
                    self.end_headers()
                    self.wfile.write(recorder.body)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token={TOKEN}"

    def wait_for(self, count: int) -> list[dict]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.requests) >= count, WAIT), self.requests
            return list(self.requests)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers() -> Iterator[list[Recorder]]:
    created: list[Recorder] = []
    yield created
    for recorder in created:
        recorder.close()


@pytest.fixture
def make_server(servers: list[Recorder]):
    def make(**kwargs) -> Recorder:
        recorder = Recorder(**kwargs)
        servers.append(recorder)
        return recorder

    return make


@pytest.fixture
def notifiers() -> Iterator[list[Notifier]]:
    created: list[Notifier] = []
    yield created
    for notifier in created:
        notifier.stop(timeout=WAIT)


@pytest.fixture
def make_notifier(notifiers: list[Notifier]):
    def make(targets: list[NotifyTarget], **kwargs) -> Notifier:
        notifier = Notifier(targets, **kwargs)
        notifiers.append(notifier)
        return notifier

    return make


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/hook?token={TOKEN}"


def test_synology_chat_format(make_server, make_notifier):
    server = make_server()
    notifier = make_notifier([NotifyTarget("synology_chat", server.url)])
    notifier.start()

    assert notifier.alert("auth_failed", "bmw", "login refused:\nwrong password", {"status": 401})
    assert notifier.wait_idle(WAIT)

    [request] = server.wait_for(1)
    assert request["path"] == f"/hook?token={TOKEN}"
    assert request["content_type"] == "application/x-www-form-urlencoded"
    form = parse_qs(request["body"].decode())
    assert list(form) == ["payload"]
    assert json.loads(form["payload"][0]) == {"text": "[mqttbridge] auth_failed bmw: login refused: wrong password"}
    assert (notifier.sent, notifier.failures, notifier.dropped) == (1, 0, 0)


def test_webhook_format(make_server, make_notifier):
    server = make_server()
    notifier = make_notifier([NotifyTarget("webhook", server.url)])
    notifier.start()

    assert notifier.alert("command_failed", "kia", "lock ended FAILED", {"command": "lock", "status": "FAILED"})
    assert notifier.wait_idle(WAIT)

    [request] = server.wait_for(1)
    assert request["content_type"] == "application/json"
    body = json.loads(request["body"])
    stamp = body.pop("time")
    assert body == {
        "source": "mqttbridge",
        "kind": "command_failed",
        "account": "kia",
        "message": "lock ended FAILED",
        "details": {"command": "lock", "status": "FAILED"},
    }
    assert datetime.fromisoformat(stamp).utcoffset() is not None
    assert notifier.sent == 1


def test_rate_limit_per_kind_and_account(make_server, make_notifier):
    server = make_server()
    clock = FakeClock()
    notifier = make_notifier([NotifyTarget("webhook", server.url)], interval=3600.0, clock=clock)
    notifier.start()

    assert notifier.alert("auth_failed", "bmw", "first")
    assert not notifier.alert("auth_failed", "bmw", "second, inside the window")
    assert notifier.alert("auth_failed", "kia", "another account")
    assert notifier.alert("budget_exhausted", "bmw", "another kind")
    clock.advance(3599.0)
    assert not notifier.alert("auth_failed", "bmw", "still inside the window")
    clock.advance(1.0)
    assert notifier.alert("auth_failed", "bmw", "window over")
    assert notifier.wait_idle(WAIT)

    messages = [json.loads(r["body"])["message"] for r in server.wait_for(4)]
    assert messages == ["first", "another account", "another kind", "window over"]
    assert notifier.dropped == 2
    assert notifier.sent == 4


def test_dead_and_failing_targets_are_harmless(make_server, make_notifier, caplog):
    caplog.set_level(logging.DEBUG, logger="mqttbridge.alerts")
    failing = make_server(status=500)
    good = make_server()
    dead_url = closed_port_url()
    notifier = make_notifier(
        [
            NotifyTarget("webhook", dead_url),
            NotifyTarget("synology_chat", failing.url),
            NotifyTarget("webhook", good.url),
        ],
        timeout=5.0,
    )
    notifier.start()

    assert notifier.alert("account_failing", "bmw", "five failures in a row")
    assert notifier.wait_idle(WAIT)

    assert json.loads(good.wait_for(1)[0]["body"])["account"] == "bmw"
    assert len(failing.wait_for(1)) == 1
    assert notifier.failures == 2
    assert notifier.sent == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("notify target 0 (webhook)" in w for w in warnings), warnings
    assert any("notify target 1 (synology_chat)" in w and "HTTP 500" in w for w in warnings), warnings
    for url in (dead_url, failing.url, good.url):
        assert url not in caplog.text
    assert TOKEN not in caplog.text

    # the worker survived: a later alert still goes out
    assert notifier.alert("account_failing", "kia", "also failing")
    assert notifier.wait_idle(WAIT)
    assert len(good.wait_for(2)) == 2
    assert notifier.failures == 4


def test_synology_refusal_in_a_200_answer_counts_as_failure(make_server, make_notifier, caplog):
    caplog.set_level(logging.WARNING, logger="mqttbridge.alerts")
    server = make_server(body=b'{"error": {"code": 404, "errors": "invalid token"}, "success": false}')
    notifier = make_notifier([NotifyTarget("synology_chat", server.url)])
    notifier.start()

    assert notifier.alert("budget_exhausted", "kia", "daily budget spent")
    assert notifier.wait_idle(WAIT)

    assert len(server.wait_for(1)) == 1
    assert (notifier.sent, notifier.failures) == (0, 1)
    assert "error code 404" in caplog.text
    assert TOKEN not in caplog.text


def test_alert_returns_while_a_delivery_is_stuck(make_server, make_notifier):
    slow = make_server(block=True)
    notifier = make_notifier([NotifyTarget("webhook", slow.url)], timeout=HANDLER_MAX)
    notifier.start()
    returned = threading.Event()
    results: list[bool] = []

    def caller() -> None:
        results.append(notifier.alert("auth_failed", "bmw", "login refused"))
        results.append(notifier.alert("command_failed", "bmw", "lock FAILED"))
        returned.set()

    threading.Thread(target=caller, daemon=True).start()
    assert slow.entered.wait(WAIT)  # the worker now waits on a handler only the test can release
    assert returned.wait(WAIT), "alert() blocked on a stuck delivery"
    assert results == [True, True]
    assert not slow.requests  # the handler has not answered: alert() returned while it was blocked
    assert not notifier.wait_idle(0)

    slow.release.set()
    assert notifier.wait_idle(WAIT)
    assert [json.loads(r["body"])["kind"] for r in slow.wait_for(2)] == ["auth_failed", "command_failed"]
    assert (notifier.sent, notifier.failures) == (2, 0)


def test_slow_target_times_out_and_the_other_target_still_receives(make_server, make_notifier, caplog):
    caplog.set_level(logging.DEBUG, logger="mqttbridge.alerts")
    slow = make_server(block=True)
    good = make_server()
    notifier = make_notifier([NotifyTarget("webhook", slow.url), NotifyTarget("synology_chat", good.url)], timeout=0.3)
    notifier.start()

    assert notifier.alert("auth_failed", "bmw", "first")
    assert notifier.alert("command_failed", "bmw", "second")

    texts = [json.loads(parse_qs(r["body"].decode())["payload"][0])["text"] for r in good.wait_for(2)]
    assert texts == ["[mqttbridge] auth_failed bmw: first", "[mqttbridge] command_failed bmw: second"]
    assert notifier.wait_idle(WAIT)
    assert not slow.release.is_set()  # the slow target never answered: both gave up on the timeout
    assert notifier.failures == 2
    assert notifier.sent == 2
    assert any("notify target 0 (webhook)" in r.getMessage() and "timed out" in r.getMessage() for r in caplog.records)
    assert slow.url not in caplog.text
    assert TOKEN not in caplog.text


def test_queue_full_drops_with_a_warning(make_server, make_notifier, caplog):
    caplog.set_level(logging.WARNING, logger="mqttbridge.alerts")
    server = make_server()
    notifier = make_notifier([NotifyTarget("webhook", server.url)], queue_size=2)

    assert notifier.alert("auth_failed", "a", "1")
    assert notifier.alert("auth_failed", "b", "2")
    assert not notifier.alert("auth_failed", "c", "3")
    assert notifier.dropped == 1
    assert "alert queue full" in caplog.text

    # a drop for a full queue does not use up the rate-limit window of its key
    notifier.start()
    assert notifier.wait_idle(WAIT)
    assert notifier.alert("auth_failed", "c", "3 again")
    assert notifier.wait_idle(WAIT)
    assert [json.loads(r["body"])["account"] for r in server.wait_for(3)] == ["a", "b", "c"]


def test_alert_before_start_is_queued_and_sent_on_start(make_server, make_notifier):
    server = make_server()
    notifier = make_notifier([NotifyTarget("webhook", server.url)])

    assert notifier.alert("auth_failed", "bmw", "early")
    assert not notifier.wait_idle(0.05)  # queued, nothing delivers it yet
    assert not server.requests

    notifier.start()
    assert notifier.wait_idle(WAIT)
    assert json.loads(server.wait_for(1)[0]["body"])["message"] == "early"


def test_no_targets_is_harmless(make_notifier):
    notifier = make_notifier([])
    notifier.start()
    assert notifier._thread is None
    assert not notifier.alert("auth_failed", "bmw", "nobody listens")
    assert notifier.wait_idle(0)
    assert (notifier.sent, notifier.dropped, notifier.failures) == (0, 0, 0)
    notifier.stop()


def test_target_urls_are_registered_as_secrets(make_notifier):
    url = "https://chat.example.com/webapi/entry.cgi?api=SYNO.Chat.External&method=incoming&version=2&token=tok-9f8e7d"
    make_notifier([NotifyTarget("synology_chat", url)])
    assert logsetup.redact(f"posting to {url}") == f"posting to {logsetup.MASK}"
    # urllib3's debug lines carry only the request target, which holds the token too
    assert "tok-9f8e7d" not in logsetup.redact(
        "POST /webapi/entry.cgi?api=SYNO.Chat.External&method=incoming&version=2&token=tok-9f8e7d HTTP/1.1"
    )


def test_unknown_kind_and_type_are_rejected(make_notifier):
    with pytest.raises(ValueError, match="unknown type"):
        Notifier([NotifyTarget("telegram", "https://example.invalid/x")])
    notifier = make_notifier([NotifyTarget("webhook", "http://127.0.0.1:9/x")])
    with pytest.raises(ValueError, match="unknown alert kind"):
        notifier.alert("coffee_empty", "bmw", "x")
    assert "auth_failed" in ALERT_KINDS
