"""docs/contract.md says what the code does: every error type with its `retryable`, the reserved
environment names and the Node options a task may set."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner import errors
from runner.models import ALLOWED_NODE_OPTIONS, RESERVED_ENV_NAMES, RESERVED_ENV_PREFIXES

CONTRACT = (Path(__file__).resolve().parents[2] / "docs" / "contract.md").read_text()


def section(anchor: str) -> str:
    """The text of the section whose heading carries `anchor`, up to the next heading."""
    return re.split(r"\n#+ ", CONTRACT.split(f'<a id="{anchor}"></a>', 1)[1], maxsplit=1)[0]


def documented_error_types() -> dict[str, str]:
    """type → its `retryable` cell, from the error types table."""
    rows = re.findall(r"^\| `([\w.]+)` \| .* \| ([^|]+) \|$", section("error-types"), re.MULTILINE)
    return {name: retryable.strip() for name, retryable in rows}


def coded_error_types() -> dict[str, type[errors.RunnerError]]:
    """type → the class that names it (the base, never raised, and the classes that only group
    others are left out)."""
    classes: list[type[errors.RunnerError]] = [getattr(errors, name) for name in errors.__all__]
    return {cls.error_type: cls for cls in classes
            if "error_type" in vars(cls) and cls is not errors.RunnerError}


def test_the_table_lists_exactly_the_types_the_code_has() -> None:
    assert set(documented_error_types()) == set(coded_error_types())


@pytest.mark.parametrize("error_type", sorted(coded_error_types()))
def test_each_types_retryable_is_the_codes(error_type: str) -> None:
    cell = documented_error_types()[error_type]
    if error_type == errors.QueryFailedError.error_type:  # decided per failure
        assert cell.startswith("yes when")
        assert "no for" in cell
        return
    cls = coded_error_types()[error_type]
    assert cell == ("yes" if cls.retryable else "no")


def test_the_reserved_names_are_the_codes() -> None:
    text = section("reserved-env")
    exact = set(re.findall(r"`([A-Z_]+)`", text.split("- prefixes:")[0]))
    prefixes = set(re.findall(r"`([A-Z_]+_)`", text.split("- prefixes:")[1]))
    assert exact - {"NODE_OPTIONS"} == set(RESERVED_ENV_NAMES)
    assert prefixes == set(RESERVED_ENV_PREFIXES)


def test_the_node_options_are_the_codes() -> None:
    assert set(re.findall(r"^\| `(--[\w-]+)` \|", section("node-options"), re.MULTILINE)) == \
        set(ALLOWED_NODE_OPTIONS)
