"""paho's client as the MQTT session uses it, and the guard around its callbacks.

The subclass remembers why the last connection attempt failed (``connect_error_text`` says it with what to
check) and tells the back-pressure about every acknowledged message paho drops. The guard keeps exceptions out
of paho's network thread and marks that thread, where a publish must never wait (``on_network_thread``). Kept
apart from the session (``mqtt``) so that the back-pressure (``backpressure``) can ask that without importing it.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

if TYPE_CHECKING:
    from mqttbridge.config import MqttConfig

log = logging.getLogger(__name__)

#: marks paho's network thread while it runs one of our callbacks: a publish there must never wait, since
#: only that thread reads the acknowledgements that make room
_network = threading.local()


def guarded(name: str, func: Callable[..., None]) -> Callable[..., None]:
    """Wrap a paho callback so that nothing escapes into paho's network thread."""

    def callback(*args: Any) -> None:
        outer = getattr(_network, "inside", False)  # paho may log (a callback) from inside another callback
        _network.inside = True
        try:
            func(*args)
        except Exception:  # an escaping exception would end the network thread
            log.exception("error in the MQTT %s callback (ignored)", name)
        finally:
            _network.inside = outer

    return callback


def on_network_thread() -> bool:
    """True inside one of paho's callbacks (its network thread)."""
    return bool(getattr(_network, "inside", False))


class PahoClient(paho.Client):
    """paho's client, remembering why the last connection attempt failed (``on_connect_fail`` is not told),
    and telling ``on_acknowledged`` whenever it dropped an acknowledged message from its queue."""

    last_connect_error: OSError | None = None
    #: for the back-pressure, which must not depend on ``on_publish`` (whoever uses the client may set that);
    #: told the payload's size
    on_acknowledged: Callable[[int], None] | None = None

    def _do_on_publish(self, mid: int, *args: Any) -> MQTTErrorCode:
        """paho's own step after an acknowledgement, which drops the message (private: MqttSession checks that it
        exists); paho holds its queue's lock here."""
        message = self._out_messages.get(mid)
        size = len(message.payload) if message is not None else 0
        result: MQTTErrorCode = super()._do_on_publish(mid, *args)
        hook = self.on_acknowledged
        if hook is not None:
            try:
                hook(size)
            except Exception:  # an escaping exception would end the network thread
                log.exception("error in the MQTT acknowledgement hook (ignored)")
        return result

    def reconnect(self) -> MQTTErrorCode:
        try:
            result = super().reconnect()
        except OSError as exc:
            self.last_connect_error = exc
            raise
        self.last_connect_error = None
        return result


def connect_error_text(exc: OSError | None) -> str:
    """Why a connection attempt failed, with what to check (never a secret: none is in these errors)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        if "mismatch" in detail:
            return (
                f"TLS: the broker's certificate does not match the host name ({detail}); "
                f"set mqtt.host to a name in the certificate (mqtt.tls.insecure: true skips this check)"
            )
        return (
            f"TLS: the broker's certificate was refused ({detail}); mqtt.tls.ca_certs must hold the CA that signed it"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc}); check mqtt.tls and the broker's TLS listener"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    if exc is not None:
        return exc.strerror or str(exc) or type(exc).__name__
    return "no details"


def use_credentials_and_tls(client: paho.Client, mqtt: MqttConfig) -> None:
    """The configuration's user name, password and TLS settings on a paho client: the bridge's session and the
    short-lived clients (``purge``, the demo's clean-up) log in alike."""
    if mqtt.username:
        client.username_pw_set(mqtt.username, mqtt.password)
    if mqtt.tls is not None:
        client.tls_set(
            ca_certs=mqtt.tls.ca_certs,
            certfile=mqtt.tls.certfile,
            keyfile=mqtt.tls.keyfile,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        if mqtt.tls.insecure:
            log.warning(
                "mqtt.tls.insecure is true: the broker's host name is NOT checked against its "
                "certificate (which must still be signed by a trusted CA)"
            )
            client.tls_insecure_set(True)
