"""The stream on a real Mosquitto with its dynamic-security plugin; the simulator is the dynsec admin.

Per account the broker knows a client (username = GCID, password = the newest id_token) with a role
that may subscribe only to ``<gcid>/+`` and ``<gcid>/<VIN>``. The broker's own log, published on
``$SYS/broker/log/N``, tells which sessions are live, so a second session of a GCID can be kicked:
the older one is taken over by client ID (the admin connects once with that ID), as BMW drops it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ...errors import MqttBridgeError
from ..ports import free_port
from .certs import make_server_cert

logger = logging.getLogger(__name__)

__all__ = ["Broker", "StreamError", "find_plugin"]

PLUGIN_NAME = "mosquitto_dynamic_security.so"
PLUGIN_PATHS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib/arm-linux-gnueabihf",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/opt/homebrew/lib",
)
CONTROL = "$CONTROL/dynamic-security/v1"
ADMIN_ROLE = "cardata-sim-admin"
_NEW = re.compile(r"New client connected from \S+ as (?P<cid>\S+) \(.*u'(?P<user>[^']*)'\)")
_GONE = re.compile(
    r"Client (?P<a>\S+) (?:disconnected|closed its connection|been disconnected|has exceeded timeout)"
    r"|Socket error on client (?P<b>\S+),"
)


class StreamError(MqttBridgeError):
    """The private broker could not be started or controlled."""


def find_plugin(explicit: str | None = None) -> Path:
    """The dynamic-security plugin: ``--stream-plugin``, a few known places, then ``ldconfig -p``."""
    if explicit:
        if not Path(explicit).is_file():
            raise StreamError(f"--stream-plugin {explicit}: no such file")
        return Path(explicit)
    for directory in PLUGIN_PATHS:
        if (Path(directory) / PLUGIN_NAME).is_file():
            return Path(directory) / PLUGIN_NAME
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=10, check=False).stdout
    except OSError:
        listing = ""
    for line in listing.splitlines():
        if PLUGIN_NAME in line and "=>" in line:
            return Path(line.split("=>", 1)[1].strip())
    raise StreamError(f"Mosquitto's {PLUGIN_NAME} was not found; install mosquitto or pass --stream-plugin PATH")


def _hashed(password: str) -> dict[str, Any]:
    """A dynsec password entry (PBKDF2-SHA512), for the admin client written before the start."""
    salt, iterations = secrets.token_bytes(12), 101
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": iterations,
    }


class Broker:
    """A private ``mosquitto`` with one stream listener and one admin listener on loopback."""

    def __init__(
        self, workdir: Path, host: str = "127.0.0.1", port: int = 0, tls: bool = False, plugin: str | None = None
    ):
        binary = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.isfile(p)), None
        )
        if binary is None:
            raise StreamError("the stream needs a mosquitto broker (2.0 or newer): install mosquitto")
        self.binary: str = binary
        self.plugin = find_plugin(plugin)
        self.workdir, self.host, self.tls = workdir, host, tls
        self.port = port or free_port(host)
        self.admin_port = free_port()
        self.ca_file: Path | None = None
        self._admin_user, self._admin_password = ADMIN_ROLE, secrets.token_urlsafe(24)
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: mqtt.Client | None = None
        self._lock = threading.Condition()
        self._responses: dict[str, dict[str, Any]] = {}
        self._sessions: dict[str, str] = {}  # client id -> username, from the broker's log
        self.accounts: set[str] = set()

    # -- life cycle --------------------------------------------------------------------------------

    def _config(self) -> str:
        lines = [
            "per_listener_settings false",
            "allow_anonymous false",
            "persistence false",
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",  # as root, stay root: the files are ours
            f"plugin {self.plugin}",
            f"plugin_opt_config_file {self.workdir / 'dynsec.json'}",
            "log_dest topic",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"listener {self.admin_port} 127.0.0.1",
            f"listener {self.port} {self.host}",
        ]
        if self.tls:
            ca, cert, key = make_server_cert(self.workdir)
            self.ca_file = ca
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}", "tls_version tlsv1.3"]
        return "\n".join(lines) + "\n"

    def _dynsec(self) -> dict[str, Any]:
        acls = [
            {"acltype": "publishClientSend", "topic": "#", "allow": True},
            {"acltype": "publishClientReceive", "topic": "#", "allow": True},
            {"acltype": "subscribePattern", "topic": "#", "allow": True},
        ] + [
            {"acltype": kind, "topic": topic, "allow": True}
            for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")
            for topic in ("$CONTROL/#", "$SYS/#")
        ]
        admin = {"username": self._admin_user, "roles": [{"rolename": ADMIN_ROLE}], **_hashed(self._admin_password)}
        return {
            "defaultACLAccess": {
                "publishClientSend": False,
                "publishClientReceive": True,
                "subscribe": False,
                "unsubscribe": True,
            },
            "clients": [admin],
            "groups": [],
            "roles": [{"rolename": ADMIN_ROLE, "acls": acls}],
        }

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "dynsec.json").write_text(json.dumps(self._dynsec()))
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self._config())
        log = self.workdir / "mosquitto.stderr"
        with log.open("ab") as out:
            self._proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=out, stderr=out)
        deadline = time.monotonic() + 10
        while not self._accepts():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log.read_text(errors="replace")[-1500:]
                raise StreamError(f"mosquitto did not start on port {self.port}: {tail}")
            time.sleep(0.05)
        self._client = self._admin_client()
        logger.info("stream broker (mosquitto pid %d) on %s:%d", self._proc.pid, self.host, self.port)

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.admin_port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def _admin_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cardata-sim-admin-{secrets.token_hex(4)}")
        client.username_pw_set(self._admin_user, self._admin_password)
        ready = threading.Event()

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if not reason.is_failure:
                c.subscribe([(f"{CONTROL}/response", 0), ("$SYS/broker/log/N", 0)])
            ready.set()

        client.on_connect = on_connect
        client.on_subscribe = lambda *_a: ready.set()
        client.on_message = self._on_message
        client.connect("127.0.0.1", self.admin_port)
        client.loop_start()
        if not ready.wait(10):
            raise StreamError("the simulator could not connect to its own broker as admin")
        return client

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    # -- the broker's log: who is connected ---------------------------------------------------------

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == f"{CONTROL}/response":
            for answer in json.loads(message.payload).get("responses", []):
                with self._lock:
                    self._responses[str(answer.get("correlationData"))] = answer
                    self._lock.notify_all()
            return
        line = message.payload.decode("utf-8", "replace").split(": ", 1)[-1]
        new = _NEW.search(line)
        if new:
            self._connected(new["cid"], new["user"])
            return
        gone = _GONE.search(line)
        if gone:
            with self._lock:
                self._sessions.pop(gone["a"] or gone["b"], None)
                self._lock.notify_all()

    def _connected(self, client_id: str, user: str) -> None:
        with self._lock:
            self._sessions[client_id] = user
            older = [cid for cid, u in self._sessions.items() if u == user and cid != client_id]
            self._lock.notify_all()
        if user in self.accounts and older:
            logger.info("second stream session for %s…: dropping the older one(s)", user[:8])
            threading.Thread(target=self._take_over, args=(older,), daemon=True).start()

    def connections(self) -> dict[str, int]:
        """Live stream sessions per GCID."""
        with self._lock:
            counts: dict[str, int] = {}
            for user in self._sessions.values():
                if user in self.accounts:
                    counts[user] = counts.get(user, 0) + 1
            return counts

    def wait_connections(self, gcid: str, count: int, timeout: float = 10.0) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: self.connections().get(gcid, 0) == count, timeout)

    def _take_over(self, client_ids: list[str]) -> None:
        """End exactly these sessions: connect once as admin with each client ID (session takeover)."""
        for client_id in client_ids:
            with self._lock:
                self._sessions.pop(client_id, None)
            taker = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
            taker.username_pw_set(self._admin_user, self._admin_password)
            done = threading.Event()
            taker.on_connect = lambda *_a, _done=done: _done.set()  # type: ignore[misc]
            try:
                taker.connect("127.0.0.1", self.admin_port)
                taker.loop_start()
                done.wait(5)
                taker.disconnect()
                taker.loop_stop()
            except OSError:
                logger.warning("could not drop stream session %s", client_id, exc_info=True)

    def drop(self, gcid: str | None = None) -> int:
        """Drop the live sessions of ``gcid`` (or of every account), as a second client would."""
        with self._lock:
            victims = [cid for cid, u in self._sessions.items() if u in self.accounts and gcid in (None, u)]
        self._take_over(victims)
        return len(victims)

    # -- dynsec commands ---------------------------------------------------------------------------

    def _command(self, *commands: dict[str, Any]) -> None:
        if self._client is None:
            raise StreamError("the stream broker is not running")
        ids = [secrets.token_hex(6) for _ in commands]
        batch = [{**command, "correlationData": cid} for command, cid in zip(commands, ids, strict=True)]
        self._client.publish(CONTROL, json.dumps({"commands": batch}), qos=1)
        with self._lock:
            if not self._lock.wait_for(lambda: all(i in self._responses for i in ids), 10):
                raise StreamError(f"the broker did not answer {[c['command'] for c in commands]}")
            answers = [self._responses.pop(i) for i in ids]
        for answer in answers:
            if answer.get("error"):
                raise StreamError(f"dynsec {answer.get('command')}: {answer['error']}")

    def set_password(self, gcid: str, password: str, vins: list[str]) -> None:
        """Make ``password`` the account's only one; a new account gets its role first.

        Mosquitto 2.0 kicks the username's sessions on ``setClientPassword``: a new id_token ends the
        open stream session at once, where BMW would keep it until the old token expires.
        """
        if gcid not in self.accounts:
            acls = [{"acltype": "subscribeLiteral", "topic": f"{gcid}/{t}", "allow": True} for t in ["+", *vins]]
            role = f"account-{gcid}"
            self._command(
                {"command": "createRole", "rolename": role, "acls": acls},
                {"command": "createClient", "username": gcid, "password": password, "roles": [{"rolename": role}]},
            )
            self.accounts.add(gcid)
            return
        self._command({"command": "setClientPassword", "username": gcid, "password": password})

    def lock_out(self, gcid: str) -> None:
        """The id_token expired: kick the sessions and refuse the old password."""
        if gcid in self.accounts:
            self.set_password(gcid, secrets.token_urlsafe(32), [])

    def publish(self, topic: str, payload: bytes) -> None:
        if self._client is None:
            raise StreamError("the stream broker is not running")
        self._client.publish(topic, payload, qos=0, retain=False)
