"""POSIX message queues: like System V IPC objects they outlive every process, so a queue one
attempt left could carry data to the next.

The child's filter (`seccomp`) denies every `mq_*` call, so a bundle cannot make one.
Underneath that, where an mqueue filesystem is mounted (usually /dev/mqueue; Lambda has none)
each queue is a file there owned by its creator, and the scratch cleanup removes those of the
child's uid like any other file (unlink there is mq_unlink).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MOUNTS", "mounts"]

MOUNTS = Path("/proc/self/mounts")


def mounts(table: str | None = None) -> list[Path]:
    """Where mqueue filesystems are mounted (in `table`, /proc/self/mounts by default)."""
    if table is None:
        try:
            table = MOUNTS.read_text()
        except OSError:
            return []
    found = []
    for line in table.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "mqueue":
            # Spaces and the like in a mount point are written as octal escapes.
            found.append(Path(fields[1].encode().decode("unicode_escape")))
    return found
