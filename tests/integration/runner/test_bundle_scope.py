"""What a bundle can do with what it is given: with only its TRACE_* variables and the task's
scoped credentials, an unmodified AWS SDK queries a dataset and writes the output object, and
everything outside the task's scope is refused (by the local services, which enforce it)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from devstack.bundles import zip_files
from tests.support.tasks import Tasks, response_of

NODE_FIXTURES = Path(__file__).parents[2] / "fixtures" / "node"
ESBUILD = NODE_FIXTURES / "node_modules" / ".bin" / "esbuild"


@pytest.fixture(scope="module")
def sdk_bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The handler bundled with the AWS SDK for JavaScript v3 by esbuild, as authors ship it."""
    if not ESBUILD.exists():
        pytest.fail("the Node fixtures are not installed: run `make setup`")
    out = tmp_path_factory.mktemp("sdk") / "index.js"
    # CommonJS output, as SAM's esbuild builds ship the SDK (its internals `require` Node's own
    # modules, which an ESM bundle cannot do without a shim).
    subprocess.run([str(ESBUILD), "handlers/sdk-scope/index.mjs", "--bundle", "--platform=node",
                    "--format=cjs", "--target=node24", "--log-level=warning",
                    f"--outfile={out}"], cwd=NODE_FIXTURES, check=True)
    return zip_files({"index.js": (out.read_bytes(), 0o644)})


def test_a_bundle_reaches_data_only_within_its_scope(tasks: Tasks, sdk_bundle: bytes) -> None:
    result = tasks.run_bundle(sdk_bundle, runtime="nodejs", handler="index.handler",
                              inputs={"datasets": ["erc20_transfers"]}, timeout_ms=20_000)

    got = response_of(result)
    assert got["transfers"] == 5000
    assert got["read_back"] == "allowed"
    assert got["other_dataset"] == 403
    assert got["outside_prefix"] == got["other_bucket"] == got["bundle_bucket"] == "AccessDenied"
    written = f"tests/{result.task_id}/summary.json"
    body = tasks.stack.access.client("s3").get_object(Bucket="udf-outputs", Key=written)["Body"]
    assert json.loads(body.read()) == {"transfers": 5000}
