"""An in-process emulation of the Lambda Runtime API (2018-06-01): one child, one invocation.

`state` holds the protocol (a transition table that refuses what it does not allow),
`server` the HTTP side (one method per endpoint, one renderer), `function_error` the parsing of
what runtimes post as errors, and `_http` the HTTP/1.1 itself (h11, with every size a client
controls bounded). docs/runtime-api.md describes the behaviour.
"""

from runner.runtime_api.function_error import parse_function_error
from runner.runtime_api.server import RuntimeApiServer
from runner.runtime_api.state import (
    Answer,
    InvalidResponseMode,
    Invocation,
    InvocationState,
    LateAnswer,
    Oversized,
    Phase,
    PostedError,
    Response,
)

__all__ = [
    "Answer",
    "InvalidResponseMode",
    "Invocation",
    "InvocationState",
    "LateAnswer",
    "Oversized",
    "Phase",
    "PostedError",
    "Response",
    "RuntimeApiServer",
    "parse_function_error",
]
