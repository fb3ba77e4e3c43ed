"""Kernel keyrings: state of a uid that outlives every process, so one attempt could leave a key
(in the user keyring or the persistent one) for the next to read.

The child's filter (`seccomp`) denies `keyctl`, `add_key` and `request_key`, so a bundle
cannot touch them at all. Underneath that, between fork and exec (and before the filter), the
child joins a fresh, empty session keyring of its own rather than inherit the runner's, and,
where its uid is not a person's (separate-uid, Lambda), clears what that uid's user,
user-session and persistent keyrings hold: whatever an earlier attempt could have left is gone
before the next bundle runs. Each call is best effort: where the kernel or an outer sandbox
refuses keyrings, a bundle cannot use them either.
"""

from __future__ import annotations

import ctypes

__all__ = ["fresh_session"]

_SYS_KEYCTL = 250
_KEYCTL_JOIN_SESSION_KEYRING = 1
_KEYCTL_CLEAR = 7
_KEYCTL_UNLINK = 9
_KEYCTL_GET_PERSISTENT = 22
_KEY_SPEC_SESSION_KEYRING = -3
_KEY_SPEC_USER_KEYRING = -4
_KEY_SPEC_USER_SESSION_KEYRING = -5

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _keyctl(operation: int, *args: int) -> int:
    values = [ctypes.c_long(a) for a in args]
    result: int = _libc.syscall(ctypes.c_long(_SYS_KEYCTL), ctypes.c_long(operation), *values)
    return result


def fresh_session(*, clear_uid: bool) -> None:
    """Join a new anonymous session keyring; with `clear_uid`, empty the uid's own keyrings.
    Runs in the child between fork and exec: C calls only, no error raised."""
    _keyctl(_KEYCTL_JOIN_SESSION_KEYRING, 0)
    if not clear_uid:
        return
    _keyctl(_KEYCTL_CLEAR, _KEY_SPEC_USER_KEYRING)
    _keyctl(_KEYCTL_CLEAR, _KEY_SPEC_USER_SESSION_KEYRING)
    persistent = _keyctl(_KEYCTL_GET_PERSISTENT, -1, _KEY_SPEC_SESSION_KEYRING)
    if persistent > 0:
        _keyctl(_KEYCTL_CLEAR, persistent)
        _keyctl(_KEYCTL_UNLINK, persistent, _KEY_SPEC_SESSION_KEYRING)
