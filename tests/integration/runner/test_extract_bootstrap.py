"""A compiled x86-64 `bootstrap` survives zip and extraction executable, passes the entrypoint
check and runs; the same program built as a relocatable object is refused."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import pytest

from runner.bundle.extract import ExtractLimits, extract
from runner.errors import UnsupportedArchitectureError
from runner.runtimes.provided import check_bootstrap
from runner.settings import LAMBDA_UNZIPPED_LIMIT
from tests.support.bundles import zip_tree

LIMITS = ExtractLimits(max_entries=50_000, max_bytes=LAMBDA_UNZIPPED_LIMIT, max_ratio=100)
PROGRAM = '#include <stdio.h>\nint main(void) { puts("bootstrap ran"); return 0; }\n'

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="builds for this host")


def build_bundle(tmp_path: Path, *gcc_options: str) -> Path:
    """Compile PROGRAM as the bundle's bootstrap (mode 0755) and zip it."""
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "main.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-O1", *gcc_options, "-o", str(src / "bootstrap"),
                    str(tmp_path / "main.c")], check=True)
    return zip_tree(src, tmp_path / "bundle.zip")


def extracted(tmp_path: Path, bundle: Path) -> Path:
    task_root = tmp_path / "task"
    task_root.mkdir()
    extract(bundle, task_root, LIMITS)
    return task_root


@pytest.mark.parametrize("options", [(), ("-static", "-no-pie")], ids=["PIE", "static"])
def test_compiled_bootstrap_passes_and_runs(tmp_path: Path, options: tuple[str, ...]) -> None:
    task_root = extracted(tmp_path, build_bundle(tmp_path, *options))
    check_bootstrap(task_root)
    ran = subprocess.run([str(task_root / "bootstrap")], check=True, capture_output=True,
                         text=True)
    assert ran.stdout == "bootstrap ran\n"


def test_object_file_is_not_an_executable(tmp_path: Path) -> None:
    task_root = extracted(tmp_path, build_bundle(tmp_path, "-c"))
    with pytest.raises(UnsupportedArchitectureError, match="ELF x86-64 relocatable object"):
        check_bootstrap(task_root)
