"""Names and ids that every part of discovery must compute alike: topic-safe node and object ids, slugs for
entity ids, the device identifiers, and the keys of the entities that come from no table row. Announcing and
taking announcements back both derive their topics from these.
"""

from __future__ import annotations

import re
import unicodedata

#: HA drops a discovery topic whose node or object id has other characters (rulebook section 1)
_TOPIC_ID = re.compile(r"[^a-zA-Z0-9_-]")
_SLUG = re.compile(r"[^a-z0-9]+")


#: entities that do not come from a field or a command row
CHARGING_KEY = "charging"
LOCATION_KEY = "location"
BRIDGE_STATE_KEY = "connection_state"
_STATUS_SUFFIX = "_command"


def topic_id(text: str) -> str:
    """``text`` usable as a node/object id in a discovery topic: ``[a-zA-Z0-9_-]`` only."""
    return _TOPIC_ID.sub("_", text) or "_"


def slug(text: str) -> str:
    """A lower-case ``[a-z0-9_]`` slug for entity ids; accents are dropped, not turned into ``_``."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _SLUG.sub("_", plain.lower()).strip("_")


def device_id(vin: str) -> str:
    """The vehicle's device identifier, also the node id of its discovery topics."""
    return f"mqttbridge_{topic_id(vin)}"


def bridge_device_id(base_topic: str) -> str:
    """The bridge's device identifier; every vehicle names it as ``via_device``."""
    return f"mqttbridge_bridge_{topic_id(base_topic)}"


def status_key(command: str) -> str:
    """The key of a command's last-execution sensor (``lock_command``; never a field name)."""
    return f"{command}{_STATUS_SUFFIX}"
