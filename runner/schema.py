"""The JSON Schema of the task payload and of the result, for the control plane to validate
against. `python -m runner.schema` rewrites `schemas/`; a test fails when they are stale."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from runner.models import TaskPayload, TaskResult

__all__ = ["SCHEMAS", "main", "render"]

SCHEMAS: dict[str, type[BaseModel]] = {
    "task-payload.schema.json": TaskPayload,
    "task-result.schema.json": TaskResult,
}


def render() -> dict[str, str]:
    """File name → schema text, exactly as committed."""
    rendered = {}
    for name, model in SCHEMAS.items():
        schema = model.model_json_schema(mode="validation" if model is TaskPayload
                                         else "serialization")
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
        rendered[name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return rendered


def main(argv: list[str]) -> int:
    """Write the schemas into the folder given (default `schemas/`)."""
    folder = Path(argv[0] if argv else "schemas")
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (folder / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
