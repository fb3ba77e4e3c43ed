"""`udf-runner`: run bundles and task payloads locally, through the deployed function's own code.

    udf-runner invoke PATH [--runtime provided|nodejs] [--handler H] [--event FILE|-] ...
                           [--watch] [--outputs DIR] [--json]
    udf-runner run-task PAYLOAD.json|- [--bundle PATH] [--outputs DIR] [--json]
    udf-runner datasets [--json]
    udf-runner devstack [--base-port N]
    udf-runner serve [--port N] [--max-environments N] [--max-task-timeout-seconds S]
    udf-runner token PAYLOAD.json|-
    udf-runner demo

`invoke`, `run-task` and `serve` use the local stack that `udf-runner devstack` prints the
environment of, or start one in-process when none is configured. `serve` answers Lambda's Invoke
API, so a caller's own boto3 code runs tasks locally (devstack/serve.py). `invoke` and
`run-task` print a summary of the result (the bundle's own output streams on standard error as
it runs); `--json` prints the result instead. `invoke --watch` keeps the stack up and runs again
whenever the bundle changes, until Ctrl-C. Without `--runtime`, `invoke` reads the bundle: a
`bootstrap` at its root is a custom runtime, else a single Node module at its root (index.js,
app.mjs ...) is run as `--runtime nodejs --handler <module>.handler`, which it says on stderr.
Exit status: 0 when the function succeeded, 1 when the task failed, 2 on bad usage (the flags
are checked by the payload's own rules before anything runs), 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import sys
import threading
import time
import uuid
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from botocore.exceptions import ClientError
from pydantic import ValidationError

from devstack import outputs
from devstack.access import StackAccess, StackError
from devstack.bundles import bundle_bytes
from devstack.datasets import SCHEMAS
from devstack.local_run import LocalRunner, grant_for, local_runner
from devstack.report import Style, count, summary, warning
from devstack.s3_server import EmbeddedS3
from runner.bundle import Layout
from runner.models import TaskPayload
from runner.runtimes.nodejs import MODULE_EXTENSIONS, module_location

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: The reader of standard output went away (`| head`): what a shell reports for a command that
#: SIGPIPE ended, as it does for `yes | head`.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

#: The payload field each `invoke` flag sets (its first key), and how to get it right.
_FLAGS = {
    "timeout_ms": ("--timeout-ms", "give milliseconds, from 1 to 900000"),
    "env": ("--env", "use another name (AWS_*, LAMBDA_*, TRACE_*, PATH, NODE_OPTIONS ... "
                     "belong to the runtime)"),
    "bundle": ("--handler", "for --runtime nodejs give FILE.EXPORT, e.g. --handler "
                            "index.handler"),
    "event": ("--event", "give a JSON file, or - for standard input"),
    "queries": ("--query", "give NAME=SQL, NAME made of letters, digits and _"),
}
#: Where `invoke` checks its payload before uploading anything (the real one is set after).
_UNUPLOADED = {"uri": "s3://udf-bundles/local/unuploaded.zip", "sha256": "0" * 64}


class UsageError(Exception):
    """The command line or a file it names is wrong (exit status 2)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="udf-runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    invoke = commands.add_parser("invoke", help="run a bundle zip or folder for one invocation")
    invoke.add_argument("path", type=Path, help="bundle zip or folder")
    invoke.add_argument("--runtime", choices=["provided", "nodejs"], default=None,
                        help="default: read from the bundle (a bootstrap, or one Node module)")
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
    invoke.add_argument("--watch", action="store_true",
                        help="keep the local stack up and run again whenever PATH changes")
    _add_outputs_and_json(invoke)
    run_task = commands.add_parser("run-task", help="run a task payload (e.g. events/*.json)")
    run_task.add_argument("payload", help="payload JSON file, or - for standard input")
    run_task.add_argument("--keep-token", action="store_true",
                          help="use the payload's token instead of one from the local issuer")
    run_task.add_argument("--bundle", type=Path, default=None, metavar="PATH",
                          help="run this bundle zip or folder: upload it and pin its URI and "
                               "SHA-256 into the payload")
    _add_outputs_and_json(run_task)
    datasets = commands.add_parser(
        "datasets", help="list the local Query Service's datasets, their columns and rows")
    datasets.add_argument("--json", action="store_true", help="print them as JSON")
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


