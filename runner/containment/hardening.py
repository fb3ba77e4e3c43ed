"""The runner's own process, made hard to reach from its child, through prctl(2).

- Non-dumpable: a process of the same uid can then neither read the runner's memory nor its
  `/proc/<pid>/environ` (which keeps the environment the runner was started with, whatever is
  later deleted from `os.environ`); its /proc entries become root's.
- Child subreaper: an orphan anywhere below the runner (a double-forked daemon) is reparented
  to the runner instead of to init, so the runner can reap what it kills; without it killed
  orphans stay zombies wherever init does not reap (as in some sandboxes).

Each call reports whether the setting took, read back through the matching PR_GET_*.
Third-party reports say some prctl options fail in Lambda (docs/security.md#cold-start); these
two are checked at every cold start and recorded instead of assumed.
"""

from __future__ import annotations

import ctypes
import os

__all__ = [
    "PR_GET_CHILD_SUBREAPER",
    "PR_GET_DUMPABLE",
    "PR_SET_CHILD_SUBREAPER",
    "PR_SET_DUMPABLE",
    "become_subreaper",
    "is_dumpable",
    "is_subreaper",
    "make_undumpable",
]

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.restype = ctypes.c_int


def _prctl(option: int, arg: int | ctypes._Pointer[ctypes.c_int] = 0) -> int:
    value = arg if isinstance(arg, ctypes._Pointer) else ctypes.c_ulong(arg)
    result: int = _libc.prctl(ctypes.c_int(option), value, ctypes.c_ulong(0), ctypes.c_ulong(0),
                              ctypes.c_ulong(0))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def is_dumpable() -> bool:
    """Whether a same-uid process may read this process's memory and environ."""
    return _prctl(PR_GET_DUMPABLE) != 0


def make_undumpable() -> bool:
    """Make this process non-dumpable; True if that took."""
    try:
        _prctl(PR_SET_DUMPABLE, 0)
        return not is_dumpable()
    except OSError:
        return False


def is_subreaper() -> bool:
    """Whether orphans below this process are reparented to it."""
    flag = ctypes.c_int(0)
    _prctl(PR_GET_CHILD_SUBREAPER, ctypes.pointer(flag))
    return flag.value != 0


def become_subreaper() -> bool:
    """Make this process the child subreaper of everything below it; True if that took."""
    try:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        return is_subreaper()
    except OSError:
        return False
