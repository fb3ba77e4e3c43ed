"""The Lambda handler: validate, run the attempt, return the result. Everything else is wired
once per execution environment, at cold start."""

from __future__ import annotations

import gc

# The cold start makes tens of thousands of objects that live as long as the process, and the
# collector, left on, walks them again and again while they are being made: about 45 ms of a
# 400 ms start. It is off while they are made, and `freeze` then puts them out of its reach, so
# that each task's collections walk only what that task allocated.
gc.disable()
try:
    import os
    from typing import Any

    from aws_lambda_powertools.utilities.typing import LambdaContext

    from runner.observability import logger, metrics
    from runner.pipeline import InvokeContext, Pipeline
    from runner.settings import Settings

    SETTINGS = Settings.from_env()
    PIPELINE = Pipeline(SETTINGS)
finally:
    gc.freeze()
    gc.enable()

__all__ = ["PIPELINE", "SETTINGS", "lambda_handler"]


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    """Run one task attempt; the result is returned even when the task failed."""
    # Lambda sets the trace id anew for each invocation, so it is read here, not in Settings.
    invoke = InvokeContext(remaining_ms=context.get_remaining_time_in_millis,
                           trace_id=os.environ.get("_X_AMZN_TRACE_ID"))
    return PIPELINE.run(event, invoke).model_dump(mode="json")