def _add_outputs_and_json(command: argparse.ArgumentParser) -> None:
    command.add_argument("--outputs", type=Path, default=None, metavar="DIR",
                         help="save what the task wrote under its output prefix into DIR")
    command.add_argument("--json", action="store_true", help="print only the result JSON")


def main(argv: Sequence[str] | None = None, *, s3: EmbeddedS3 | None = None) -> int:
    """`udf-runner ARGS...` (the console command enters through `devstack.launch`, which may
    have started the embedded S3 already: `s3`, for the local stack the command starts)."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.embedded_s3 = s3
    previous = signal.signal(signal.SIGINT, _interrupted)
    try:
        return _dispatch(args)
    except BrokenPipeError:
        # Nothing more can be shown, so nothing is said; stdout goes to /dev/null so that
        # flushing it at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (UsageError, OSError) as e:
        _usage(parser, str(e))
    except StackError as e:
        sys.stderr.write(f"udf-runner: the local stack failed: {e}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        # Everything the run started has been stopped on the way here (the child, its work
        # dir, the local stack): each is a context left by the exception.
        sys.stderr.write("udf-runner: interrupted\n")
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C: stop the run, once. A second one is ignored: it would cut the cleanup short
    and leave the child or the local stack behind."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")  # what the teardown warns of (no metrics ...) is noise now
    raise KeyboardInterrupt


def _dispatch(args: argparse.Namespace) -> int:
    commands = {"devstack": _devstack, "demo": _demo, "invoke": _invoke, "serve": _serve,
                "token": _token, "datasets": _datasets, "run-task": _run_task}
    code = commands[args.command](args)
    sys.stdout.flush()  # a reader that went away is found here, not at the exit's flush
    return code


def _devstack(args: argparse.Namespace) -> int:
    from devstack.stack import run_foreground  # noqa: PLC0415 - moto, DuckDB: this only

    return run_foreground(base_port=args.base_port)


def _demo(args: argparse.Namespace) -> int:
    from devstack.demo import run_demo  # noqa: PLC0415

    return run_demo()


def _invoke(args: argparse.Namespace) -> int:
    if not args.path.exists():
        raise UsageError(f"bundle {args.path}: no such file or folder (give the bundle's zip, "
                         "or the folder to zip)")
    _check_datasets(args.dataset)
    task = {
        "event": _read_json(args.event, "--event") if args.event else {},
        "timeout_ms": args.timeout_ms,
        "inputs": {"datasets": args.dataset, "queries": _pairs(args.query, "--query")},
        "env": _pairs(args.env, "--env"),
    }
    first = _prepare(args, task)  # bad usage is found before the stack starts
    with local_runner(s3=args.embedded_s3) as runner, _warnings_shown(runner, args):
        if args.watch:
            return _watch(args, runner, task, first)
        return _invoke_once(args, runner, first)


@dataclass(frozen=True)
class _Prepared:
    """One run of `invoke`: the bundle, its checked payload, and what was inferred for it."""

    bundle: bytes
    payload: dict[str, Any]
    inferred: str | None


def _prepare(args: argparse.Namespace, task: dict[str, Any]) -> _Prepared:
    try:
        bundle = bundle_bytes(args.path)
    except ValueError as e:
        raise UsageError(str(e)) from e
    names = _entry_names(bundle)
    runtime, handler, inferred = _how_to_run(args.runtime, args.handler, names)
    task_id = f"local-{uuid.uuid4().hex[:12]}"
    payload = {
        "schema_version": 1, "task_id": task_id, "attempt": 1,
        "capability_token": "issued-by-the-local-stack", **task,
        "outputs": {"s3_prefix": f"s3://udf-outputs/local/{task_id}/"},
        "bundle": {**_UNUPLOADED, "runtime": runtime, **({"handler": handler} if handler else {})},
    }
    _check_flags(payload, Layout.of_names(names or []))
    return _Prepared(bundle, payload, inferred)


def _invoke_once(args: argparse.Namespace, runner: LocalRunner, prepared: _Prepared) -> int:
    if prepared.inferred:
        sys.stderr.write(f"udf-runner: {prepared.inferred}\n")
    payload = prepared.payload
    started = time.perf_counter()
    uri, sha256 = runner.upload(prepared.bundle)
    payload["bundle"] |= {"uri": uri, "sha256": sha256}
    result = runner.run(payload)
    return _finish(args, runner, payload, result, started)


def _entry_names(bundle: bytes) -> list[str] | None:
    """The zip's entry names; None for what is no zip (the runner says what is wrong)."""
    try:
        with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
            return archive.namelist()
    except zipfile.BadZipFile:
        return None


