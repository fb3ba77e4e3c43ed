"""runner/requirements.txt (what `sam build` installs) pins exactly pyproject's dependencies."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def requirement_lines(text: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def test_function_requirements_equal_project_dependencies() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]["dependencies"]
    function = requirement_lines((ROOT / "runner" / "requirements.txt").read_text())
    assert sorted(function) == sorted(project)


def test_every_requirement_is_pinned() -> None:
    function = requirement_lines((ROOT / "runner" / "requirements.txt").read_text())
    assert function
    assert all("==" in line for line in function), function
