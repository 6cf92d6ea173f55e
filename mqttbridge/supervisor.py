"""The Home Assistant Supervisor's MQTT service (CONTRACT §11): the broker an add-on gets without typing it.

An add-on that declares ``services: [mqtt:need]`` may ask ``GET $SUPERVISOR_API/services/mqtt`` with its
token; the broker app (the official Mosquitto one) registered its host, port and an account for add-ons
there (ha-addon-facts §8). Every failure becomes one line that says which of them it was and what to do,
and never holds the token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import requests

from mqttbridge.errors import MqttBridgeError

log = logging.getLogger(__name__)

#: where an add-on reaches the Supervisor (its internal network's name for it)
DEFAULT_API = "http://supervisor"
#: the Supervisor answers on its own network at once; a slow answer means it is not there
TIMEOUT_S = 10.0
#: said whenever there is no broker to be had: the user's two ways out
NO_BROKER_HINT = (
    "install and start the Mosquitto broker app (Settings > Apps > App store > Mosquitto broker), "
    "or name a broker in the add-on's mqtt options (host, port, username, password)"
)


class SupervisorError(MqttBridgeError):
    """The Supervisor could not give the broker: exit 1 with this one line."""


@dataclass(frozen=True)
class Broker:
    """The MQTT service's ``data`` (ha-addon-facts §8: username and password may be absent)."""

    host: str
    port: int
    ssl: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: the slug of the add-on that provides the service, e.g. ``core_mosquitto`` (``app`` in API v2)
    provider: str | None = None


def mqtt_service(api: str, token: str | None, *, timeout: float = TIMEOUT_S) -> Broker:
    """Ask the Supervisor for the broker; raise ``SupervisorError`` saying which problem it was."""
    if not token:
        raise SupervisorError(
            "SUPERVISOR_TOKEN is not set, so the Supervisor cannot be asked for the broker: run this as a "
            "Home Assistant add-on, or name a broker in the mqtt options"
        )
    url = f"{api.rstrip('/')}/services/mqtt"
    try:
        response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    except requests.RequestException as exc:  # its text may quote the URL, never the header: still, say less
        raise SupervisorError(
            f"the Supervisor API at {api} is unreachable ({type(exc).__name__}); this runs only as a Home "
            "Assistant add-on, unless the mqtt options name a broker"
        ) from None
    body = _json(response)
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    if response.status_code == 200 and isinstance(body, dict) and body.get("result") == "ok":
        return _broker(body.get("data"))
    if response.status_code == 401 or (response.status_code == 403 and not message):
        raise SupervisorError(
            f"the Supervisor refused the add-on's token (HTTP {response.status_code}); restart the add-on, "
            "which gives it a new one"
        )
    if response.status_code == 403:  # "No access to mqtt service!": config.yaml lacks services: mqtt
        raise SupervisorError(
            f"the Supervisor denies this add-on the MQTT service ({message}); its config.yaml must list "
            "services: [mqtt:need]"
        )
    if response.status_code == 400 and "not enabled" in message.lower():
        raise SupervisorError(f"the Supervisor has no MQTT service ({message}): {NO_BROKER_HINT}")
    if response.status_code == 400 and message:  # "System is not ready with state: ..."
        raise SupervisorError(f"the Supervisor cannot give the MQTT service yet ({message}); start the add-on again")
    raise SupervisorError(f"the Supervisor answered {url} with HTTP {response.status_code}, not the MQTT service")


def _json(response: requests.Response) -> Any:
    """The envelope, or None: the 401/403 of a refused token is plain text (``403: Forbidden``)."""
    try:
        return response.json()
    except ValueError:
        return None


def _broker(data: object) -> Broker:
    """The service's ``data``, checked: ``port`` may come as a string (the API documentation's example)."""
    if not isinstance(data, dict):
        raise SupervisorError("the Supervisor's MQTT service answer has no data; restart the broker app")
    host, port = data.get("host"), data.get("port")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if not isinstance(host, str) or not host or isinstance(port, bool) or not isinstance(port, int):
        raise SupervisorError("the Supervisor's MQTT service has no usable host and port; restart the broker app")
    username, password = data.get("username"), data.get("password")
    return Broker(
        host=host,
        port=port,
        ssl=data.get("ssl") is True,
        username=username if isinstance(username, str) and username else None,
        password=password if isinstance(password, str) and password else None,
        provider=str(data.get("addon") or data.get("app") or "") or None,
    )