def _how_to_run(runtime: str | None, handler: str | None,
                names: list[str] | None) -> tuple[str, str | None, str | None]:
    """The runtime and handler, and what was inferred to get them: as given, or read from the
    bundle when `--runtime` is not. What cannot be read (no bootstrap, no Node module) runs as
    a custom runtime, whose `Bundle.MissingEntrypoint` says what the bundle holds and the
    likely fix."""
    if runtime is not None or names is None:
        return runtime or "provided", handler, None
    layout = Layout.of_names(names)
    if layout.has_bootstrap:
        return "provided", handler, None
    if handler is not None:
        if layout.node_handlers or _has_module(handler, names):
            return "nodejs", handler, (f"the bundle has no bootstrap and holds Node.js code: "
                                       f"running it with --runtime nodejs --handler {handler}")
        return "provided", handler, None
    choices = layout.node_handlers
    if len(choices) > 1:
        raise UsageError(f"--handler: the bundle has no bootstrap and several Node.js modules "
                         f"at its root; choose with --runtime nodejs --handler one of "
                         f"{', '.join(choices)}")
    if choices:
        return "nodejs", choices[0], (f"the bundle has no bootstrap and one Node.js module: "
                                      f"running it with --runtime nodejs --handler {choices[0]}")
    return "provided", None, None


def _has_module(handler: str, names: list[str]) -> bool:
    location = module_location(handler)
    if location is None:
        return False
    base = "/".join(part for part in location if part)
    return any(base + extension in names for extension in MODULE_EXTENSIONS)


def _check_flags(payload: dict[str, Any], layout: Layout) -> None:
    """Bad usage, naming the flag and the fix, for what the payload's own rules refuse."""
    try:
        TaskPayload.model_validate(payload)
    except ValidationError as e:
        error = e.errors(include_url=False, include_input=False)[0]
        field = next((str(part) for part in error["loc"] if part != "inputs"), "payload")
        flag, fix = _FLAGS.get(field, (field, ""))
        if flag == "--handler" and payload["bundle"]["runtime"] == "nodejs" \
                and layout.node_handlers:
            fix = f"for this bundle: --handler {layout.node_handlers[0]}"
        problem = error["msg"].removeprefix("Value error, ")
        raise UsageError(f"{flag}: {problem}" + (f"; {fix}" if fix else "")) from None


