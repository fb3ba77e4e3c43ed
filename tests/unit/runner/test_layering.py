"""The runner's imports run one way: no module, and no package, imports anything that imports
it back (docs/architecture.md draws the order)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import runner

ROOT = Path(runner.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Each runner module → the runner modules it imports (at any depth of its code)."""
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("runner"):
                assert node.module is not None
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("runner"))
        graph[_module_name(path)] = targets
    return {name: {t for t in targets if t in graph and t != name}
            for name, targets in graph.items()}


def _unit(module: str) -> str:
    """A module's place in the layering: its package below `runner`, or itself at the top."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_module_imports_itself_back() -> None:
    graph = _imports()
    # A package's __init__ re-exports its modules; only imports between modules count here.
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}

    try:
        tuple(TopologicalSorter(edges).static_order())
    except CycleError as e:
        raise AssertionError(f"import cycle: {' -> '.join(e.args[1])}") from None


def test_no_package_imports_another_that_imports_it_back() -> None:
    units: dict[str, set[str]] = {}
    for module, targets in _imports().items():
        units.setdefault(_unit(module), set()).update(
            _unit(t) for t in targets if _unit(t) != _unit(module))

    try:
        order = list(TopologicalSorter(units).static_order())
    except CycleError as e:
        raise AssertionError(f"package cycle: {' -> '.join(e.args[1])}") from None
    assert order.index("runner.runtime_api") < order.index("runner.invoke") < \
        order.index("runner.runtimes") < order.index("runner.pipeline") < order.index("runner.app")
