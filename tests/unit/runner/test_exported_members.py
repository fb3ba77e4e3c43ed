"""Every module of the runner says what it offers in `__all__`, and every package re-exports
its public names through its `__init__`'s `__all__`: the lists stay complete and true."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import runner

_FOUND = list(pkgutil.walk_packages(runner.__path__, "runner."))
MODULES = sorted(info.name for info in _FOUND)
PACKAGES = sorted(info.name for info in _FOUND if info.ispkg)


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements run at import, those of a top-level `try` included."""
    for node in body:
        if isinstance(node, ast.Try):
            yield from _top_level([*node.body, *node.orelse, *node.finalbody])
        else:
            yield node


def _defined_publicly(path: Path) -> set[str]:
    """The public names a module binds at its top level itself (not by importing them)."""
    names: set[str] = set()
    for node in _top_level(ast.parse(path.read_text()).body):
        match node:
            case ast.ClassDef(name=name) | ast.FunctionDef(name=name):
                names.add(name)
            case ast.Assign(targets=targets):
                names.update(t.id for t in targets if isinstance(t, ast.Name))
            case ast.AnnAssign(target=ast.Name(id=name)) | ast.TypeAlias(name=ast.Name(id=name)):
                names.add(name)
    # A module that cannot afford `typing`'s import sets the type checkers' flag itself.
    return {name for name in names if not name.startswith("_") and name != "TYPE_CHECKING"}


@pytest.mark.parametrize("name", [m for m in MODULES if m not in PACKAGES])
def test_a_module_lists_exactly_what_it_defines(name: str) -> None:
    module = importlib.import_module(name)

    assert set(module.__all__) == _defined_publicly(Path(inspect.getfile(module)))


@pytest.mark.parametrize("name", PACKAGES)
def test_a_package_exports_every_public_name_it_imports(name: str) -> None:
    package = importlib.import_module(name)
    public = {attr for attr, value in vars(package).items()
              if not attr.startswith("_") and not isinstance(value, types.ModuleType)}

    assert set(package.__all__) == public
    assert all(hasattr(package, attr) for attr in package.__all__)


@pytest.mark.parametrize("name", PACKAGES)
def test_outside_a_package_nothing_imports_its_private_modules(name: str) -> None:
    package_dir = Path(inspect.getfile(importlib.import_module(name))).parent
    private = {f"{name}.{p.stem}" for p in package_dir.glob("_*.py") if p.stem != "__init__"}
    root = Path(runner.__file__).parent
    outside = [p for p in root.rglob("*.py") if package_dir not in p.parents]

    imported = {node.module for p in outside for node in ast.walk(ast.parse(p.read_text()))
                if isinstance(node, ast.ImportFrom) and node.module}

    assert not imported & private
