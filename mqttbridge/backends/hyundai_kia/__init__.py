"""Hyundai, Kia and Genesis through the ``hyundai-kia-connect-api`` library (CONTRACT section 7).

``provider`` holds what a configuration needs (it imports no vendor library); ``backend`` and the modules
beside it need the library, installed with the extra ``mqttbridge[hyundai]``.
"""
