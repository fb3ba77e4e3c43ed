"""The README's esbuild recipes, run: the AWS SDK bundled as CommonJS or as ESM with the
`createRequire` banner, and source-mapped stack traces with `NODE_OPTIONS=--enable-source-maps`.

Each bundle is built by the fixtures' own esbuild with the README's flags and run through the
whole pipeline on the local stack, on the Node layer.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devstack.bundles import zip_files
from tests.support.tasks import Tasks, response_of

NODE_FIXTURES = Path(__file__).parents[2] / "fixtures" / "node"
ESBUILD = NODE_FIXTURES / "node_modules" / ".bin" / "esbuild"
#: The README's flags, common to every recipe.
COMMON = ["--bundle", "--platform=node", "--target=node24", "--log-level=error"]
#: The README's banner: gives an ESM bundle the `require` that bundled CommonJS code (the AWS
#: SDK's) calls for Node's own modules.
ESM_BANNER = ("--banner:js=import { createRequire } from 'node:module'; "
              "const require = createRequire(import.meta.url);")


def esbuild(entry: str, out: Path, *flags: str) -> dict[str, tuple[bytes, int]]:
    """Bundle `entry` (relative to the fixtures) into `out`; the zip's files."""
    if not ESBUILD.exists():
        pytest.fail("the Node fixtures are not installed: run `make setup`")
    subprocess.run([str(ESBUILD), entry, *COMMON, *flags, f"--outfile={out}"],
                   cwd=NODE_FIXTURES, check=True)
    return {path.name: (path.read_bytes(), 0o644) for path in out.parent.iterdir()}


@pytest.mark.parametrize(("name", "flags"), [
    ("index.js", ["--format=cjs"]),
    ("index.mjs", ["--format=esm", ESM_BANNER]),
])
def test_the_readme_recipes_bundle_the_aws_sdk(tasks: Tasks, tmp_path: Path, name: str,
                                               flags: list[str]) -> None:
    files = esbuild("handlers/sdk-scope/index.mjs", tmp_path / name, *flags)
    result = tasks.run_bundle(zip_files(files), runtime="nodejs", handler="index.handler",
                              inputs={"datasets": ["erc20_transfers"]}, timeout_ms=20_000)

    got = response_of(result)
    assert got["transfers"] == 5000
    assert got["read_back"] == "allowed"


def test_esm_without_the_banner_fails_as_the_readme_says(tasks: Tasks, tmp_path: Path) -> None:
    files = esbuild("handlers/sdk-scope/index.mjs", tmp_path / "index.mjs", "--format=esm")
    result = tasks.run_bundle(zip_files(files), runtime="nodejs", handler="index.handler",
                              inputs={"datasets": ["erc20_transfers"]}, timeout_ms=20_000)

    assert result.error is not None
    assert result.error.type == "Runtime.InitError"
    assert "Dynamic require of" in result.error.message
    assert "is not supported" in result.error.message


@pytest.mark.parametrize("source_maps", [True, False])
def test_source_maps_put_the_sources_in_the_stack_trace(tasks: Tasks, tmp_path: Path,
                                                        source_maps: bool) -> None:
    files = esbuild("handlers/source-maps/src/index.mjs", tmp_path / "index.js",
                    "--format=cjs", "--minify", "--sourcemap")
    env = {"NODE_OPTIONS": "--enable-source-maps"} if source_maps else {}
    result = tasks.run_bundle(zip_files(files), runtime="nodejs", handler="index.handler",
                              event={"transfer": {}}, env=env)

    assert result.error is not None
    function_error = result.error.function_error
    assert function_error is not None
    assert function_error.error_type == "RangeError"
    frames = "\n".join(function_error.stack_trace)
    # The throw is on line 3 of check.mjs; without the map, only the one-line bundle is named.
    assert ("handlers/source-maps/src/check.mjs:3:" in frames) is source_maps, frames
    assert ("index.js:1:" in frames) is not source_maps, frames
