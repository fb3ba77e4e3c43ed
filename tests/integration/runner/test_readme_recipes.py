"""The README's bundle recipes are the commands the tests build with, and they work as written.

The Go and esbuild recipes run line by line, as a reader pastes them, in a scratch project; the
Rust ones (whose cold builds take minutes) must hold the exact cargo-lambda command that builds
the Rust fixtures (`tests/support/toolchains.py`) and the Rust/Polars sample
(`devstack.transfer_stats`), which every other test then runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from devstack import transfer_stats
from devstack.stack import LocalStack
from tests.support import toolchains

REPO = Path(__file__).resolve().parents[3]
README = REPO / "README.md"
UDF_RUNNER = ".venv/bin/udf-runner"
HANDLER = "export const handler = async (event) => ({ echoed: event, node: process.version });\n"


def recipe(name: str) -> list[str]:
    """The command lines of the README's `<!-- recipe: name -->` block, comments left out."""
    match = re.search(rf"<!-- recipe: {name} -->\n```sh\n(.*?)```", README.read_text(), re.S)
    assert match, f"no {name} recipe in the README"
    return [line for line in match[1].splitlines() if line and not line.startswith("#")]


def _run_as_written(lines: list[str], cwd: Path, stack: LocalStack) -> dict[str, object]:
    """Run each line with bash; the last one (`udf-runner invoke`) prints the result."""
    env = {**os.environ, **stack.access.to_environ(),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/go/bin",
                                    os.environ.get("PATH", "")])}
    (cwd / "event.json").write_text(json.dumps({"k": 1}))
    *build, invoke = lines
    for line in build:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=cwd, env=env,
                              capture_output=True, text=True, check=False, timeout=600)
        assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
    assert invoke.startswith(f"{UDF_RUNNER} invoke ")
    argv = [str(REPO / UDF_RUNNER), *invoke.split()[1:], "--json"]
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result


def test_the_rust_recipe_is_how_the_fixtures_are_built() -> None:
    lines = recipe("rust")

    assert " ".join(toolchains.RUST_RELEASE) in lines
    assert lines[-1].startswith(f"{UDF_RUNNER} invoke target/lambda/")


def test_the_go_recipe_builds_a_bundle_that_runs(tmp_path: Path,
                                                 local_stack: LocalStack) -> None:
    lines = recipe("go")
    build = " ".join([*(f"{k}={v}" for k, v in toolchains.GO_ENV.items()),
                      *toolchains.GO_BUILD, "."])
    assert build in lines
    assert " ".join(toolchains.ZIP) in lines
    pinned = re.search(r"aws-lambda-go (v\S+)", (toolchains.GO_FIXTURE / "go.mod").read_text())
    assert pinned
    assert f"go get github.com/aws/aws-lambda-go@{pinned[1]}" in lines
    # A new module holding one of the fixtures' main packages, as a reader starts.
    shutil.copy(toolchains.GO_FIXTURE / "sigterm" / "main.go", tmp_path / "main.go")

    result = _run_as_written(lines, tmp_path, local_stack)

    assert result["status"] == "succeeded", result["error"]
    assert result["response"] == {"event": {"k": 1}}


def test_the_esbuild_recipe_builds_a_bundle_that_runs(tmp_path: Path,
                                                      local_stack: LocalStack) -> None:
    install, *lines = recipe("esbuild")
    assert install == "npm install --save-dev esbuild"
    # The install is the samples' own `npm ci` (pinned esbuild), done by `make setup`.
    (tmp_path / "node_modules").symlink_to(REPO / "samples" / "node_modules")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.mjs").write_text(HANDLER)

    result = _run_as_written(lines, tmp_path, local_stack)

    assert result["status"] == "succeeded", result["error"]
    assert result["response"]["echoed"] == {"k": 1}  # type: ignore[index]


def test_the_transfer_stats_recipe_builds_and_runs_the_polars_sample(
        transfer_stats_zip: Path, local_stack: LocalStack, work_root: Path,
        tmp_path: Path) -> None:
    cd, build, back, run_task = recipe("transfer-stats")
    assert (cd, build, back) == ("cd samples/transfer-stats", " ".join(transfer_stats.BUILD),
                                 "cd ../..")
    argv = run_task.split()
    assert argv[:3] == [UDF_RUNNER, "run-task", "samples/transfer-stats.task.json"]
    # What that build writes in the crate's target/ is what the cache holds (the same command
    # in its own target dir): a second cold Polars build here would take minutes.
    bundle, outputs = argv.index("--bundle") + 1, argv.index("--outputs") + 1
    assert argv[bundle] == "samples/transfer-stats/target/lambda/transfer-stats/bootstrap.zip"
    argv[bundle], argv[outputs] = str(transfer_stats_zip), str(tmp_path / "out")
    env = {**os.environ, **local_stack.access.to_environ(), "UDF_RUNNER_WORK_ROOT": str(work_root)}

    done = subprocess.run([str(REPO / UDF_RUNNER), *argv[1:], "--json"], cwd=REPO, env=env,
                          capture_output=True, text=True, check=False, timeout=300)

    assert done.returncode == 0, done.stdout + done.stderr
    response = json.loads(done.stdout)["response"]
    assert json.loads((tmp_path / "out" / "transfer-stats.json").read_text())["tokens"] == \
        response["tokens"]
