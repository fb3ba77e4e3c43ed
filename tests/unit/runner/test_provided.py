"""The custom runtime's `bootstrap`: present, a regular file, and runnable on linux/amd64.

Foreign executables are a few header bytes written here (no committed binaries); the real
x86-64 ELF is a copy of this machine's /bin/true.
"""

from __future__ import annotations

import os
import platform
import shutil
import struct
from pathlib import Path

import pytest

from runner.errors import MissingEntrypointError, UnsupportedArchitectureError
from runner.runtimes.provided import check_bootstrap, describe_executable

EM_386, EM_X86_64, EM_ARM, EM_AARCH64, EM_S390, EM_RISCV = 3, 62, 40, 183, 22, 243
ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4


def elf_header(*, bits: int = 64, little: bool = True, elf_type: int = ET_DYN,
               machine: int = EM_X86_64, os_abi: int = 0) -> bytes:
    """The first 64 bytes of an ELF file as `readelf -h` would describe them."""
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 1 if little else 2, 1, os_abi])
    ident += bytes(16 - len(ident))
    order = "<" if little else ">"
    return (ident + struct.pack(order + "HHI", elf_type, machine, 1)).ljust(64, b"\0")


def macho_header(magic: bytes, cpu: int) -> bytes:
    order = "<" if magic[0] in (0xCE, 0xCF) else ">"
    return magic + struct.pack(order + "II", cpu, 3) + bytes(20)


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    root = tmp_path / "task"
    root.mkdir()
    return root


def put_bootstrap(task_root: Path, content: bytes) -> None:
    path = task_root / "bootstrap"
    path.write_bytes(content)
    path.chmod(0o755)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="needs an x86-64 host's /bin/true")
def test_real_x86_64_executable_passes(task_root: Path) -> None:
    shutil.copy(os.path.realpath("/bin/true"), task_root / "bootstrap")
    check_bootstrap(task_root)


@pytest.mark.parametrize("script", [b"#!/bin/sh\nexec ./app\n", b"#!/usr/bin/env node\n",
                                    b"#!"])
def test_script_with_a_shebang_passes(task_root: Path, script: bytes) -> None:
    put_bootstrap(task_root, script)
    check_bootstrap(task_root)


@pytest.mark.parametrize("header", [elf_header(elf_type=ET_EXEC), elf_header(elf_type=ET_DYN),
                                    elf_header(os_abi=3)],
                         ids=["static ET_EXEC", "PIE ET_DYN", "GNU/Linux ABI"])
def test_x86_64_elf_executables_pass(task_root: Path, header: bytes) -> None:
    put_bootstrap(task_root, header + bytes(1000))
    check_bootstrap(task_root)


UNSUPPORTED = [
    ("aarch64", elf_header(machine=EM_AARCH64), "an ELF aarch64 binary"),
    ("i386", elf_header(bits=32, machine=EM_386, elf_type=ET_EXEC), "an ELF 32-bit i386 binary"),
    ("x32 is not x86-64 Linux", elf_header(bits=32, machine=EM_X86_64),
     "an ELF 32-bit x86-64 binary"),
    ("32-bit ARM", elf_header(bits=32, machine=EM_ARM), "an ELF 32-bit ARM binary"),
    ("big-endian s390", elf_header(little=False, machine=EM_S390),
     "an ELF big-endian s390 binary"),
    ("RISC-V", elf_header(machine=EM_RISCV), "an ELF RISC-V binary"),
    ("unknown machine", elf_header(machine=9999), "an ELF machine 9999 binary"),
    ("relocatable object", elf_header(elf_type=ET_REL),
     "an ELF x86-64 relocatable object, not an executable"),
    ("core dump", elf_header(elf_type=ET_CORE), "an ELF x86-64 core dump, not an executable"),
    ("FreeBSD", elf_header(os_abi=9), "an ELF x86-64 binary for FreeBSD"),
    ("truncated ELF", b"\x7fELF\x02\x01", "a truncated ELF file"),
    ("corrupt ELF", b"\x7fELF\x07\x01" + bytes(58), "a corrupt ELF file"),
    ("Mach-O arm64", macho_header(b"\xcf\xfa\xed\xfe", 0x0100000C),
     "a Mach-O (macOS) arm64 binary"),
    ("Mach-O x86_64", macho_header(b"\xcf\xfa\xed\xfe", 0x01000007),
     "a Mach-O (macOS) x86_64 binary"),
    ("Mach-O 32-bit big-endian ppc", macho_header(b"\xfe\xed\xfa\xce", 18),
     "a Mach-O (macOS) ppc binary"),
    ("Mach-O universal", b"\xca\xfe\xba\xbe\x00\x00\x00\x02" + bytes(56),
     "a Mach-O universal binary"),
    ("PE", b"MZ\x90\x00" + bytes(60), "a PE (Windows) executable"),
    ("WebAssembly", b"\x00asm\x01\x00\x00\x00", "a WebAssembly module"),
    ("zip", b"PK\x03\x04" + bytes(26), "a zip archive"),
    ("empty", b"", "an empty file"),
    ("script without a shebang", b"echo hello\n", "neither an ELF executable nor a script"),
    ("shebang after a BOM", b"\xef\xbb\xbf#!/bin/sh\n", "neither an ELF executable nor a script"),
]


