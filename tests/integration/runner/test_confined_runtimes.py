"""Every kind of bundle still runs under the child's confinement (no_new_privs, the seccomp
filter, a fresh session keyring, the Runtime API serving only the attempt's uid): Rust, a
statically linked Go binary that starts and kills children, bash + curl, Python's
awslambdaric and the Node.js runtime, each through the whole pipeline."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from devstack.bundles import zip_folder
from tests.support import fixture_bundles as runtimes
from tests.support.tasks import Tasks, response_of

NODE_HANDLERS = runtimes.FIXTURES / "node" / "handlers"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("confined")
    return {
        "rust": runtimes.build_rust(root / "rust", root / "rust-target"),
        "go": runtimes.build_go(root / "go"),
        "python": runtimes.build_python_ric(root / "python"),
    }


def _run(tasks: Tasks, folder: Path, **payload: Any) -> Any:
    result = tasks.run_bundle(zip_folder(folder), **payload)
    assert tasks.pipeline._containment.controls.child_filter
    response_of(result)
    return result.response if result.response_base64 is None else \
        base64.b64decode(result.response_base64).decode()


def test_rust(tasks: Tasks, built: dict[str, Path]) -> None:
    got = _run(tasks, built["rust"], handler="echo", event={"n": 1})
    assert got["event"] == {"n": 1}


def test_static_go_starts_and_kills_children(tasks: Tasks, built: dict[str, Path]) -> None:
    got = _run(tasks, built["go"], handler=None, event={"n": 2})
    assert got == {"event": {"n": 2}, "ran": "ok", "killed": "ok"}


def test_bash_and_curl(tasks: Tasks) -> None:
    got = _run(tasks, runtimes.bash_bundle("tutorial"), handler="function.handler",
               event={"n": 3})
    assert got == """Echoing request: '{"n":3}'"""


def test_python_awslambdaric(tasks: Tasks, built: dict[str, Path]) -> None:
    got = _run(tasks, built["python"], handler="handler.echo", event={"n": 4})
    assert got["event"] == {"n": 4}


def test_node(tasks: Tasks) -> None:
    got = _run(tasks, NODE_HANDLERS / "cjs", runtime="nodejs", handler="index.handler",
               event={"n": 5})
    assert got["echo"] == {"n": 5}
