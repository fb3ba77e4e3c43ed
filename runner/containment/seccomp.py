"""The child's system-call filter (seccomp-bpf), with `no_new_privs`, installed between fork and
exec so that the bundle's first instruction already runs under it.

`no_new_privs` first: a setuid or file-capability program the bundle runs gains nothing (and an
unprivileged process may only install a filter once it is set). Then a deny-list filter that
removes the kernel surface a function never needs and leaves everything else alone:

- other processes' memory and descriptors: `ptrace`, `process_vm_readv`/`writev`,
  `pidfd_getfd`, `process_madvise`;
- state that outlives the attempt: kernel keyrings (`keyctl`, `add_key`, `request_key`) and
  POSIX message queues (`mq_*`);
- namespaces and mounts: `unshare`, `setns`, `clone` with any `CLONE_NEW*` flag, `clone3`
  (whose flags sit in memory a filter cannot read; C libraries fall back to `clone` on
  ENOSYS), `mount`, `umount2`, `pivot_root` and the new mount API;
- `bpf`, `perf_event_open`, `userfaultfd`, kernel modules and `kexec`;
- signals to the runner: `kill`, `tgkill`, `rt_sigqueueinfo`, `rt_tgsigqueueinfo` and
  `pidfd_open` aimed at the runner's pid or any of its threads that exist when the child
  starts; `kill(-1, ...)` and the runner's process group; `tkill` and `pidfd_send_signal`
  altogether (neither names a thread group, and a pidfd can be had from a /proc directory);
  changing the runner's resource limits (`prlimit64`: an RLIMIT_CPU of 1 would kill it), CPUs,
  scheduling or priority (`sched_set*`, `setpriority` and `ioprio_set`, also for every process
  of the uid at once); and asking for a signal by I/O ownership (`fcntl`
  F_SETOWN/F_SETOWN_EX, `ioctl` FIOSETOWN/SIOCSPGRP), which the kernel sends with the
  asker's rights.

A denied call fails with EPERM (ENOSYS for `clone3`, `pidfd_send_signal` and x32 calls, so that
runtimes take their fallbacks). Calls from another architecture (i386 through `int 0x80`) end
the process: no linux/amd64 bundle makes them, and their numbers mean other calls.

Lambda's own image may lack libseccomp, so the program is assembled here (classic BPF, a few
dozen instructions); the spawner installs it in each child (`_spawner_process.Installer`, which
makes only C calls, as code between fork and exec must).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

from runner.containment._spawner_process import Installer

__all__ = [
    "AUDIT_ARCH_X86_64",
    "BPF_MAXINSNS",
    "DENIED",
    "SYS",
    "UNSUPPORTED",
    "Target",
    "program",
    "works",
]

AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000

#: The most instructions the kernel takes in one classic BPF program.
BPF_MAXINSNS = 4096

_SECCOMP_RET_KILL_PROCESS = 0x80000000
_SECCOMP_RET_ERRNO = 0x00050000
_SECCOMP_RET_ALLOW = 0x7FFF0000

# Offsets in struct seccomp_data: nr, arch, instruction_pointer, args[6] (each 64-bit; a pid or
# a command is an int, so its low 32 bits, first on little-endian x86-64, are the whole value).
_NR, _ARCH, _ARGS = 0, 4, 16

# Classic BPF opcodes.
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JSET_K = 0x45
_RET_K = 0x06

#: x86-64 system call numbers.
SYS = {
    "ioctl": 16, "clone": 56, "kill": 62, "fcntl": 72, "ptrace": 101,
    "rt_sigqueueinfo": 129, "pivot_root": 155, "mount": 165, "umount2": 166,
    "init_module": 175, "delete_module": 176, "tkill": 200, "tgkill": 234,
    "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242, "mq_timedreceive": 243,
    "mq_notify": 244, "mq_getsetattr": 245, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "unshare": 272, "rt_tgsigqueueinfo": 297,
    "perf_event_open": 298, "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311,
    "finit_module": 313, "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323,
    "pidfd_send_signal": 424, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "pidfd_open": 434, "clone3": 435,
    "pidfd_getfd": 438, "process_madvise": 440, "mount_setattr": 442,
    "setpriority": 141, "sched_setparam": 142, "sched_setscheduler": 144,
    "sched_setaffinity": 203, "ioprio_set": 251, "prlimit64": 302, "sched_setattr": 314,
}

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "process_madvise",
    "keyctl", "add_key", "request_key",
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    "unshare", "setns", "mount", "umount2", "pivot_root", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    "bpf", "perf_event_open", "userfaultfd", "init_module", "finit_module", "delete_module",
    "kexec_load", "kexec_file_load", "tkill",
)
UNSUPPORTED = ("clone3", "pidfd_send_signal")
#: Calls whose first argument is a pid (a thread group's or a thread's) to protect: signals,
#: and what a same-uid process may otherwise change of another (its resource limits, so
#: RLIMIT_CPU of 1 would kill it; its CPUs and scheduling).
_PID_FIRST = ("tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open", "prlimit64",
              "sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr")
#: Calls of (which, who), and the `which` meaning "every process of a uid".
_WHICH_WHO = {"setpriority": 2, "ioprio_set": 3}  # PRIO_USER, IOPRIO_WHO_USER

_CLONE_NEW_FLAGS = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
                   | 0x20000000 | 0x40000000)  # NS, CGROUP, UTS, IPC, USER, PID, NET
_F_SETOWN, _F_SETOWN_EX = 8, 15
_FIOSETOWN, _SIOCSPGRP = 0x8901, 0x8902


@dataclass(frozen=True)
class Target:
    """The process the child must not signal: its pid, threads and process group."""

    pid: int
    pgid: int
    tids: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def this_process(cls, others: frozenset[int] = frozenset()) -> Target:
        """This process, with the threads it has now, and the single-threaded processes
        `others` of its own (runner.containment.spawner), protected as its threads are."""
        pid = os.getpid()
        with os.scandir(f"/proc/{pid}/task") as tasks:
            tids = frozenset(int(task.name) for task in tasks)
        return cls(pid=pid, pgid=os.getpgrp(), tids=tids | others)


#: A jump target: a label, or how many instructions to skip.
_Target = str | int | None


class _Assembler:
    """Classic BPF with named (or counted) jump targets; every jump in classic BPF is forward."""

    def __init__(self) -> None:
        self._code: list[tuple[int, _Target, _Target, int]] = []
        self._labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self._labels[name] = len(self._code)

    def load(self, offset: int) -> None:
        self._code.append((_LD_W_ABS, None, None, offset))

    def jeq(self, value: int, *, yes: _Target = None, no: _Target = None) -> None:
        self._code.append((_JEQ_K, yes, no, value & 0xFFFFFFFF))

    def jset(self, bits: int, *, yes: _Target = None, no: _Target = None) -> None:
        self._code.append((_JSET_K, yes, no, bits))

    def jump(self, label: str) -> None:
        """Always to `label` (a comparison whose both outcomes go there)."""
        self._code.append((_JEQ_K, label, label, 0))

    def ret(self, value: int) -> None:
        self._code.append((_RET_K, None, None, value))

    def bytes(self) -> bytes:
        if len(self._code) > BPF_MAXINSNS:
            raise ValueError(f"a filter of {len(self._code)} instructions is over the kernel's "
                             f"{BPF_MAXINSNS}")
        out = bytearray()
        for at, (code, yes, no, k) in enumerate(self._code):
            out += struct.pack("<HBBI", code, self._offset(at, yes), self._offset(at, no), k)
        return bytes(out)

    def _offset(self, at: int, target: _Target) -> int:
        if target is None:
            return 0
        offset = target if isinstance(target, int) else self._labels[target] - at - 1
        if not 0 <= offset <= 255:
            raise ValueError(f"jump to {target} out of range ({offset})")
        return offset


def program(target: Target) -> bytes:
    """The filter protecting `target`, as struct sock_filter instructions. Laid out so that every
    jump is short (classic BPF jumps at most 255 instructions) however many threads the runner
    has: the shared verdicts come right after the dispatch, and each checked value denies on
    the spot."""
    asm = _Assembler()
    asm.load(_ARCH)
    asm.jeq(AUDIT_ARCH_X86_64, no="kill")
    asm.load(_NR)
    asm.jset(_X32_SYSCALL_BIT, yes="enosys")
    for name in DENIED:
        asm.jeq(SYS[name], yes="eperm")
    for name in UNSUPPORTED:
        asm.jeq(SYS[name], yes="enosys")
    asm.jeq(SYS["clone"], yes="clone_args")
    asm.jeq(SYS["fcntl"], yes="fcntl_args")
    asm.jeq(SYS["ioctl"], yes="ioctl_args")
    asm.jeq(SYS["kill"], yes="kill_args")
    for name in _PID_FIRST:
        asm.jeq(SYS[name], yes="pid_args")
    for name in _WHICH_WHO:
        asm.jeq(SYS[name], yes=f"{name}_args")
    asm.ret(_SECCOMP_RET_ALLOW)

    asm.label("eperm")
    asm.ret(_SECCOMP_RET_ERRNO | errno.EPERM)
    asm.label("enosys")
    asm.ret(_SECCOMP_RET_ERRNO | errno.ENOSYS)
    asm.label("kill")
    asm.ret(_SECCOMP_RET_KILL_PROCESS)

    asm.label("clone_args")
    asm.load(_ARGS)
    asm.jset(_CLONE_NEW_FLAGS, no=1)
    asm.ret(_SECCOMP_RET_ERRNO | errno.EPERM)
    asm.ret(_SECCOMP_RET_ALLOW)

    asm.label("fcntl_args")
    asm.load(_ARGS + 8)
    _deny_values(asm, [_F_SETOWN, _F_SETOWN_EX])

    asm.label("ioctl_args")
    asm.load(_ARGS + 8)
    _deny_values(asm, [_FIOSETOWN, _SIOCSPGRP])

    for name, every_process_of_a_uid in _WHICH_WHO.items():
        asm.label(f"{name}_args")
        asm.load(_ARGS)
        _deny_values(asm, [every_process_of_a_uid], then_allow=False)
        asm.load(_ARGS + 8)
        _deny_values(asm, [target.pgid], then_allow=False)
        asm.jump("runner_ids")

    asm.label("kill_args")
    asm.load(_ARGS)
    _deny_values(asm, [-1, -target.pgid, -target.pid], then_allow=False)
    asm.label("pid_args")  # kill's pid goes on through the same checks
    asm.load(_ARGS)
    asm.label("runner_ids")  # the word loaded is a pid: one of the runner's?
    _deny_values(asm, sorted({target.pid, *target.tids}))
    return asm.bytes()


def _deny_values(asm: _Assembler, values: Iterable[int], *, then_allow: bool = True) -> None:
    """EPERM when the loaded word is one of `values` (each check denies on the spot, so no jump
    grows with the count); then ALLOW, or fall through."""
    for value in values:
        asm.jeq(value, no=1)
        asm.ret(_SECCOMP_RET_ERRNO | errno.EPERM)
    if then_allow:
        asm.ret(_SECCOMP_RET_ALLOW)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def works(true_program: str, *, user: int | None, group: int | None) -> bool:
    """Whether a child (as `user`, when given) gets the filter: it is started with it, checks
    between fork and exec that `keyctl` and a signal to this process are refused (EPERM),
    and then runs `true_program`."""
    installer = Installer(program(Target.this_process()))
    runner_pid = os.getpid()

    def install_and_check() -> None:
        installer.install()
        for number, args in ((SYS["keyctl"], (0, 0)), (SYS["kill"], (runner_pid, 0))):
            if _libc.syscall(ctypes.c_long(number), *map(ctypes.c_long, args)) != -1 \
                    or ctypes.get_errno() != errno.EPERM:
                raise OSError(errno.EPERM, f"system call {number} was not refused")

    try:
        done = subprocess.run([true_program], user=user, group=group,
                              extra_groups=[] if user is not None else None,
                              preexec_fn=install_and_check,  # C calls only
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0
