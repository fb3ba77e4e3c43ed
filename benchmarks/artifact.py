"""The function as `sam build` builds it, and the official Python runtime client beside it.

The cold-start rows run the runner the way Lambda does: the base interpreter (not the dev venv,
whose aws-sam-cli drags awscrt and pyOpenSSL into botocore), the function's pinned dependencies
installed for Lambda's platform (`scripts/Makefile`'s pip flags), `runner/` copied next to them,
everything byte-compiled as that Makefile does, and `python -m awslambdaric` as the entry point.
Every file is then dated 1980-01-01, as in the zip SAM uploads, so that bytecode Lambda would
find stale is found stale here too. The dependencies are cached under benchmarks/results, keyed
by the pins; `runner/` is copied fresh for every suite run.
"""

from __future__ import annotations

import compileall
import hashlib
import os
import py_compile
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.fixtures import REPO, RESULTS

#: `scripts/Makefile`'s flags: wheels for Lambda's python3.13 on x86_64, whatever builds them.
LAMBDA_PIP = ["--platform", "manylinux2014_x86_64", "--implementation", "cp",
              "--python-version", "3.13", "--abi", "cp313", "--only-binary=:all:"]
#: `scripts/Makefile`'s bytecode: valid whatever the files' dates (see `build`).
BYTECODE = py_compile.PycInvalidationMode.UNCHECKED_HASH
#: The date every entry of SAM's zip carries, and so every file of the function in Lambda.
ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z
#: The runtime client, as pinned for development (pyproject.toml's dev extra).
RUNTIME_CLIENT = "awslambdaric==4.2.2"
REQUIREMENTS = REPO / "runner" / "requirements.txt"


@dataclass(frozen=True)
class Artifact:
    """Where the built function and the runtime client are, and the interpreter to run them."""

    python: Path  # the base CPython 3.13, without the venv's packages
    task_root: Path  # LAMBDA_TASK_ROOT: runner/ and its dependencies
    runtime_client: Path  # awslambdaric and its dependencies

    def python_path(self, *extra: Path) -> str:
        """PYTHONPATH for a process of this artifact (Lambda puts the task root first)."""
        return ":".join(str(path) for path in (self.task_root, self.runtime_client, *extra))


def base_python() -> Path:
    """The interpreter the venv was made from."""
    return Path(getattr(sys, "_base_executable", sys.executable))


def build(dest: Path) -> Artifact:
    """The artifact in `dest` (runner/ copied now, the dependencies from the cache)."""
    pins = REQUIREMENTS.read_bytes() + RUNTIME_CLIENT.encode() + BYTECODE.name.encode()
    key = hashlib.sha256(pins).hexdigest()[:16]
    deps = _installed(RESULTS / f"artifact-{key}" / "deps", ["--requirement", str(REQUIREMENTS)])
    ric = _installed(RESULTS / f"artifact-{key}" / "ric", [RUNTIME_CLIENT])
    task_root = dest / "task"
    shutil.copytree(deps, task_root, symlinks=True)
    shutil.copytree(REPO / "runner", task_root / "runner",
                    ignore=shutil.ignore_patterns("__pycache__", "requirements.txt"))
    compileall.compile_dir(task_root / "runner", quiet=1, invalidation_mode=BYTECODE)
    date_as_zipped(task_root)
    return Artifact(python=base_python(), task_root=task_root, runtime_client=ric)


def date_as_zipped(root: Path) -> None:
    """Give every file the date Lambda gives it: the one in SAM's zip."""
    for folder, _, files in os.walk(root):
        for name in files:
            os.utime(Path(folder, name), (ZIP_EPOCH, ZIP_EPOCH), follow_symlinks=False)


def _installed(target: Path, what: list[str]) -> Path:
    """`pip install --target` once; later runs reuse the folder."""
    done = target.with_name(target.name + ".done")
    if done.exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-input", "--no-compile",
                    "--disable-pip-version-check", *LAMBDA_PIP, "--target", str(target), *what],
                   check=True)
    compileall.compile_dir(target, quiet=1, workers=0, invalidation_mode=BYTECODE)
    done.touch()
    return target
