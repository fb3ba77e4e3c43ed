"""`udf-runner invoke --runtime nodejs`: the console command runs a Node handler folder on the
layer `make layer` built in the repository, without UDF_RUNNER_NODE_LAYER being set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devstack.bundles import zip_files

REPO = Path(__file__).resolve().parents[3]
HANDLERS = REPO / "tests" / "fixtures" / "node" / "handlers"
UDF_RUNNER = Path(sys.executable).parent / "udf-runner"


def run(work_root: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run `udf-runner invoke --json ARGS` as a user would."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("UDF_RUNNER_")}
    env["UDF_RUNNER_WORK_ROOT"] = str(work_root)
    return subprocess.run([str(UDF_RUNNER), "invoke", "--json", *args], input=stdin, env=env,
                          capture_output=True, text=True, check=False, timeout=120)


def udf_runner(work_root: Path, *args: str, stdin: str = "") -> tuple[int, dict[str, Any]]:
    """Run the console command; its exit status and the result it printed."""
    done = run(work_root, *args, stdin=stdin)
    assert done.returncode in (0, 1), done.stderr
    printed = json.loads(done.stdout)
    assert isinstance(printed, dict)
    return done.returncode, printed


def _zip(tmp_path: Path, files: dict[str, bytes]) -> Path:
    path = tmp_path / "bundle.zip"
    path.write_bytes(zip_files({name: (content, 0o644) for name, content in files.items()}))
    return path


ESM = (HANDLERS / "esm-mjs" / "index.mjs").read_bytes()
#: What macOS adds to a zip: Finder's resource forks and folder view settings.
FINDER_LITTER = {"__MACOSX/._index.mjs": b"\0\5\26\7", ".DS_Store": b"\0\0\0\1Bud1"}


@pytest.mark.parametrize(("fixture", "handler", "kind"), [
    ("esm-mjs", "index.handler", "mjs"),
    ("nested", "src/handlers/alert.handler", "nested"),
])
def test_invoke_runs_a_node_handler_folder(work_root: Path, fixture: str, handler: str,
                                           kind: str) -> None:
    status, printed = udf_runner(work_root, "--runtime", "nodejs", "--handler", handler,
                                 "--event", "-", str(HANDLERS / fixture),
                                 stdin='{"amount": 1}')

    assert status == 0
    assert printed["status"] == "succeeded"
    assert printed["response"]["kind"] == kind
    assert set(printed["timings_ms"]) >= {"init", "invoke"}


def test_invoke_reports_a_missing_handler_file(work_root: Path) -> None:
    status, printed = udf_runner(work_root, "--runtime", "nodejs", "--handler", "nope.handler",
                                 str(HANDLERS / "esm-mjs"))

    assert status == 1
    assert printed["status"] == "failed"
    assert printed["error"]["type"] == "Bundle.MissingEntrypoint"


@pytest.mark.parametrize("litter", [{}, FINDER_LITTER])
def test_a_node_zip_without_runtime_runs_as_node_and_says_so(work_root: Path, tmp_path: Path,
                                                             litter: dict[str, bytes]) -> None:
    done = run(work_root, str(_zip(tmp_path, {"index.mjs": ESM, **litter})))

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["response"]["kind"] == "mjs"
    assert ("udf-runner: the bundle has no bootstrap and one Node.js module: running it with "
            "--runtime nodejs --handler index.handler\n") in done.stderr


def test_a_zip_with_several_node_modules_names_the_choices(work_root: Path,
                                                           tmp_path: Path) -> None:
    done = run(work_root, str(_zip(tmp_path, {"index.mjs": ESM, "app.mjs": ESM})))

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("udf-runner: --handler: ")
    assert done.stderr.endswith("--runtime nodejs --handler one of index.handler, "
                                "app.handler\n")


@pytest.mark.parametrize("how", [[], ["--runtime", "nodejs", "--handler", "index.handler"]])
def test_a_zip_of_the_folder_names_the_folder_and_the_fix(work_root: Path, tmp_path: Path,
                                                          how: list[str]) -> None:
    bundle = _zip(tmp_path, {"dist/index.mjs": ESM, "__MACOSX/dist/._index.mjs": b"\0"})

    status, printed = udf_runner(work_root, *how, str(bundle))

    assert status == 1
    error = printed["error"]
    assert error["type"] == "Bundle.MissingEntrypoint"
    assert error["message"].endswith(
        "its root holds dist/; the bundle's files are under dist/: zip the folder's contents, "
        "not the folder (cd dist && zip -r ../bundle.zip .)")


@pytest.mark.parametrize("args", [["--handler", "index"], ["--runtime", "nodejs"]])
def test_a_node_handler_flag_that_cannot_work_is_bad_usage_with_the_fix(
        work_root: Path, args: list[str]) -> None:
    done = run(work_root, *args, str(HANDLERS / "cjs"))

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("udf-runner: --handler: a nodejs bundle needs a handler of the form "
                           "'path/file.export'; for this bundle: --handler index.handler\n")
