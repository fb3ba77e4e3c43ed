"""What the child is: the bundle's runtime, started from a command line and an environment built
from nothing (`environment`), for a custom runtime (`provided`) or a Node handler (`nodejs`)."""

from runner.runtimes.dispatch import RUNTIMES, ChildSpecBuilder, child_spec
from runner.runtimes.environment import TaskEnvironment, function_arn

__all__ = ["RUNTIMES", "ChildSpecBuilder", "TaskEnvironment", "child_spec", "function_arn"]
