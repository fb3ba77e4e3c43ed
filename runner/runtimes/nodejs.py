"""The Node.js runtime: Lambda's `nodejs24.x`, rebuilt from the layer's Node and the official
runtime interface client (`aws-lambda-ric`), which talks to the runner's Runtime API emulation.

The runner does not interpret Node handlers itself; the client loads the module, calls the
export and reports its own error types (`Runtime.ImportModuleError`, `Runtime.HandlerNotFound`
...). The runner only refuses, before anything starts, a handler whose file is visibly missing.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from runner.bundle import Layout
from runner.containment.workdir import WorkDirs
from runner.errors import MissingEntrypointError, SandboxError
from runner.invoke.child import ChildSpec
from runner.runtimes.environment import PROVIDED_PATH, TaskEnvironment, lambda_env, task_env
from runner.settings import Settings

__all__ = [
    "CLIENT_DIR",
    "CLIENT_ENTRY",
    "EXECUTION_ENV",
    "MODULE_EXTENSIONS",
    "NODE_EXECUTABLE",
    "check_handler",
    "check_layer",
    "child_spec",
    "command",
    "environment",
    "module_location",
]

#: What Lambda's managed runtime calls itself; the client words some errors by it.
EXECUTION_ENV = "AWS_Lambda_nodejs24.x"
#: The layer's layout, as Lambda mounts it at /opt (layers/nodejs/build-layer.sh builds it).
NODE_EXECUTABLE = Path("bin/node")
CLIENT_DIR = Path("nodejs/node_modules/aws-lambda-ric")
CLIENT_ENTRY = CLIENT_DIR / "index.mjs"
#: The client's module lookup for a handler's file, in its order (docs/runtime-api.md#node-handler).
MODULE_EXTENSIONS = ("", ".js", ".mjs", ".cjs")


def child_spec(dirs: WorkDirs, handler: str | None, task: TaskEnvironment,
               settings: Settings) -> ChildSpec:
    """How to start Node on the client for `handler`; raises before anything starts when the
    handler's file is visibly missing or the layer is not there."""
    if not handler:
        raise MissingEntrypointError("a nodejs bundle needs a handler of the form 'file.export'")
    check_handler(dirs.task_root, handler)
    check_layer(settings.node_layer)
    return ChildSpec(argv=command(settings), cwd=dirs.task_root,
                     env=environment(settings, dirs, handler, task), telemetry_log=True)


def command(settings: Settings) -> list[str]:
    """Node's command line as Lambda's Node bootstrap builds it: the heap sized from the
    function's memory (a tenth for the young generation, the rest for the old one)."""
    memory = settings.function_memory_mb
    young = memory // 10
    return [
        str(settings.node_layer / NODE_EXECUTABLE),
        "--expose-gc",
        "--max-http-header-size=81920",
        f"--max-semi-space-size={young // 2}",
        f"--max-old-space-size={memory - young}",
        str(settings.node_layer / CLIENT_ENTRY),
    ]


def environment(settings: Settings, dirs: WorkDirs, handler: str,
                task: TaskEnvironment) -> dict[str, str]:
    """The child's whole environment (without `AWS_LAMBDA_RUNTIME_API`): Lambda's variables for
    the Node runtime, the task's, and the task's own `env` underneath them all."""
    layer = settings.node_layer
    # The client's folder plays the part of Lambda's /var/runtime, which holds the same files.
    runtime_dir = layer / CLIENT_DIR
    node_path = [layer / "nodejs/node24/node_modules", layer / "nodejs/node_modules",
                 runtime_dir / "node_modules", runtime_dir, dirs.task_root]
    node = {
        "_HANDLER": handler,
        "AWS_EXECUTION_ENV": EXECUTION_ENV,
        "NODE_PATH": ":".join(map(str, node_path)),
        "PATH": f"{layer / NODE_EXECUTABLE.parent}:{PROVIDED_PATH}",
        "AWS_NODEJS_CONNECTION_REUSE_ENABLED": "1",
    }
    # The task's own `env` goes first so that nothing in it can shadow the runtime's contract.
    return {**task.user_env, **lambda_env(settings, dirs, runtime_dir), **node, **task_env(task)}


def check_layer(layer: Path) -> None:
    """Refuse to start when the layer lacks Node or the client: a fault of the deployment."""
    missing = [str(layer / part) for part in (NODE_EXECUTABLE, CLIENT_ENTRY)
               if not (layer / part).is_file()]
    if missing:
        raise SandboxError(f"the Node.js layer is incomplete: {', '.join(missing)} not found "
                           "(set UDF_RUNNER_NODE_LAYER; locally, `make layer` builds it)")


def check_handler(task_root: Path, handler: str) -> None:
    """Raise `MissingEntrypointError` when nothing the client would load for `handler` exists
    in the bundle. A malformed or escaping handler is left to the client, which names it."""
    parsed = module_location(handler)
    if parsed is None:
        return
    module_root, module_name = parsed
    base = posixpath.join(str(task_root), module_root, module_name)
    if any(Path(base + extension).exists() for extension in MODULE_EXTENSIONS):
        return
    if _vendored_package(task_root, module_root, module_name):
        return
    listed = ", ".join(f"{posixpath.join(module_root, module_name)}{extension}"
                       for extension in MODULE_EXTENSIONS)
    raise MissingEntrypointError(
        f"handler {handler!r}: the bundle has none of {listed} (nor a package "
        f"node_modules/{module_name}); {Layout.of_folder(task_root).describe('nodejs')}")


def module_location(handler: str) -> tuple[str, str] | None:
    """(module root, module name) for `dir/sub/file.a.b`, i.e. ("dir/sub", "file"), as the
    client splits it (docs/runtime-api.md#node-handler); None when the client would refuse or
    resolve it outside the bundle."""
    if handler.startswith("/") or handler.endswith("/") or ".." in handler:
        return None
    module_root, _, basename = handler.rpartition("/")
    module_name, dot, _export = basename.partition(".")
    if not dot:
        return None
    return module_root, module_name


def _vendored_package(task_root: Path, module_root: str, module_name: str) -> bool:
    """Whether the client's last resort, `require.resolve(<module name>)` from the module's
    folder up to the task root, finds a package vendored in the bundle's node_modules."""
    folder = task_root / module_root
    while True:
        if (folder / "node_modules" / module_name).exists():
            return True
        if folder == task_root:
            return False
        folder = folder.parent
