"""The child's filter as a program: its shape, and that it assembles for any runner (how it
behaves is shown with real children in the integration tier)."""

from __future__ import annotations

import struct

import pytest

from runner.containment import seccomp
from runner.containment.seccomp import AUDIT_ARCH_X86_64, SYS, Target, program

LD, JEQ, RET = 0x20, 0x15, 0x06


def _instructions(code: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack_from("<HBBI", code, at) for at in range(0, len(code), 8)]


def test_the_architecture_is_checked_first() -> None:
    first, second = _instructions(program(Target(pid=100, pgid=100)))[:2]
    assert first == (LD, 0, 0, 4)  # seccomp_data.arch
    assert second[0] == JEQ
    assert second[3] == AUDIT_ARCH_X86_64


def test_every_denied_call_and_every_protected_id_is_in_the_program() -> None:
    target = Target(pid=4242, pgid=4200, tids=frozenset({4243, 4250}))
    compared = {k for code, _, _, k in _instructions(program(target)) if code == JEQ}
    assert {SYS[name] for name in (*seccomp.DENIED, *seccomp.UNSUPPORTED)} <= compared
    assert {SYS["kill"], SYS["tgkill"], SYS["prlimit64"], SYS["setpriority"]} <= compared
    assert {4242, 4243, 4250, (-4200) & 0xFFFFFFFF, 0xFFFFFFFF} <= compared


def test_every_jump_lands_inside_the_program() -> None:
    code = _instructions(program(Target(pid=7, pgid=7, tids=frozenset(range(8, 1500)))))
    for at, (op, yes, no, _) in enumerate(code):
        if op not in (RET, LD):
            assert at + 1 + max(yes, no) < len(code)
    assert code[-1][0] == RET


def test_a_runner_with_more_threads_than_a_filter_holds_is_refused() -> None:
    with pytest.raises(ValueError, match="over the kernel's 4096"):
        program(Target(pid=7, pgid=7, tids=frozenset(range(8, 3000))))
