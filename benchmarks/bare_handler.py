"""The cold import floor: a bare Lambda handler on the libraries the runner's handler is built
on (Powertools' Logger, Metrics and Tracer, and a pydantic model), doing nothing else."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

logger = Logger()
metrics = Metrics(namespace="Bench")
tracer = Tracer()


class Task(BaseModel):
    """A payload, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: str
    event: Any = None


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    """Validate the payload and return it."""
    return Task.model_validate(event).model_dump(mode="json")
