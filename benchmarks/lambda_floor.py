"""The cold-start floor: the least a Python Lambda handler can be. The runtime client imports it
from the benchmarks folder (on the children's PYTHONPATH), as it imports the runner's handler
from the task root."""

from typing import Any


def lambda_handler(event: Any, context: Any) -> Any:
    """Return the event."""
    return event
