"""The custom runtime (`provided`): the bundle's own `bootstrap` at its root, which linux/amd64
must be able to execute.

v1 runs linux/amd64 only (docs/adr/0003-udf-bundles.md), so a native bootstrap must be a
64-bit little-endian x86-64 ELF executable or shared object (PIE) for Linux (or the generic
System V ABI); a script with a `#!` line is fine too. Anything else is rejected before it is
started, saying what it is, so the author learns "this is an aarch64 binary" instead of reading
an exec error.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

from runner.bundle import BOOTSTRAP, Layout
from runner.containment.workdir import WorkDirs
from runner.errors import MissingEntrypointError, UnsupportedArchitectureError
from runner.invoke.child import ChildSpec
from runner.runtimes.environment import TaskEnvironment, lambda_env, task_env
from runner.settings import Settings

__all__ = ["check_bootstrap", "child_spec", "command", "describe_executable", "environment"]

_HEADER_BYTES = 64
_ELF_MAGIC = b"\x7fELF"
_ELF_CLASSES = {1: 32, 2: 64}
_ELF_LITTLE, _ELF_BIG = 1, 2
_ET_EXEC, _ET_DYN = 2, 3
_ELF_TYPES = {0: "file of no type", 1: "relocatable object", 4: "core dump"}
_EM_X86_64 = 62
_ELF_MACHINES = {
    2: "SPARC", 3: "i386", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 22: "s390",
    40: "ARM", 43: "SPARC V9", 50: "IA-64", 62: "x86-64", 183: "aarch64", 243: "RISC-V",
    258: "LoongArch",
}
#: OS ABIs a Linux kernel runs: the generic System V ABI (what GNU tools write) and GNU/Linux.
_LINUX_ABIS = frozenset({0, 3})
_ELF_ABIS = {1: "HP-UX", 2: "NetBSD", 6: "Solaris", 9: "FreeBSD", 12: "OpenBSD"}
_MACHO_MAGICS = {
    b"\xfe\xed\xfa\xce": ">", b"\xce\xfa\xed\xfe": "<",  # 32-bit, big / little endian
    b"\xfe\xed\xfa\xcf": ">", b"\xcf\xfa\xed\xfe": "<",  # 64-bit
}
_OTHER_FORMATS = (
    (b"\xca\xfe\xba\xbe", "a Mach-O universal binary (macOS) or a Java class file"),
    (b"MZ", "a PE (Windows) executable"),
    (b"\0asm", "a WebAssembly module"),
    (b"PK\x03\x04", "a zip archive"),
)
_MACHO_CPUS = {7: "i386", 0x01000007: "x86_64", 12: "arm", 0x0100000C: "arm64",
               18: "ppc", 0x01000012: "ppc64"}


def child_spec(dirs: WorkDirs, handler: str | None, task: TaskEnvironment,
               settings: Settings) -> ChildSpec:
    """How to start the bundle's `bootstrap`; raises before anything starts when it is missing
    or cannot run here."""
    check_bootstrap(dirs.task_root)
    return ChildSpec(argv=command(dirs), cwd=dirs.task_root,
                     env=environment(settings, dirs, handler, task))


def command(dirs: WorkDirs) -> list[str]:
    """A custom runtime runs the bundle's own `bootstrap`."""
    return [str(dirs.task_root / BOOTSTRAP)]


def environment(settings: Settings, dirs: WorkDirs, handler: str | None,
                task: TaskEnvironment) -> dict[str, str]:
    """The whole environment of a custom-runtime child (without `AWS_LAMBDA_RUNTIME_API`)."""
    # The task's own `env` goes first so that nothing in it can shadow the runtime's contract.
    env = {**task.user_env, **lambda_env(settings, dirs, dirs.task_root), **task_env(task)}
    if handler:
        env["_HANDLER"] = handler
    return env


def check_bootstrap(task_root: Path) -> None:
    """Refuse a bundle whose `bootstrap` is missing or cannot run on linux/amd64."""
    path = task_root / BOOTSTRAP
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise MissingEntrypointError(
            f"bundle has no {BOOTSTRAP!r} at its root (a custom runtime needs one); "
            f"{Layout.of_folder(task_root).describe('provided')}") from None
    except OSError as e:
        raise MissingEntrypointError(
            f"bundle's {BOOTSTRAP!r} at its root cannot be opened: {e.strerror}") from e
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise MissingEntrypointError(f"bundle's {BOOTSTRAP!r} at its root is {kind}")
        header = os.pread(fd, _HEADER_BYTES, 0)
    finally:
        os.close(fd)
    problem = describe_executable(header)
    if problem is not None:
        raise UnsupportedArchitectureError(
            f"bundle's {BOOTSTRAP!r} is {problem}; v1 runs only linux/amd64 (x86-64) "
            "executables or scripts with a '#!' line")


def describe_executable(header: bytes) -> str | None:
    """None if a file starting with `header` runs on linux/amd64, else what it is instead."""
    if header.startswith(b"#!"):
        return None
    if header.startswith(_ELF_MAGIC):
        return _describe_elf(header)
    if header[:4] in _MACHO_MAGICS:
        return _describe_macho(header)
    if not header:
        return "an empty file"
    return next((what for magic, what in _OTHER_FORMATS if header.startswith(magic)),
                "neither an ELF executable nor a script with a '#!' line")


def _describe_elf(header: bytes) -> str | None:
    if len(header) < 20:
        return "a truncated ELF file"
    bits = _ELF_CLASSES.get(header[4])
    if bits is None or header[5] not in (_ELF_LITTLE, _ELF_BIG):
        return "a corrupt ELF file"
    order = "<" if header[5] == _ELF_LITTLE else ">"
    elf_type, machine = struct.unpack_from(order + "HH", header, 16)
    name = _ELF_MACHINES.get(machine, f"machine {machine}")
    shape = ("" if bits == 64 else f"{bits}-bit ") + ("" if order == "<" else "big-endian ")
    what = f"ELF {shape}{name}"
    if (bits, order, machine) != (64, "<", _EM_X86_64):
        return f"an {what} binary"
    if elf_type not in (_ET_EXEC, _ET_DYN):
        kind = _ELF_TYPES.get(elf_type, f"file of type {elf_type}")
        return f"an {what} {kind}, not an executable"
    if header[7] not in _LINUX_ABIS:
        return f"an {what} binary for {_ELF_ABIS.get(header[7], f'OS ABI {header[7]}')}"
    return None


def _describe_macho(header: bytes) -> str:
    if len(header) < 8:
        return "a truncated Mach-O (macOS) file"
    (cpu,) = struct.unpack_from(_MACHO_MAGICS[header[:4]] + "I", header, 4)
    return f"a Mach-O (macOS) {_MACHO_CPUS.get(cpu, f'cpu type {cpu:#x}')} binary"
