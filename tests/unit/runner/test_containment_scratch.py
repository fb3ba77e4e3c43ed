"""Removing what the child left in the scratch dirs (runner.containment.scratch): by owner, never
through a link, never another uid's, never what the runner keeps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.containment import scratch

CHILD = 64200

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="files of another uid need root")


def _make(path: Path, *, uid: int, directory: bool = False, mode: int | None = None) -> Path:
    if directory:
        path.mkdir()
    else:
        path.write_text("x")
    os.lchown(path, uid, uid)
    if mode is not None:
        path.chmod(mode)
    return path


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    """A stand-in for /tmp: world-writable and sticky."""
    root = tmp_path / "tmp"
    root.mkdir()
    root.chmod(0o1777)
    return root


@needs_root
def test_removes_what_the_uid_owns_and_nothing_else(tmp: Path) -> None:
    mine = _make(tmp / "theirs", uid=CHILD)
    developer = _make(tmp / "developer", uid=1000)
    removed = scratch.remove_owned([tmp], CHILD)
    assert removed == [mine]
    assert not mine.exists()
    assert developer.exists()


@needs_root
def test_looks_into_world_writable_directories_only(tmp: Path) -> None:
    shared = _make(tmp / ".X11-unix", uid=0, directory=True, mode=0o1777)
    inside = _make(shared / "planted", uid=CHILD)
    private = _make(tmp / "private", uid=0, directory=True, mode=0o755)
    beyond_reach = _make(private / "file", uid=CHILD)  # the child could not have written it
    scratch.remove_owned([tmp], CHILD)
    assert not inside.exists()
    assert shared.exists()
    assert beyond_reach.exists()


@needs_root
def test_a_tree_that_denies_its_own_removal_goes_whole(tmp: Path) -> None:
    tree = _make(tmp / "tree", uid=CHILD, directory=True)
    sub = _make(tree / "sub", uid=CHILD, directory=True)
    _make(sub / "file", uid=CHILD)
    sub.chmod(0)
    tree.chmod(0o500)
    scratch.remove_owned([tmp], CHILD)
    assert not tree.exists()


@needs_root
def test_a_link_is_removed_and_never_followed(tmp: Path, tmp_path: Path) -> None:
    target = tmp_path / "runner-file"
    target.write_text("the runner's")
    os.chown(target, CHILD, CHILD)  # owned by the uid, but outside the scratch dirs
    link = tmp / "link"
    link.symlink_to(target)
    os.lchown(link, CHILD, CHILD)
    dir_link = tmp / "dir-link"
    dir_link.symlink_to(tmp_path)
    os.lchown(dir_link, CHILD, CHILD)
    scratch.remove_owned([tmp], CHILD)
    assert not link.is_symlink()
    assert not dir_link.is_symlink()
    assert target.read_text() == "the runner's"


def test_kept_paths_stay_and_the_way_to_them_is_cleaned(tmp: Path) -> None:
    # As in Lambda: the runner and the child share a uid, and the work root is the runner's.
    uid = os.getuid()
    work = _make(tmp / "udf-runner", uid=uid, directory=True)
    cache = _make(work / "cache", uid=uid, directory=True)
    cached = _make(cache / "abc.zip", uid=uid)
    planted = _make(work / "planted", uid=uid)
    stray = _make(tmp / "stray", uid=uid)
    scratch.remove_owned([tmp], uid, keep=[cache])
    assert cached.exists()
    assert work.is_dir()
    assert not planted.exists()
    assert not stray.exists()


def test_missing_scratch_dirs_are_skipped(tmp_path: Path) -> None:
    assert scratch.remove_owned([tmp_path / "absent"], os.getuid()) == []
