"""What runner.containment.procfs reads from /proc, and how it walks a process table."""

from __future__ import annotations

import os
import threading

import pytest

from runner.containment import procfs
from runner.containment.procfs import ProcessInfo


def _proc(pid: int, ppid: int, uid: int = 1000, state: str = "S") -> ProcessInfo:
    return ProcessInfo(pid=pid, ppid=ppid, pgrp=pid, session=pid, state=state, starttime=pid * 10,
                       uid=uid, threads=1)


def test_reads_this_process_as_proc_shows_it() -> None:
    me = procfs.read_process(os.getpid())
    assert me is not None
    assert (me.pid, me.ppid, me.uid) == (os.getpid(), os.getppid(), os.getuid())
    assert me.pgrp == os.getpgrp()
    assert me.threads >= threading.active_count()
    assert not me.is_zombie
    assert me.key == (os.getpid(), me.starttime)


def test_a_process_that_has_gone_reads_as_none() -> None:
    assert procfs.read_process(2**22 + 1) is None  # above any pid_max


def test_table_lists_this_process_and_init() -> None:
    procs = procfs.table()
    assert os.getpid() in procs
    assert 1 in procs


def test_ancestors_walk_up_to_init_and_stop_at_a_gap() -> None:
    procs = {p.pid: p for p in (_proc(1, 0), _proc(10, 1), _proc(20, 10), _proc(30, 20),
                                _proc(40, 35))}
    assert [a.pid for a in procfs.ancestors(procs[30], procs)] == [20, 10, 1]
    assert list(procfs.ancestors(procs[40], procs)) == []  # its parent is not in the table
    assert procfs.descends_from(procs[30], 10, procs)
    assert not procfs.descends_from(procs[10], 30, procs)


def test_ancestors_end_on_a_loop() -> None:
    procs = {1: _proc(1, 1)}  # init names itself as its parent in some tables
    assert [a.pid for a in procfs.ancestors(_proc(5, 1), procs)] == [1]


def test_task_count_includes_this_process_threads() -> None:
    assert procfs.task_count(os.getuid()) >= threading.active_count()


def test_zombies_are_recognised() -> None:
    assert _proc(5, 1, state="Z").is_zombie
    assert _proc(5, 1, state="X").is_zombie
    assert not _proc(5, 1, state="T").is_zombie


def test_pids_come_newest_first() -> None:
    # A process just forked is the likeliest to exit before a sweep reads it.
    listed = procfs.pids()
    assert listed == sorted(listed, reverse=True)
    assert os.getpid() in listed


def test_children_files_are_read_as_pids() -> None:
    assert procfs.parse_children(b"") == []
    assert procfs.parse_children(b"12 345 ") == [12, 345]


def test_the_subtree_of_a_process_holds_it_and_its_threads_children() -> None:
    assert procfs.children_listed()  # the kernels this runs on are built with them
    me = procfs.subtree(os.getpid())
    itself = procfs.read_process(os.getpid())
    assert me is not None
    assert itself is not None
    assert me[os.getpid()].key == itself.key
    assert all(p.pid == os.getpid() or procfs.descends_from(p, os.getpid(), me)
               for p in me.values())


def test_without_children_files_there_is_no_subtree(monkeypatch: pytest.MonkeyPatch) -> None:
    # A kernel without CONFIG_PROC_CHILDREN: the caller scans /proc instead.
    monkeypatch.setattr(procfs, "children_listed", lambda: False)
    assert procfs.subtree(os.getpid()) is None


def test_task_count_outside_a_process_leaves_out_it_and_all_below_it() -> None:
    procs = {p.pid: p for p in (_proc(1, 0, uid=0), _proc(10, 1), _proc(20, 10), _proc(30, 20),
                                _proc(40, 1), _proc(50, 40, uid=7))}
    assert procfs.task_count_outside(1000, 10, procs) == 1  # 40 alone
    assert procfs.task_count_outside(7, 10, procs) == 1
