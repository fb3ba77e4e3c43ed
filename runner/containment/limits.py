"""Who the child runs as and the resource limits it starts with (`Confinement`, applied between
fork and exec by `runner.invoke.child`).

- No core dumps: a core file would write the bundle's memory, credentials included, to /tmp.
- File size, open files: bounded by settings (Lambda itself allows 1,024 descriptors).
- CPU seconds: the deadline's worth on every CPU, plus one; the runner stops the child at the
  deadline anyway, so this only matters when the runner itself cannot (stopped by its child).
- Data segment, not address space: RLIMIT_AS breaks V8 and WebAssembly, which reserve far more
  address space than they use, while RLIMIT_DATA counts private writable mappings (malloc and
  anonymous mmap alike, since Linux 4.7).
- Processes: RLIMIT_NPROC counts every process and thread of the real uid, not just the
  child's, so the limit is what the uid runs now plus the bundle's allowance. With the runner's
  uid that leaves the runner its own room; with a dedicated uid it bounds the bundle alone.

A limit above the runner's own hard limit cannot be set (the child would fail to start), so each
is capped there.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass, field

from runner.settings import Settings

__all__ = ["MIB", "Confinement", "child_rlimits", "cpu_seconds", "data_bytes"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class Confinement:
    """The uid/gid the child runs as (None: the runner's), its resource limits, and whether it
    gets the system-call filter (`runner.containment.seccomp`)."""

    user: int | None = None
    group: int | None = None
    rlimits: Mapping[int, int] = field(default_factory=dict)  # resource -> soft and hard value
    umask: int = 0o022
    confined: bool = False  # fresh session keyring, no_new_privs, the seccomp filter
    clear_keyrings: bool = False  # empty the uid's own keyrings first (not a person's uid)


def cpu_seconds(timeout_ms: int) -> int:
    """CPU time the child may use: the whole deadline on every CPU it may run on, plus one."""
    return math.ceil(timeout_ms / 1000 * len(os.sched_getaffinity(0))) + 1


def data_bytes(settings: Settings) -> int:
    """The child's data segment: the setting, or the function's whole memory size."""
    return settings.child_max_data_bytes or settings.function_memory_mb * MIB


def child_rlimits(settings: Settings, *, timeout_ms: int, tasks_in_use: int) -> dict[int, int]:
    """Limits for a child whose uid already runs `tasks_in_use` processes and threads."""
    wanted = {
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_FSIZE: settings.child_max_file_bytes,
        resource.RLIMIT_NOFILE: settings.child_max_open_files,
        resource.RLIMIT_CPU: cpu_seconds(timeout_ms),
        resource.RLIMIT_DATA: data_bytes(settings),
        resource.RLIMIT_NPROC: tasks_in_use + settings.child_max_processes,
    }
    return {res: _within_hard_limit(res, value) for res, value in wanted.items()}


def _within_hard_limit(res: int, value: int) -> int:
    hard = resource.getrlimit(res)[1]
    return value if hard == resource.RLIM_INFINITY else min(value, hard)
