"""`udf-runner`: run a bundle locally through the same code path as the deployed function."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from runner import launch, result
from runner.errors import RunnerError
from runner.invocation import InvocationSpec, run_invocation
from runner.models import TaskResult
from runner.settings import Settings, SettingsError
from runner.workdir import attempt_dir

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: The Node.js layer `make layer` builds, used unless UDF_RUNNER_NODE_LAYER names another.
LOCAL_NODE_LAYER = Path(__file__).resolve().parents[1] / "layers" / "nodejs" / "build"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="udf-runner", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    invoke = commands.add_parser("invoke", help="run a bundle zip or folder for one invocation")
    invoke.add_argument("path", type=Path, help="bundle zip or folder")
    invoke.add_argument("--runtime", choices=["provided", "nodejs"], default="provided")
    invoke.add_argument("--handler", default=None, help="Lambda handler (file.export for nodejs)")
    invoke.add_argument("--event", default=None,
                        help="JSON event file, or - for standard input (default: {})")
    invoke.add_argument("--timeout-ms", type=int, default=30_000)
    invoke.add_argument("--json", action="store_true", help="print only the result JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `udf-runner` console command."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env({"UDF_RUNNER_NODE_LAYER": str(LOCAL_NODE_LAYER), **os.environ})
        event = _read_event(args.event)
    except (SettingsError, OSError, ValueError) as e:
        parser.exit(EXIT_USAGE, f"udf-runner: {e}\n")
    if not args.path.exists():
        parser.exit(EXIT_USAGE, f"udf-runner: {args.path} does not exist\n")
    outcome = _invoke(args.path, runtime=args.runtime, handler=args.handler, event=event,
                      timeout_ms=args.timeout_ms, settings=settings)
    _print(outcome, as_json=args.json)
    return EXIT_OK if outcome.status == "succeeded" else EXIT_FAILED


def _read_event(source: str | None) -> bytes:
    if source is None:
        return b"{}"
    data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    json.loads(data)  # the event must be JSON, as it would be for Lambda
    return data


def _invoke(path: Path, *, runtime: str, handler: str | None, event: bytes, timeout_ms: int,
            settings: Settings) -> TaskResult:
    task = launch.TaskEnvironment(task_id="local", attempt=1, token="")
    with attempt_dir(settings.work_root, "local") as dirs:
        try:
            shutil.copytree(path, dirs.task_root, symlinks=True, dirs_exist_ok=True)
            spec = InvocationSpec(
                child=launch.child_spec(runtime, dirs, handler, task, settings),
                event=event, timeout_ms=timeout_ms,
                function_arn=launch.function_arn(settings), label="local/1",
            )
            outcome = run_invocation(spec, settings, sink=_stderr_sink)
        except RunnerError as e:
            return result.build(task_id="local", attempt=1, error=e)
    return result.build(task_id="local", attempt=1, response=outcome.response,
                        error=outcome.error, timings_ms=outcome.timings_ms, logs=outcome.logs)


def _stderr_sink(line: str) -> None:
    sys.stderr.write(line + "\n")


def _print(outcome: TaskResult, *, as_json: bool) -> None:
    text = outcome.model_dump_json(indent=None if as_json else 2)
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
