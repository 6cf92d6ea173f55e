from __future__ import annotations

from mqttbridge.cli import main

raise SystemExit(main())
