"""BMW CarData (CONTRACT §9): ``provider`` (the spec), ``auth`` (device-code login and tokens), ``rest``
(the 50-a-day API and its container), ``stream`` (the one MQTT stream), ``mapping`` and ``fields`` (telematic
keys to published fields), ``backend`` (ties them together), ``replay`` and ``fingerprint``."""