def _watch(args: argparse.Namespace, runner: LocalRunner, task: dict[str, Any],
           first: _Prepared) -> int:
    """Run, then again on each change of the bundle, until Ctrl-C or SIGTERM (exit status 0)."""
    from devstack.watch import BundleWatcher  # noqa: PLC0415 - the file watcher: --watch only

    # A run stopped by Ctrl-C ends with no metrics recorded, which Powertools warns about.
    warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)
    # Watching starts before the first run, so that no change made during a run goes unseen.
    with _sigterm_interrupts(), BundleWatcher(args.path) as watcher:
        prepared: _Prepared | None = first
        try:
            while True:
                try:
                    _invoke_once(args, runner, prepared or _prepare(args, task))
                except (UsageError, OSError) as e:  # caught mid-edit: the next save may fix it
                    sys.stderr.write(f"udf-runner: {e}\n")
                prepared = None  # each later run reads the bundle as it is then
                sys.stderr.write(f"udf-runner: watching {args.path} for changes "
                                 f"(Ctrl-C to stop)\n")
                changed = watcher.wait()
                sys.stderr.write(f"udf-runner: {_changed(changed, args.path)} changed; "
                                 f"running again\n")
        except KeyboardInterrupt:
            sys.stderr.write("udf-runner: stopped watching\n")
            return EXIT_OK


def _changed(paths: set[Path], bundle: Path) -> str:
    names = sorted(str(path.relative_to(bundle.resolve())) if path != bundle.resolve()
                   else str(bundle) for path in paths)
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops a watch the way Ctrl-C does (the stack and any running child go too)."""
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _warnings_shown(runner: LocalRunner, args: argparse.Namespace) -> Iterator[None]:
    """For a person, a plain warning when an input query came back cut short."""
    if args.json:
        yield
        return
    style = Style.for_stream(sys.stderr)

    def warn(query: str, rows: int) -> None:
        sys.stderr.write(warning(
            f"input query {query!r} was truncated to {rows} rows (the Query Service's row or "
            f"byte limit): its trace_inputs result says truncated: true", style))

    with runner.truncation_warnings(warn):
        yield


def _run_task(args: argparse.Namespace) -> int:
    if args.bundle is not None and args.keep_token:
        raise UsageError("--bundle changes the payload's bundle, which the payload's own token "
                         "does not grant: drop --keep-token")
    payload = _read_json(args.payload, "payload")
    bundle = _bundle_for(payload, args.bundle) if args.bundle is not None else None
    with local_runner(s3=args.embedded_s3) as runner, _warnings_shown(runner, args):
        if bundle is None:
            _upload_sample(runner, payload)
        else:
            _pin_bundle(runner, payload, bundle, args.bundle)
        started = time.perf_counter()
        result = runner.run(payload, reissue_token=not args.keep_token)
        return _finish(args, runner, payload, result, started)


def _bundle_for(payload: Any, path: Path) -> bytes:
    if not isinstance(payload, dict):
        raise UsageError("--bundle needs a payload that is a JSON object")
    if not path.exists():
        raise UsageError(f"--bundle {path} does not exist")
    try:
        return bundle_bytes(path)
    except ValueError as e:
        raise UsageError(f"--bundle {e}") from e


def _pin_bundle(runner: LocalRunner, payload: dict[str, Any], bundle: bytes, path: Path) -> None:
    """Upload the user's bundle and point the payload at it, saying what changed."""
    uri, sha256 = runner.upload(bundle)
    ref = payload.get("bundle")
    ref = payload["bundle"] = ref if isinstance(ref, dict) else {}
    was = ref.get("sha256")
    ref.update(uri=uri, sha256=sha256)
    sys.stderr.write(f"udf-runner: uploaded {path} ({len(bundle)} bytes) to {uri}; the payload's "
                     f"bundle.uri and bundle.sha256 now name it (sha256 {sha256}"
                     f"{f', was {was}' if was and was != sha256 else ''})\n")


