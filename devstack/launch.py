"""`udf-runner`'s entry point: the embedded S3 is started first, when the command will start a
local stack, and only then is the rest of the command imported.

Starting moto's process takes about a second (mostly its imports), and the command's own
imports (the runner, pydantic, the stack's services) about half of that. Started first, the
child's start and the parent's imports overlap instead of adding up.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from devstack.s3_server import EmbeddedS3

__all__ = ["main"]

#: The commands that start a local stack in process when none is configured (`local_runner`).
_STACK_COMMANDS = frozenset({"invoke", "run-task", "serve"})
#: Set when a stack is configured (`StackAccess.from_environ` reads the same variable).
_CONFIGURED = "UDF_DEVSTACK_ISSUER_URL"


def main(argv: Sequence[str] | None = None) -> int:
    """Run `udf-runner ARGS...` (`devstack.cli.main`), with the embedded S3 already starting
    when the command will need it."""
    args = list(sys.argv[1:] if argv is None else argv)
    s3 = EmbeddedS3.spawn() if _starts_a_stack(args) else None
    try:
        from devstack.cli import main as run  # noqa: PLC0415 - after the spawn, on purpose

        return run(args, s3=s3)
    finally:
        if s3 is not None:
            s3.close()  # a no-op once the stack has stopped it; else the command never used it


def _starts_a_stack(args: list[str]) -> bool:
    """Whether the command will start a stack: one of `_STACK_COMMANDS`, none configured,
    and not only asking for help."""
    return (bool(args) and args[0] in _STACK_COMMANDS and not os.environ.get(_CONFIGURED)
            and not {"-h", "--help"} & set(args))
