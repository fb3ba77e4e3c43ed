"""`remove_tree`: everything under the root goes, nothing above it changes."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from runner.containment.removal import remove_tree


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def parent(tmp_path: Path) -> Path:
    """A directory others may enter, as /tmp is."""
    tmp_path.chmod(0o755)
    return tmp_path


def test_a_tree_the_bundle_locked_is_removed(parent: Path) -> None:
    root = parent / "attempt"
    (root / "locked" / "deep").mkdir(parents=True)
    (root / "locked" / "deep" / "file").write_text("x")
    (root / "locked").chmod(0)

    remove_tree(root)

    assert not root.exists()
    assert _mode(parent) == 0o755


def test_a_symlink_root_is_unlinked_and_its_parent_left_alone(parent: Path) -> None:
    target = parent / "target"
    target.mkdir()
    link = parent / "link"
    link.symlink_to(target)

    remove_tree(link)

    assert not link.is_symlink()
    assert target.is_dir()
    assert _mode(parent) == 0o755


def test_a_file_root_is_removed_and_its_parent_left_alone(parent: Path) -> None:
    root = parent / "file"
    root.write_text("x")

    remove_tree(root)

    assert not root.exists()
    assert _mode(parent) == 0o755
