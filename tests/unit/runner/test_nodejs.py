"""`runner.runtimes.nodejs`: the handler check, Node's command line and environment, and the
child spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import runtimes
from runner.containment import WorkDirs
from runner.errors import MissingEntrypointError, SandboxError
from runner.runtimes import TaskEnvironment, nodejs
from runner.runtimes.environment import PROVIDED_PATH
from runner.settings import Settings
from tests.support.bundles import write_tree


@pytest.fixture
def dirs(tmp_path: Path) -> WorkDirs:
    paths = WorkDirs(task_root=tmp_path / "task", home=tmp_path / "home", tmp=tmp_path / "tmp")
    for path in (paths.task_root, paths.home, paths.tmp):
        path.mkdir()
    return paths


@pytest.fixture
def layer(tmp_path: Path) -> Path:
    """A stand-in layer with the two files the runner looks for (nothing here runs them)."""
    return write_tree(tmp_path / "layer", {
        "bin/node": ("", 0o755),
        "nodejs/node_modules/aws-lambda-ric/index.mjs": "",
    })


@pytest.fixture
def node_settings(work_root: Path, layer: Path) -> Settings:
    return Settings.from_env({"UDF_RUNNER_WORK_ROOT": str(work_root),
                              "UDF_RUNNER_NODE_LAYER": str(layer),
                              "UDF_RUNNER_FUNCTION_MEMORY_MB": "2048"})


TASK = TaskEnvironment(task_id="task-1", attempt=2, token="capability-token",
                       user_env={"USER_SETTING": "value", "NODE_PATH": "/evil", "PATH": "/evil"})


@pytest.mark.parametrize(("handler", "expected"), [
    ("index.handler", ("", "index")),
    ("src/handlers/alert.handler", ("src/handlers", "alert")),
    ("dir/sub/file.a.b", ("dir/sub", "file")),
    ("app.cjs.handler", ("", "app")),
    (".handler", ("", "")),
    ("index", None),  # no export: the client reports Runtime.MalformedHandlerName
    ("../outside/index.handler", None),
    ("/abs/index.handler", None),
    ("dir/index.handler/", None),
])
def test_module_location_splits_the_basename_at_its_first_dot(
        handler: str, expected: tuple[str, str] | None) -> None:
    assert nodejs.module_location(handler) == expected


@pytest.mark.parametrize(("files", "handler"), [
    ({"index": "module.exports = {}"}, "index.handler"),
    ({"index.js": ""}, "index.handler"),
    ({"index.mjs": ""}, "index.handler"),
    ({"index.cjs": ""}, "index.handler"),
    ({"src/handlers/alert.js": ""}, "src/handlers/alert.handler"),
    ({"dir/sub/file.mjs": ""}, "dir/sub/file.a.b"),
    ({"lib/node_modules/app/index.js": ""}, "lib/app.handler"),
    ({"node_modules/app/package.json": "{}"}, "lib/app.handler"),
    ({"index/index.js": ""}, "index.handler"),  # a folder: the client decides (and refuses)
])
def test_a_handler_whose_module_the_client_can_find_passes(
        dirs: WorkDirs, files: dict[str, str], handler: str) -> None:
    write_tree(dirs.task_root, files)
    nodejs.check_handler(dirs.task_root, handler)


@pytest.mark.parametrize(("files", "handler"), [
    ({}, "index.handler"),
    ({"index.ts": ""}, "index.handler"),
    ({"main.js": ""}, "index.handler"),
    ({"index.js": ""}, "src/index.handler"),
    ({"src/handlers/alert.js": ""}, "src/alert.handler"),
    ({"other/node_modules/app/index.js": ""}, "lib/app.handler"),
])
def test_a_visibly_missing_handler_file_is_a_missing_entrypoint(
        dirs: WorkDirs, files: dict[str, str], handler: str) -> None:
    write_tree(dirs.task_root, files)
    with pytest.raises(MissingEntrypointError, match=r"\.js, .*\.mjs, .*\.cjs"):
        nodejs.check_handler(dirs.task_root, handler)


def test_a_missing_handler_names_what_the_bundle_holds_and_the_fix(dirs: WorkDirs) -> None:
    write_tree(dirs.task_root, {"dist/index.mjs": "", ".DS_Store": ""})
    with pytest.raises(MissingEntrypointError) as caught:
        nodejs.check_handler(dirs.task_root, "index.handler")
    assert caught.value.message.endswith(
        "its root holds dist/; the bundle's files are under dist/: zip the folder's contents, "
        "not the folder (cd dist && zip -r ../bundle.zip .)")


def test_a_dangling_symlink_does_not_count_as_the_handler_file(dirs: WorkDirs) -> None:
    (dirs.task_root / "index.js").symlink_to(dirs.task_root / "gone.js")
    with pytest.raises(MissingEntrypointError):
        nodejs.check_handler(dirs.task_root, "index.handler")


def test_a_malformed_handler_is_left_to_the_client(dirs: WorkDirs) -> None:
    nodejs.check_handler(dirs.task_root, "index")


def test_command_runs_the_client_with_lambdas_heap_sizing(node_settings: Settings,
                                                          layer: Path) -> None:
    assert nodejs.command(node_settings) == [
        str(layer / "bin/node"), "--expose-gc", "--max-http-header-size=81920",
        "--max-semi-space-size=102", "--max-old-space-size=1844",
        str(layer / "nodejs/node_modules/aws-lambda-ric/index.mjs"),
    ]


def test_environment_is_lambdas_nodejs24_environment(node_settings: Settings, dirs: WorkDirs,
                                                     layer: Path) -> None:
    env = nodejs.environment(node_settings, dirs, "src/app.handler", TASK)

    runtime_dir = layer / "nodejs/node_modules/aws-lambda-ric"
    assert env["_HANDLER"] == "src/app.handler"
    assert env["LAMBDA_TASK_ROOT"] == str(dirs.task_root)
    assert env["LAMBDA_RUNTIME_DIR"] == str(runtime_dir)
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_nodejs24.x"
    assert env["NODE_PATH"] == ":".join([
        f"{layer}/nodejs/node24/node_modules", f"{layer}/nodejs/node_modules",
        f"{runtime_dir}/node_modules", str(runtime_dir), str(dirs.task_root)])
    assert env["PATH"] == f"{layer}/bin:{PROVIDED_PATH}"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "2048"
    for name in ("AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION",
                 "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME"):
        assert env[name], f"the v4 client dies without {name}"
    assert "AWS_LAMBDA_RUNTIME_API" not in env  # only the invocation driver knows it


def test_environment_keeps_task_variables_and_user_env_beneath_the_contract(
        node_settings: Settings, dirs: WorkDirs) -> None:
    env = nodejs.environment(node_settings, dirs, "index.handler", TASK)

    assert env["USER_SETTING"] == "value"
    assert env["TRACE_TASK_ID"] == "task-1"
    assert env["TRACE_TASK_ATTEMPT"] == "2"
    assert env["TRACE_CAPABILITY_TOKEN"] == "capability-token"
    assert env["NODE_PATH"] != "/evil"
    assert env["PATH"] != "/evil"


def test_child_spec_for_nodejs_starts_node_in_the_task_root(node_settings: Settings,
                                                            dirs: WorkDirs) -> None:
    write_tree(dirs.task_root, {"index.mjs": ""})

    spec = runtimes.child_spec("nodejs", dirs, "index.handler", TASK, node_settings)

    assert spec.argv == nodejs.command(node_settings)
    assert spec.cwd == dirs.task_root
    assert spec.env == {**nodejs.environment(node_settings, dirs, "index.handler", TASK),
                        "AWS_LAMBDA_LOG_STREAM_NAME": spec.env["AWS_LAMBDA_LOG_STREAM_NAME"]}


@pytest.mark.parametrize("handler", [None, ""])
def test_child_spec_without_a_handler_is_a_missing_entrypoint(
        node_settings: Settings, dirs: WorkDirs, handler: str | None) -> None:
    with pytest.raises(MissingEntrypointError, match="needs a handler"):
        runtimes.child_spec("nodejs", dirs, handler, TASK, node_settings)


def test_child_spec_checks_the_bundle_before_the_layer(work_root: Path, dirs: WorkDirs,
                                                       tmp_path: Path) -> None:
    settings = Settings.from_env({"UDF_RUNNER_WORK_ROOT": str(work_root),
                                  "UDF_RUNNER_NODE_LAYER": str(tmp_path / "no-layer")})
    with pytest.raises(MissingEntrypointError):
        runtimes.child_spec("nodejs", dirs, "index.handler", TASK, settings)


def test_an_incomplete_layer_is_a_sandbox_failure(work_root: Path, dirs: WorkDirs,
                                                  tmp_path: Path) -> None:
    layer = write_tree(tmp_path / "half-layer", {"bin/node": ("", 0o755)})
    settings = Settings.from_env({"UDF_RUNNER_WORK_ROOT": str(work_root),
                                  "UDF_RUNNER_NODE_LAYER": str(layer)})
    write_tree(dirs.task_root, {"index.js": ""})

    with pytest.raises(SandboxError, match=r"aws-lambda-ric/index\.mjs not found"):
        runtimes.child_spec("nodejs", dirs, "index.handler", TASK, settings)
