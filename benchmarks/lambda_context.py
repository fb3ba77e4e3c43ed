"""A Lambda context object for calling the handler outside Lambda (what Powertools reads)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


@dataclass
class Context:
    """The parts of Lambda's context object the handler and Powertools use."""

    timeout_ms: int
    function_name: str = "udf-runner"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:udf-runner"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/udf-runner"
    log_stream_name: str = "bench"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds before the function would time out."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))
