"""System V IPC objects (shared memory segments, message queues, semaphore sets).

They outlive every process that used them, so a bundle could leave data in one for the next
attempt to find. /proc/sysvipc lists them with their owner and creator; removal is IPC_RMID.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IPC_RMID", "SYSVIPC", "IpcObject", "objects", "remove"]

SYSVIPC = Path("/proc/sysvipc")
IPC_RMID = 0
#: The id column of each listing.
_ID_COLUMNS = {"shm": "shmid", "msg": "msqid", "sem": "semid"}

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class IpcObject:
    """One System V IPC object."""

    kind: str  # "shm", "msg" or "sem"
    id: int
    uid: int  # owner
    cuid: int  # creator

    @property
    def key(self) -> tuple[str, int]:
        return (self.kind, self.id)


def objects() -> Iterator[IpcObject]:
    """Every object this IPC namespace holds (none where /proc/sysvipc is missing)."""
    for kind, id_column in _ID_COLUMNS.items():
        try:
            header, *rows = (SYSVIPC / kind).read_text().splitlines()
        except OSError:
            continue
        columns = header.split()
        at = {name: columns.index(name) for name in (id_column, "uid", "cuid")}
        for row in rows:
            values = row.split()
            yield IpcObject(kind, int(values[at[id_column]]), int(values[at["uid"]]),
                            int(values[at["cuid"]]))


def remove(obj: IpcObject) -> None:
    """Remove `obj`; one that is already gone is fine."""
    if obj.kind == "shm":
        result = _libc.shmctl(obj.id, IPC_RMID, None)
    elif obj.kind == "msg":
        result = _libc.msgctl(obj.id, IPC_RMID, None)
    else:
        result = _libc.semctl(obj.id, 0, IPC_RMID)
    if result != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.EIDRM):
            raise OSError(err, f"cannot remove System V {obj.kind} {obj.id}: {os.strerror(err)}")
