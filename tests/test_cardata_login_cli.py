"""``mqttbridge login`` for BMW CarData on a terminal (CONTRACT §1, §9): it prints the link and the code,
returns once the user approved it, and a daemon then finds the tokens in ``state_dir``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mqttbridge.simulator.cardata import CarDataSimulator

from .mqtt_helpers import ROOT

pytestmark = pytest.mark.slow


def test_login_prints_the_code_and_returns_once_it_is_approved(tmp_path: Path) -> None:
    with CarDataSimulator(stream=False) as sim:
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "state_dir": str(tmp_path / "state"),
                    "accounts": [sim.account("bmw", "2b0c7d4e-cli-test")],
                }
            )
        )
        config.chmod(0o600)
        proc = subprocess.Popen(
            [sys.executable, "-m", "mqttbridge", "login", "-c", str(config), "bmw"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        try:
            assert proc.stdout is not None
            seen = []
            for line in proc.stdout:  # until the line that says what to do
                seen.append(line)
                found = re.search(r"open (\S+) and enter the code (\S+)", line)
                if found:
                    break
            else:
                raise AssertionError("no code was printed:\n" + "".join(seen))
            link, code = found.groups()
            assert link.startswith(sim.url) and code in sim.pending_user_codes()
            assert sim.approve(code)
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, "".join(seen) + out
        assert "logged in" in out
        tokens = list((tmp_path / "state").rglob("*.json"))
        assert tokens, "the tokens were not kept in state_dir"
        text = "".join(p.read_text() for p in tokens)
        assert "refresh_token" in text or "refresh" in text
        # what a daemon does next: it finds the tokens and lists the cars without a new login
        listed = subprocess.run(
            [sys.executable, "-m", "mqttbridge", "vehicles", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert listed.returncode == 0, listed.stderr
        assert "refresh(PRESS)" in listed.stdout and len(sim.pending_user_codes()) == 0
