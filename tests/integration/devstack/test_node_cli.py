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

REPO = Path(__file__).resolve().parents[3]
HANDLERS = REPO / "tests" / "fixtures" / "node" / "handlers"
UDF_RUNNER = Path(sys.executable).parent / "udf-runner"


def udf_runner(work_root: Path, *args: str, stdin: str = "") -> tuple[int, dict[str, Any]]:
    """Run the console command; its exit status and the result it printed."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("UDF_RUNNER_")}
    env["UDF_RUNNER_WORK_ROOT"] = str(work_root)
    done = subprocess.run([str(UDF_RUNNER), "invoke", "--json", *args], input=stdin, env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    printed = json.loads(done.stdout)
    assert isinstance(printed, dict)
    return done.returncode, printed


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
