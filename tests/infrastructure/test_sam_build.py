"""`sam build` of template.yaml, for real, without a container: the artifact Lambda would run.

The build is `make sam-build`'s own (.aws-sam/build, with SAM's cache beside it), so the Node
layer is compiled once for both and the e2e tests run what this checked. What is checked is
what Lambda relies on: the
function's zip root holds the package `runner` and its dependencies for CPython 3.13 on x86_64,
nothing outside it is needed to import and call the handler, and function plus layers fit in
250 MB unzipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from benchmarks.artifact import date_as_zipped
from runner.settings import LAMBDA_UNZIPPED_LIMIT
from scripts import artifact_size

# `sam build` takes over a minute cold; `pytest -m "not slow"` is the inner loop.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SAM = Path(sys.executable).with_name("sam")
ELF_MACHINE_X86_64 = 62

# Imports and calls the handler the way Lambda's Python runtime does, from the artifact alone:
# -I -S keeps out the environment's PYTHONPATH and every site-packages, so only the zip root
# and the standard library are importable.
HANDLER_PROBE = """
import gc, json, sys
sys.path.insert(0, sys.argv[1])
import runner.app, pydantic, pydantic_core, urllib3, aws_lambda_powertools

class Context:
    function_name = "udf-runner"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:udf-runner"
    memory_limit_in_mb = 2048
    aws_request_id = "0f1e2d3c-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/udf-runner"
    log_stream_name = "2026/01/01/[$LATEST]0123456789abcdef"
    tenant_id = "tenant-a"
    def get_remaining_time_in_millis(self):
        return 60_000

modules = {m.__name__: m.__file__ for m in (runner.app, pydantic, pydantic_core, urllib3,
                                            aws_lambda_powertools)}
result = runner.app.lambda_handler({"schema_version": 1}, Context())
collector = {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}
print(json.dumps({"modules": modules, "result": result, "collector": collector}))
"""


@pytest.fixture(scope="module")
def build_dir() -> Path:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PIP_PYTHON": sys.executable}
    done = subprocess.run([str(SAM), "build", "--cached"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return ROOT / ".aws-sam" / "build"


def lambda_environment(build_dir: Path, work_root: Path) -> Mapping[str, str]:
    """What the function's configuration and Lambda's python3.13 runtime put in its env."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "udf-runner",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "LAMBDA_TASK_ROOT": str(build_dir / "RunnerFunction"),
        "UDF_RUNNER_MINTER_URL": "https://minter.invalid",
        "UDF_RUNNER_QUERY_URL": "https://query.invalid",
        "UDF_RUNNER_MAX_TIMEOUT_MS": "300000",
        "UDF_RUNNER_WORK_ROOT": str(work_root),
        "UDF_RUNNER_NODE_LAYER": str(build_dir / "NodeRuntimeLayer"),
        "UDF_RUNNER_S3_ENDPOINT_URL": "",
        "POWERTOOLS_SERVICE_NAME": "udf-runner",
        "POWERTOOLS_METRICS_NAMESPACE": "UdfRunner",
        "POWERTOOLS_LOGGER_LOG_EVENT": "false",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
    }


def test_function_and_layers_fit_in_250_mb(build_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    [size] = artifact_size.measure(build_dir)

    assert [part.name for part in size.parts] == ["RunnerFunction", "NodeRuntimeLayer"]
    assert size.total <= LAMBDA_UNZIPPED_LIMIT
    assert artifact_size.main([str(build_dir)]) == artifact_size.EXIT_OK
    assert "RunnerFunction unzipped, function plus layers" in capsys.readouterr().out


def test_zip_root_holds_the_runner_package_and_its_dependencies(build_dir: Path) -> None:
    root = build_dir / "RunnerFunction"

    assert (root / "runner" / "__init__.py").is_file()
    assert (root / "runner" / "app.py").is_file()
    assert not (root / "runner" / "requirements.txt").exists()
    for package in ("pydantic", "pydantic_core", "urllib3", "h11", "aws_lambda_powertools"):
        assert (root / package / "__init__.py").is_file(), package
    for package in ("boto3", "botocore"):  # S3 is read with a signed GET of the runner's own
        assert not (root / package).exists(), package


def test_native_dependencies_are_cpython_313_on_x86_64_linux(build_dir: Path) -> None:
    root = build_dir / "RunnerFunction"
    extensions = list(root.rglob("*.so"))

    assert extensions
    for extension in extensions:
        assert extension.name.endswith(("cpython-313-x86_64-linux-gnu.so", "abi3.so")), extension
        header = extension.read_bytes()[:20]
        assert header[:4] == b"\x7fELF"
        assert int.from_bytes(header[18:20], "little") == ELF_MACHINE_X86_64, extension


def test_built_template_keeps_the_handler_and_the_layer(build_dir: Path) -> None:
    text = (build_dir / "template.yaml").read_text()

    assert "Handler: runner.app.lambda_handler" in text
    assert "CodeUri: RunnerFunction" in text
    assert "ContentUri: NodeRuntimeLayer" in text


def test_handler_imports_and_answers_from_the_artifact_alone(build_dir: Path,
                                                              tmp_path: Path) -> None:
    work_root = tmp_path / "work"
    work_root.mkdir()
    artifact = build_dir / "RunnerFunction"

    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", HANDLER_PROBE, str(artifact)],
        env=lambda_environment(build_dir, work_root), cwd=tmp_path,
        capture_output=True, text=True, check=False,
    )

    assert done.returncode == 0, done.stderr[-4000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    for name, path in probe["modules"].items():
        assert Path(path).is_relative_to(artifact), (name, path)
    # The cold start's objects are frozen out of the collector's walks, which are on again.
    assert probe["collector"]["enabled"] is True
    assert probe["collector"]["frozen"] > 10_000
    result = probe["result"]
    assert result["status"] == "failed"
    assert result["error"]["type"] == "Task.InvalidPayload"
    assert result["error"]["retryable"] is False


def test_cold_start_compiles_nothing_when_every_file_is_dated_as_zipped(
        build_dir: Path, tmp_path: Path) -> None:
    """Lambda's copy of the code is dated 1980-01-01 and read-only: a module whose bytecode is
    stale there is compiled again on every cold start (`python -v` says so)."""
    artifact = tmp_path / "task"
    shutil.copytree(build_dir / "RunnerFunction", artifact, symlinks=True)
    date_as_zipped(artifact)
    work_root = tmp_path / "work"
    work_root.mkdir()
    env = {**lambda_environment(build_dir, work_root), "LAMBDA_TASK_ROOT": str(artifact),
           "PYTHONDONTWRITEBYTECODE": "1"}

    done = subprocess.run(
        [sys.executable, "-I", "-S", "-v", "-c", HANDLER_PROBE, str(artifact)],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=False,
    )

    assert done.returncode == 0, done.stderr[-4000:]
    loaded = [line for line in done.stderr.splitlines() if line.startswith("# code object from")]
    from_source = [line for line in loaded if line.endswith(".py") and str(artifact) in line]
    assert len(loaded) > 100
    assert from_source == []
    assert "bytecode is stale" not in done.stderr
