"""`udf-runner`: run bundles and task payloads locally, through the deployed function's own code.

    udf-runner invoke PATH [--runtime provided|nodejs] [--handler H] [--event FILE|-] ...
    udf-runner run-task PAYLOAD.json|-
    udf-runner devstack [--base-port N]
    udf-runner serve [--port N] [--max-environments N] [--max-task-timeout-seconds S]
    udf-runner token PAYLOAD.json|-
    udf-runner demo

`invoke`, `run-task` and `serve` use the local stack that `udf-runner devstack` prints the
environment of, or start one in-process when none is configured. `serve` answers Lambda's Invoke
API, so a caller's own boto3 code runs tasks locally (devstack/serve.py). Exit status: 0 when
the function succeeded, 1 when the task failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from devstack.access import StackAccess, StackError
from devstack.bundles import bundle_bytes
from devstack.local_run import LocalRunner, grant_for, local_runner

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """The command line or a file it names is wrong (exit status 2)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="udf-runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    invoke = commands.add_parser("invoke", help="run a bundle zip or folder for one invocation")
    invoke.add_argument("path", type=Path, help="bundle zip or folder")
    invoke.add_argument("--runtime", choices=["provided", "nodejs"], default="provided")
    invoke.add_argument("--handler", default=None, help="Lambda handler (file.export for nodejs)")
    invoke.add_argument("--event", default=None,
                        help="JSON event file, or - for standard input (default: {})")
    invoke.add_argument("--timeout-ms", type=int, default=30_000)
    invoke.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a variable of the task's own env (repeatable)")
    invoke.add_argument("--dataset", action="append", default=[],
                        help="a dataset the task may query (repeatable)")
    invoke.add_argument("--query", action="append", default=[], metavar="NAME=SQL",
                        help="an input query run before the invocation (repeatable)")
    invoke.add_argument("--json", action="store_true", help="print only the result JSON")
    run_task = commands.add_parser("run-task", help="run a task payload (e.g. events/*.json)")
    run_task.add_argument("payload", help="payload JSON file, or - for standard input")
    run_task.add_argument("--keep-token", action="store_true",
                          help="use the payload's token instead of one from the local issuer")
    run_task.add_argument("--json", action="store_true", help="print only the result JSON")
    devstack = commands.add_parser("devstack", help="run the local stack in the foreground")
    devstack.add_argument("--base-port", type=int, default=0, metavar="N",
                          help="listen on N (S3), N+1 (minter), N+2 (Query Service) and N+3 "
                               "(token issuer) instead of ports the OS picks")
    serve = commands.add_parser(
        "serve", help="answer Lambda's Invoke API on loopback, for a caller's own boto3 code")
    serve.add_argument("--port", type=int, default=3001,
                       help="port on 127.0.0.1 (default 3001, as sam local start-lambda)")
    serve.add_argument("--max-environments", type=int, default=4, metavar="N",
                       help="concurrent execution environments (more invocations get 429)")
    serve.add_argument("--max-task-timeout-seconds", type=int, default=300, metavar="S",
                       help="largest timeout_ms a task may ask for, as the template's "
                            "MaxTaskTimeoutSeconds (the function's timeout is S + 60)")
    serve.add_argument("--keep-token", action="store_true",
                       help="use each payload's token instead of one from the local issuer")
    token = commands.add_parser(
        "token", help="print a payload with a fresh token from the running local stack")
    token.add_argument("payload", help="payload JSON file, or - for standard input")
    commands.add_parser("demo", help="run every sample task (events/) end to end")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `udf-runner` console command."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except (UsageError, OSError) as e:
        _usage(parser, str(e))
    except StackError as e:
        sys.stderr.write(f"udf-runner: the local stack failed: {e}\n")
        return EXIT_FAILED


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "devstack":
        from devstack.stack import run_foreground  # noqa: PLC0415 - moto, DuckDB: this only

        return run_foreground(base_port=args.base_port)
    if args.command == "demo":
        from devstack.demo import run_demo  # noqa: PLC0415

        return run_demo()
    if args.command == "invoke":
        return _invoke(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "token":
        return _token(args)
    return _run_task(args)


def _invoke(args: argparse.Namespace) -> int:
    if not args.path.exists():
        raise UsageError(f"{args.path} does not exist")
    task_id = f"local-{uuid.uuid4().hex[:12]}"
    payload = {
        "schema_version": 1, "task_id": task_id, "attempt": 1,
        "capability_token": "issued-by-the-local-stack",
        "event": _read_json(args.event) if args.event else {}, "timeout_ms": args.timeout_ms,
        "inputs": {"datasets": args.dataset, "queries": _pairs(args.query, "--query")},
        "outputs": {"s3_prefix": f"s3://udf-outputs/local/{task_id}/"},
        "env": _pairs(args.env, "--env"),
    }
    try:
        bundle = bundle_bytes(args.path)
    except ValueError as e:
        raise UsageError(str(e)) from e
    with local_runner() as runner:
        uri, sha256 = runner.upload(bundle)
        payload["bundle"] = {"uri": uri, "sha256": sha256, "runtime": args.runtime,
                             **({"handler": args.handler} if args.handler else {})}
        result = runner.run(payload)
    return _report(result, as_json=args.json)


def _run_task(args: argparse.Namespace) -> int:
    payload = _read_json(args.payload)
    with local_runner() as runner:
        _upload_sample(runner, payload)
        result = runner.run(payload, reissue_token=not args.keep_token)
    return _report(result, as_json=args.json)


def _serve(args: argparse.Namespace) -> int:
    from devstack.serve import FunctionConfig, serve_forever  # noqa: PLC0415
    from devstack.stack import stop_on_signals  # noqa: PLC0415 - moto, DuckDB: this only

    if args.max_environments < 1:
        raise UsageError("--max-environments must be at least 1")
    if not 1 <= args.max_task_timeout_seconds <= 840:
        raise UsageError("--max-task-timeout-seconds must be 1 to 840 (Lambda's 900 s less the "
                         "runner's minute)")
    config = FunctionConfig(max_task_timeout_s=args.max_task_timeout_seconds,
                            max_environments=args.max_environments,
                            reissue_token=not args.keep_token)
    stop = threading.Event()
    with stop_on_signals(stop), local_runner() as runner:
        return serve_forever(runner, config, port=args.port, stop=stop)


def _token(args: argparse.Namespace) -> int:
    """For tools that run the function elsewhere (`sam local invoke -e`): the payload with a
    token the running stack's issuer signed for it."""
    access = StackAccess.from_environ(os.environ)
    if access is None:
        raise UsageError("no local stack configured: run `udf-runner devstack` and export the "
                         "environment it prints")
    payload = _read_json(args.payload)
    payload["capability_token"] = access.issue_token(grant_for(payload))
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    return EXIT_OK


def _upload_sample(runner: LocalRunner, payload: Any) -> None:
    """The sample bundle a payload of events/ names (nothing for any other payload)."""
    try:
        runner.upload_sample_of(payload)
    except FileNotFoundError as e:
        sys.stderr.write(f"udf-runner: samples not uploaded ({e})\n")


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{flag} takes NAME=VALUE, not {item!r}")
        pairs[name] = value
    return pairs


def _read_json(source: str) -> Any:
    data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        raise UsageError(f"{source} is not JSON: {e}") from e


def _report(result: dict[str, Any], *, as_json: bool) -> int:
    sys.stdout.write(json.dumps(result, indent=None if as_json else 2) + "\n")
    return EXIT_OK if result.get("status") == "succeeded" else EXIT_FAILED


def _usage(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    parser.exit(EXIT_USAGE, f"udf-runner: {message}\n")


if __name__ == "__main__":
    sys.exit(main())