def _datasets(args: argparse.Namespace) -> int:
    from devstack.datasets import catalog  # noqa: PLC0415 - generates the sample data

    infos = catalog()
    if args.json:
        listing = [{"name": info.name, "rows": info.rows,
                    "columns": [{"name": name, "type": kind} for name, kind in info.columns]}
                   for info in infos]
        sys.stdout.write(json.dumps(listing, indent=2) + "\n")
        return EXIT_OK
    style = Style.for_stream(sys.stdout)
    for index, info in enumerate(infos):
        sys.stdout.write(f"{'\n' if index else ''}{style(info.name, 'bold')} ({info.rows} rows)\n")
        width = max(len(name) for name, _ in info.columns)
        sys.stdout.writelines(f"  {name:<{width}}  {style(kind, 'dim')}\n"
                              for name, kind in info.columns)
    sys.stdout.write("\nQuery one: udf-runner invoke PATH --dataset blocks "
                     "--query latest='SELECT * FROM blocks ORDER BY number DESC LIMIT 5'\n")
    return EXIT_OK


def _check_datasets(names: list[str]) -> None:
    unknown = [name for name in names if name not in SCHEMAS]
    if unknown:
        raise UsageError(f"--dataset {unknown[0]}: no such dataset in the local Query Service; "
                         f"it has {', '.join(sorted(SCHEMAS))} (`udf-runner datasets` lists "
                         f"their columns)")


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
    with stop_on_signals(stop), local_runner(s3=args.embedded_s3) as runner:
        return serve_forever(runner, config, port=args.port, stop=stop)


def _token(args: argparse.Namespace) -> int:
    """For tools that run the function elsewhere (`sam local invoke -e`): the payload with a
    token the running stack's issuer signed for it."""
    access = StackAccess.from_environ(os.environ)
    if access is None:
        raise UsageError("no local stack configured: run `udf-runner devstack` and export the "
                         "environment it prints")
    payload = _read_json(args.payload, "payload")
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


def _read_json(source: str, what: str) -> Any:
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as e:
        raise UsageError(f"{what} {source}: {e.strerror}") from e
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{what} {source} is not JSON ({e}); give a file holding one JSON "
                         "value") from e


def _finish(args: argparse.Namespace, runner: LocalRunner, payload: Any,
            result: dict[str, Any], started: float) -> int:
    """Print the result (and what the task wrote), while the stack is still up; exit status."""
    wall_ms = round((time.perf_counter() - started) * 1000)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        sys.stdout.write(summary(result, Style.for_stream(sys.stdout), wall_ms=wall_ms))
    prefix = _output_prefix(payload)
    if prefix is not None:
        note = _outputs_note(runner, prefix, args.outputs)
        (sys.stderr if args.json else sys.stdout).write(note)
    elif args.outputs is not None:
        sys.stderr.write("udf-runner: the payload has no outputs.s3_prefix: nothing to save\n")
    sys.stdout.flush()
    return EXIT_OK if result.get("status") == "succeeded" else EXIT_FAILED


def _output_prefix(payload: Any) -> str | None:
    out = payload.get("outputs") if isinstance(payload, dict) else None
    prefix = out.get("s3_prefix") if isinstance(out, dict) else None
    return prefix if isinstance(prefix, str) and prefix.startswith("s3://") else None


def _outputs_note(runner: LocalRunner, prefix: str, dest: Path | None) -> str:
    """Save what is under `prefix` into `dest`, or say what there is to save."""
    try:
        if dest is None:
            found = outputs.list_outputs(runner.access, prefix)
            if not found:
                return ""
            size = sum(item.size for item in found)
            return (f"outputs: {count(len(found), 'object')} ({size} bytes) under {prefix}; "
                    f"--outputs DIR saves them\n")
        saved = outputs.save(runner.access, prefix, dest)
    except (ValueError, ClientError):  # not a prefix of this stack: the result says why
        return ""
    note = f"outputs: {count(len(saved.files), 'object')} ({saved.bytes} bytes) saved in {dest}\n"
    if saved.skipped:
        note += f"outputs: not saved (no safe path for their keys): {', '.join(saved.skipped)}\n"
    return note


def _usage(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    parser.exit(EXIT_USAGE, f"udf-runner: {message}\n")


if __name__ == "__main__":
    sys.exit(main())
