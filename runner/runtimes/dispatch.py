"""Which runtime a task's `bundle.runtime` names, and how its child is started: a table, so
that `provided` and `nodejs` share only `environment` and never import each other."""

from __future__ import annotations

from collections.abc import Callable

from runner.containment.workdir import WorkDirs
from runner.invoke.child import ChildSpec
from runner.runtimes import nodejs, provided
from runner.runtimes.environment import TaskEnvironment
from runner.settings import Settings

__all__ = ["RUNTIMES", "ChildSpecBuilder", "child_spec"]

ChildSpecBuilder = Callable[[WorkDirs, str | None, TaskEnvironment, Settings], ChildSpec]

#: The payload's `bundle.runtime` → how to start that runtime's child.
RUNTIMES: dict[str, ChildSpecBuilder] = {
    "provided": provided.child_spec,
    "nodejs": nodejs.child_spec,
}


def child_spec(runtime: str, dirs: WorkDirs, handler: str | None, task: TaskEnvironment,
               settings: Settings) -> ChildSpec:
    """How to start the child for `runtime`; raises before anything starts when the bundle has
    no entrypoint the runtime could use."""
    try:
        build = RUNTIMES[runtime]
    except KeyError:
        raise ValueError(f"unknown runtime {runtime!r}") from None
    return build(dirs, handler, task, settings)
