"""Load and validate the YAML configuration (contract §2).

The schema is a data table (``SCHEMA``, ``PROVIDERS``) walked by one generic validator, so a new key
or a new backend is one table entry, not new checking code. Every problem is collected and reported
as ``<key path>: <message>`` so a user fixes the whole file in one go, and no message ever echoes a
secret's value.

Where things are: ``model`` (the dataclasses the daemon reads), ``schema`` (the table and its computed
defaults), ``values`` (the scalar converters), ``walker`` (the validator), ``load`` (``load_config``,
``parse_config``). This package re-exports what the rest of the code imports, so ``mqttbridge.config`` is
the one import path.
"""

from mqttbridge.config.load import load_config, parse_config
from mqttbridge.config.model import (
    MAX_TOPIC_LENGTH,
    AccountConfig,
    ClusterConfig,
    CommandsConfig,
    Config,
    HomeAssistantConfig,
    MetricsConfig,
    MqttConfig,
    NotifyConfig,
    PollConfig,
    TlsConfig,
    UnlockLockoutConfig,
    VehicleConfig,
    default_vehicle_name,
    valid_topic,
)
from mqttbridge.config.schema import (
    PROVIDERS,
    REQUIRED,
    SCHEMA,
    DefaultFrom,
    Key,
    _default_state_dir,
    account_schema,
)

__all__ = [
    "MAX_TOPIC_LENGTH",
    "PROVIDERS",
    "REQUIRED",
    "SCHEMA",
    "AccountConfig",
    "ClusterConfig",
    "CommandsConfig",
    "Config",
    "DefaultFrom",
    "HomeAssistantConfig",
    "Key",
    "MetricsConfig",
    "MqttConfig",
    "NotifyConfig",
    "PollConfig",
    "TlsConfig",
    "UnlockLockoutConfig",
    "VehicleConfig",
    "_default_state_dir",  # the daemon's default state_dir, for ``mqttbridge health`` without a config
    "account_schema",
    "default_vehicle_name",
    "load_config",
    "parse_config",
    "valid_topic",
]
