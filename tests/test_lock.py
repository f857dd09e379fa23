"""The dependency locks pin every dependency pyproject.toml declares, at versions it allows, and
the README's two commands and CI install from them (issue 12 item 8)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("requirements.lock", PYPROJECT["dependencies"]),
        ("requirements-test.lock",
         [*PYPROJECT["dependencies"], *PYPROJECT["optional-dependencies"]["test"],
          *PYPROJECT["optional-dependencies"]["hospital"],
          *PYPROJECT["optional-dependencies"]["fleet"], "onnx>=1.15"]),
    ],
)
def test_the_lock_pins_every_declared_dependency_within_its_bounds(lock, requirements):
    pins = _pins(lock)
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} does not pin {name}: run scripts/lock.sh"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {name}=={pins[name]}, outside {requirement.specifier}: run scripts/lock.sh")


def test_both_locks_agree_on_every_version():
    test = _pins("requirements-test.lock")
    assert {k: v for k, v in _pins("requirements.lock").items() if test.get(k) != v} == {}


def test_the_two_commands_and_ci_install_from_the_locks():
    assert "-c requirements.lock ." in (ROOT / "scripts" / "main.sh").read_text()
    assert '-c requirements-test.lock ".[test,hospital,fleet]"' in (ROOT / "scripts" / "test.sh").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "-c requirements-test.lock" in ci and "bash scripts/test.sh" in ci