@pytest.mark.parametrize(("content", "what"), [(c, w) for _, c, w in UNSUPPORTED],
                         ids=[i for i, _, _ in UNSUPPORTED])
def test_what_cannot_run_on_linux_amd64_is_named(task_root: Path, content: bytes,
                                                 what: str) -> None:
    put_bootstrap(task_root, content)
    with pytest.raises(UnsupportedArchitectureError) as caught:
        check_bootstrap(task_root)
    assert f"'bootstrap' is {what}" in caught.value.message
    assert "linux/amd64" in caught.value.message
    assert caught.value.error_type == "Bundle.UnsupportedArchitecture"


def test_missing_bootstrap(task_root: Path) -> None:
    (task_root / "index.js").write_text("exports.handler = async () => 1;\n")
    with pytest.raises(MissingEntrypointError, match="no 'bootstrap' at its root") as caught:
        check_bootstrap(task_root)
    assert caught.value.message.endswith(
        "its root holds index.js; it looks like a Node.js bundle: run it with runtime 'nodejs' "
        "and handler 'index.handler'")


def test_a_bundle_zipped_with_its_folder_is_told_so(task_root: Path) -> None:
    (task_root / "build").mkdir()
    put_bootstrap(task_root / "build", b"#!/bin/sh\n")
    with pytest.raises(MissingEntrypointError) as caught:
        check_bootstrap(task_root)
    assert "the bundle's files are under build/: zip the folder's contents, not the folder " \
           "(cd build && zip -r ../bundle.zip .)" in caught.value.message


def test_bootstrap_in_a_subdirectory_does_not_count(task_root: Path) -> None:
    (task_root / "bin").mkdir()
    put_bootstrap(task_root / "bin", b"#!/bin/sh\n")
    with pytest.raises(MissingEntrypointError, match="no 'bootstrap' at its root"):
        check_bootstrap(task_root)


def test_directory_named_bootstrap(task_root: Path) -> None:
    (task_root / "bootstrap").mkdir()
    with pytest.raises(MissingEntrypointError, match="'bootstrap' at its root is a directory"):
        check_bootstrap(task_root)


def test_fifo_named_bootstrap_is_refused_without_blocking(task_root: Path) -> None:
    os.mkfifo(task_root / "bootstrap")
    with pytest.raises(MissingEntrypointError, match="is not a regular file"):
        check_bootstrap(task_root)


def test_symlink_named_bootstrap_is_not_followed(task_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"#!/bin/sh\n")
    (task_root / "bootstrap").symlink_to(target)
    with pytest.raises(MissingEntrypointError, match="cannot be opened"):
        check_bootstrap(task_root)


def test_describe_executable_accepts_only_what_runs() -> None:
    assert describe_executable(b"#!/bin/bash\n") is None
    assert describe_executable(elf_header()) is None
    assert describe_executable(elf_header(machine=EM_AARCH64)) == "an ELF aarch64 binary"
