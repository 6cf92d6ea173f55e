"""Writing the fingerprint's folder: the anonymised answers, and the index and README beside them.

Each answer becomes one file (JSON pretty-printed, anything else as text) below the output folder;
``index.json`` says which account, provider and request each file answered and how to replay it, and
``README.txt`` tells the user what was replaced before they attach the folder to a bug report.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mqttbridge import __version__
from mqttbridge.fingerprint.anonymise import FIXED_LATITUDE, FIXED_LONGITUDE, Anonymiser
from mqttbridge.fingerprint.recorder import Capture

log = logging.getLogger(__name__)


def _slug(text: str) -> str:
    """A safe file or folder name (VIN aliases keep their capitals)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "answer"


@dataclass
class Result:
    """What a run wrote, for the summary and the index."""

    out: Path
    files: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [a for a in self.accounts if a.get("error")]


class Writer:
    """Anonymises answers and writes them below ``out``; never overwrites what it wrote itself."""

    def __init__(self, out: Path, anonymiser: Anonymiser):
        self.out = out
        self.anonymiser = anonymiser
        self._written: set[Path] = set()

    def _target(self, parts: tuple[str, ...], suffix: str) -> Path:
        clean = [_slug(self.anonymiser.text(part)) for part in parts]
        path = self.out.joinpath(*clean).with_suffix(suffix)
        stem, n = path.stem, 1
        while path in self._written:
            n += 1
            path = path.with_name(f"{stem}-{n}{suffix}")
        self._written.add(path)
        return path

    def write(self, capture: Capture, account: Any) -> dict[str, Any]:
        exchange = capture.exchange
        for secret in exchange.secrets:
            self.anonymiser.add_secret(secret)
        body = exchange.json()
        if body is not None:
            text = json.dumps(self.anonymiser.clean(body), indent=2, ensure_ascii=False) + "\n"
            path = self._target(capture.parts, ".json")
        else:
            text = self.anonymiser.text(exchange.content.decode("utf-8", errors="replace"))
            path = self._target(capture.parts, ".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        relative = path.relative_to(self.out).as_posix()
        entry: dict[str, Any] = {
            "file": relative,
            "account": account.name,
            "provider": account.provider,
            "kind": capture.kind,
            "vehicle": self.anonymiser.text(capture.vehicle) if capture.vehicle else None,
            "request": f"{exchange.method} {self.anonymiser.text(exchange.path)}",
            "http_status": exchange.status,
        }
        if capture.replay is not None and body is not None:
            options = "".join(f" --{name} {value}" for name, value in capture.replay.items() if value)
            entry["replay"] = f"mqttbridge replay --provider {account.provider}{options} {relative}"
            entry.update({name: value for name, value in capture.replay.items() if value})
        log.debug("wrote %s", relative)
        return entry


def write_index(result: Result, anonymiser: Anonymiser) -> None:
    index = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "mqttbridge": __version__,
        "libraries": _library_versions(),
        "anonymised": {
            "positions": [FIXED_LATITUDE, FIXED_LONGITUDE],
            "replaced": "VINs, vehicle and account ids, names, number plates, e-mail addresses, addresses, tokens",
        },
        "accounts": result.accounts,
        "files": result.files,
    }
    text = json.dumps(anonymiser.clean(index), indent=2, ensure_ascii=False) + "\n"
    (result.out / "index.json").write_text(text, encoding="utf-8")
    (result.out / "README.txt").write_text(anonymiser.text(_readme(result)), encoding="utf-8")


def _library_versions() -> dict[str, str]:
    import importlib.metadata

    versions = {}
    for name in ("hyundai_kia_connect_api", "requests"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _readme(result: Result) -> str:
    lines = [
        f"mqttbridge {__version__} fingerprint, {datetime.now(UTC).isoformat(timespec='seconds')}",
        "",
        "Raw answers of the vendors' servers, one file per answer, anonymised: VINs, vehicle and account",
        "ids, names, number plates, e-mail addresses, addresses and tokens are replaced (the same value by",
        f"the same alias in every file), every position is moved to {FIXED_LATITUDE}, {FIXED_LONGITUDE}.",
        "Please look through the files before you attach them (zip the folder) to a bug report.",
        "",
        "index.json lists each file with the account, provider, region, brand and request it answered.",
        "Each status answer replays without any network, printing what `mqttbridge status` prints:",
        "",
    ]
    replays = [entry["replay"] for entry in result.files if entry.get("replay")]
    lines.extend(f"  {command}" for command in replays)
    if not replays:
        lines.append("  (no status answer was captured)")
    if result.failed:
        lines += ["", "Accounts that failed:"]
        lines.extend(f"  {a['account']}: {a['error']}" for a in result.failed)
    lines += ["", "(run the commands in this folder)", ""]
    return "\n".join(lines)
