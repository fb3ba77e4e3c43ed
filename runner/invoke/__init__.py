"""One invocation of one child: start it (`child`), serve it the Runtime API and wait for its
answer, its exit or the deadline (`driver`), and keep what it printed (`output`)."""

from runner.invoke.child import Child, ChildSpec
from runner.invoke.driver import InvocationOutcome, InvocationSpec, judge, run_invocation
from runner.invoke.output import LineSink, OutputCapture, stdout_sink

__all__ = [
    "Child",
    "ChildSpec",
    "InvocationOutcome",
    "InvocationSpec",
    "LineSink",
    "OutputCapture",
    "judge",
    "run_invocation",
    "stdout_sink",
]
