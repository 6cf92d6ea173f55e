"""One declaration per command: parsing, discovery and the README's table all come from command_table."""

from __future__ import annotations

from pathlib import Path

from mqttbridge import commands, discovery
from mqttbridge.command_table import COMMANDS, PARAMS, markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_table_is_the_one_the_command_table_makes() -> None:
    assert markdown_table() in README.read_text(encoding="utf-8"), (
        "README.md's command table is out of date; paste mqttbridge.command_table.markdown_table() there"
    )


def test_parsing_and_discovery_read_the_same_table() -> None:
    assert commands.COMMANDS is COMMANDS and discovery.COMMANDS is COMMANDS
    for command in COMMANDS.values():
        assert set(command.params) <= set(PARAMS), command.name
        for word in command.words:  # every plain word it declares is accepted
            if not command.needs_params:
                assert commands.parse_command(command.name, word.encode()).request.action == word
        assert command.entity in ("lock", "button", "toggle", "number", "none")
        assert command.key and command.label and command.noun and command.doc


def test_every_declared_parameter_is_checked_when_parsed() -> None:
    for command in COMMANDS.values():
        for name in command.params:
            payload = f'{{"action": "{(command.words or ("SET",))[0]}", "{name}": {{"junk": 1}}}}'
            try:
                commands.parse_command(command.name, payload.encode())
            except commands.Rejected as exc:
                assert name in str(exc), (command.name, name, str(exc))
            else:
                raise AssertionError(f"{command.name}: {name} accepted an object")
