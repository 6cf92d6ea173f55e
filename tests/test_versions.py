"""The Hyundai/Kia library's version range and the Python that ships it (issue 9).

pyproject.toml's `hyundai` extra declares, per Python, the library versions that were tested. These tests
fail when the installed library is outside the range that applies here (CI runs them on 3.11 with 4.23.0
and on 3.12+ with the newest release), and check that the Docker image ships a Python >= 3.12 with the
extra, so the image gets a current library.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = "hyundai-kia-connect-api"


def _pyproject() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]


def _library_requirements(requirements: list[str]) -> list[Requirement]:
    parsed = [Requirement(r) for r in requirements]
    return [r for r in parsed if canonicalize_name(r.name) == LIBRARY]


def _applies(requirement: Requirement, python: str | None = None) -> bool:
    """Whether the requirement's marker holds on this Python (or on `python`, "3.12"), with the extra."""
    env: dict[str, str] = dict(default_environment())
    env["extra"] = "hyundai"
    if python is not None:
        env["python_version"] = python
        env["python_full_version"] = f"{python}.0"
    return requirement.marker is None or requirement.marker.evaluate(env)


def _range_for(python: str | None = None) -> SpecifierSet:
    """The declared range of the library for this Python (or `python`); exactly one must apply."""
    requirements = _library_requirements(_pyproject()["optional-dependencies"]["hyundai"])
    matching = [r for r in requirements if _applies(r, python)]
    where = f"Python {python}" if python else f"this Python ({sys.version.split()[0]})"
    assert len(matching) == 1, f"the hyundai extra should give exactly one range for {where}: {matching}"
    return matching[0].specifier


def test_installed_library_is_in_the_declared_range():
    try:
        installed = importlib.metadata.version(LIBRARY)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{LIBRARY} is not installed (pip install -e '.[hyundai]')")
    declared = _range_for()
    assert declared.contains(Version(installed), prereleases=True), (
        f"{LIBRARY} {installed} is installed, but pyproject.toml's hyundai extra declares {declared} for "
        f"Python {sys.version_info[0]}.{sys.version_info[1]}: test the new release, then widen the range "
        f"(or install one inside it)"
    )


def test_installed_metadata_declares_the_same_range():
    """A stale install (pyproject.toml changed since `pip install -e`) would pick versions by an old range."""
    try:
        installed = importlib.metadata.requires("mqttbridge") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("mqttbridge is not installed as a distribution")
    ours = {str(r.specifier) for r in _library_requirements(installed) if _applies(r)}
    assert ours == {str(_range_for())}, (
        f"the installed mqttbridge declares {LIBRARY}{ours} but pyproject.toml says {_range_for()}: "
        f"run pip install -e '.[test,hyundai]' again"
    )


@pytest.mark.parametrize(
    ("python", "allowed", "refused"),
    [
        # 3.11: pip finds nothing newer than 4.23.0 there; 4.15.0 and older are known to be wrong
        ("3.11", ["4.15.1", "4.23.0"], ["4.15.0", "4.24.0"]),
        # 3.12+: the releases that need 3.12, up to the newest tested (4.41.x)
        ("3.12", ["4.24.0", "4.41.2", "4.41.4"], ["4.23.0", "4.42.0", "5.0.0"]),
        ("3.13", ["4.41.2", "4.41.4"], ["4.23.0", "4.42.0"]),
        ("3.14", ["4.41.4"], ["4.42.0"]),
    ],
)
def test_declared_ranges_per_python(python: str, allowed: list[str], refused: list[str]):
    declared = _range_for(python)
    for version in allowed:
        assert declared.contains(version), f"Python {python}: {LIBRARY} {version} should be allowed by {declared}"
    for version in refused:
        assert not declared.contains(version), f"Python {python}: {LIBRARY} {version} should be refused by {declared}"


# --- the Dockerfile (docker cannot build here: it is read) -------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if current and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return instructions


def _image_python() -> tuple[int, int]:
    args: dict[str, str] = {}
    for keyword, rest in _dockerfile_instructions():
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args.setdefault(name.strip(), value.strip())
    image = args.get("PYTHON_IMAGE", "")
    match = re.fullmatch(r"python:(\d+)\.(\d+)-slim(?:-[a-z]+)?", image)
    assert match, f"ARG PYTHON_IMAGE should be an official slim Python with its minor version pinned, got {image!r}"
    return int(match[1]), int(match[2])


def test_docker_image_python_is_3_12_or_newer():
    python = _image_python()
    assert python >= (3, 12), f"the image's Python {python[0]}.{python[1]} gets only {LIBRARY} 4.23.0"
    requires = SpecifierSet(_pyproject()["requires-python"])
    assert requires.contains(f"{python[0]}.{python[1]}.0"), f"requires-python {requires} excludes the image's Python"
    # on that Python the extra asks for the current releases, not the 3.11 fallback
    assert not _range_for(f"{python[0]}.{python[1]}").contains("4.23.0")


def test_docker_image_installs_the_hyundai_extra_and_keeps_its_safeguards():
    instructions = _dockerfile_instructions()
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert froms and all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms), f"every stage on PYTHON_IMAGE: {froms}"

    extras = next(rest for keyword, rest in instructions if keyword == "ARG" and rest.startswith("EXTRAS="))
    assert "hyundai" in [e.strip() for e in extras.partition("=")[2].split(",")], extras
    runs = [rest for keyword, rest in instructions if keyword == "RUN"]
    assert any('"mqttbridge[${EXTRAS}]"' in run for run in runs), "the final stage should install mqttbridge[${EXTRAS}]"

    # what the image did before the move to 3.12+: a non-root user, the state volume, the health check
    user = [rest for keyword, rest in instructions if keyword == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root"), user
    assert ("VOLUME", "/data") in instructions
    assert any(keyword == "ENV" and "STATE_DIRECTORY=/data" in rest for keyword, rest in instructions)
    healthcheck = [rest for keyword, rest in instructions if keyword == "HEALTHCHECK"]
    assert healthcheck and "mqttbridge health" in healthcheck[-1], healthcheck
    assert ("ENTRYPOINT", '["mqttbridge"]') in instructions


def test_deploy_docs_name_the_image_python():
    major, minor = _image_python()
    text = (ROOT / "docs" / "deploy.md").read_text()
    assert f"python:{major}.{minor}-slim" in text, "docs/deploy.md should say which Python the image has"
    assert "python:3.11-slim" not in text
