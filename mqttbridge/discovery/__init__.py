"""Home Assistant MQTT discovery payloads, built from data (``fields.FIELDS`` and ``command_table.COMMANDS``).

Pure functions: they return ``(topic, JSON payload)`` pairs and the caller publishes them retained
with QoS 1, so the rules of ``shared/docs/ha-mqtt-discovery.md`` can be tested without a broker.
Entities read exactly what the bridge publishes (CONTRACT section 3): bare values on ``<root>/<field>``,
``<root>/lock``, ``<root>/location`` and ``<root>/<command>/status``; commands go to ``<root>/<command>/set``.
Full key names are used, not abbreviations, so a ``mosquitto_sub`` reader can follow them.

Its rooms: ``ids`` (topic-safe ids, device identifiers, entity keys of no table row), ``entities`` (what one
vehicle shows in HA, as data), ``payloads`` (the announcements of a vehicle and of the bridge) and ``cleanup``
(taking announcements back: lost entities, gone vehicles, stale configs of an earlier run).
"""

from mqttbridge.command_table import COMMANDS  # reached as discovery.COMMANDS (the table discovery reads)
from mqttbridge.discovery.cleanup import discovery_changes, owned_vin, vehicle_discovery_topics
from mqttbridge.discovery.entities import (
    COMMAND_STATES,
    LOCK_STATES,
    UNLOCK_CODE_FORMAT,
    UNLOCK_CODE_TEMPLATE,
    DiscoveredVehicle,
)
from mqttbridge.discovery.ids import (
    BRIDGE_STATE_KEY,
    CHARGING_KEY,
    LOCATION_KEY,
    bridge_device_id,
    device_id,
    slug,
    status_key,
    topic_id,
)
from mqttbridge.discovery.payloads import ORIGIN_NAME, QOS, SUPPORT_URL, bridge_discovery, vehicle_discovery

__all__ = [
    "BRIDGE_STATE_KEY",
    "CHARGING_KEY",
    "COMMANDS",
    "COMMAND_STATES",
    "LOCATION_KEY",
    "LOCK_STATES",
    "ORIGIN_NAME",
    "QOS",
    "SUPPORT_URL",
    "UNLOCK_CODE_FORMAT",
    "UNLOCK_CODE_TEMPLATE",
    "DiscoveredVehicle",
    "bridge_device_id",
    "bridge_discovery",
    "device_id",
    "discovery_changes",
    "owned_vin",
    "slug",
    "status_key",
    "topic_id",
    "vehicle_discovery",
    "vehicle_discovery_topics",
]
