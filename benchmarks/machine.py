"""What the figures were measured on: the machine, the filesystem, the isolation."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from runner.containment import procfs

#: CPU features that change the figures: SHA-256 and CRC32/inflate speed, vector widths.
_FLAGS = frozenset({"sha_ni", "avx2", "avx512f", "pclmulqdq", "vaes"})


def describe(work_dir: Path, node: Path) -> dict[str, Any]:
    """CPU, cores, kernel, OS, Python, memory, the filesystem of `work_dir`, tool versions."""
    return {
        "cpu": _cpuinfo("model name"),
        "cpu_flags": sorted(set(_cpuinfo("flags").split()) & _FLAGS),
        "hypervisor": "hypervisor" in _cpuinfo("flags").split(),
        "cpus_online": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "os": _os_release(),
        "python": sys.version.split()[0],
        "memory_gb": round(_meminfo("MemTotal") / 1024 / 1024, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **_processes(),
        "work_dir": str(work_dir),
        "work_dir_filesystem": filesystem_of(work_dir),
        "work_dir_device": block_device(work_dir),
        "isolation": "separate-uid" if os.geteuid() == 0 else "lambda or local (not root)",
        "node": _version([str(node), "--version"]),
        "unzip": _version(["unzip", "-v"]),
        "rustc": _version(["rustc", "--version"]),
    }


def filesystem_of(path: Path) -> str:
    """The type and device of the mount holding `path` (e.g. "ext4 /dev/vda")."""
    best = ("", "?", "?")
    for line in Path("/proc/mounts").read_text().splitlines():
        device, mount, kind, *_ = line.split()
        if Path(path).resolve().is_relative_to(mount) and len(mount) > len(best[0]):
            best = (mount, kind, device)
    return f"{best[1]} {best[2]} (mounted at {best[0]})"


def block_device(path: Path) -> str:
    """Whether the disk under `path` is rotational, and its kernel name (from sysfs)."""
    device = path.stat().st_dev
    sysfs = Path(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}")
    if not sysfs.exists():
        return "not a block device (tmpfs or similar)"
    disk = sysfs.resolve()
    if not (disk / "queue").exists():
        disk = disk.parent  # a partition: the queue is the whole disk's
    rotational = (disk / "queue" / "rotational").read_text().strip() == "1"
    return f"{disk.name}, {'rotational' if rotational else 'non-rotational'}"


def _processes() -> dict[str, int]:
    """How many processes /proc lists (every containment scan reads each), kernel threads
    (children of kthreadd, pid 2) among them."""
    procs = procfs.table()
    return {"processes": len(procs),
            "kernel_threads": sum(1 for p in procs.values() if 2 in (p.pid, p.ppid))}


def _cpuinfo(key: str) -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return platform.processor() or "unknown"


def _meminfo(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _os_release() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "unknown")
    except OSError:
        return "unknown"


def _version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        return "missing"
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"
