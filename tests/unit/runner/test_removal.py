"""Removing trees a bundle shaped: deeper than PATH_MAX and the descriptor limit, links that
point out, and a missing path."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.containment.removal import remove_tree


@pytest.fixture
def few_descriptors() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _nest(top: Path, depth: int) -> None:
    fd = os.open(top.parent, os.O_RDONLY | os.O_DIRECTORY)
    for level in range(depth):
        name = top.name if level == 0 else f"{'d' * 40}{level}"
        os.mkdir(name, dir_fd=fd)
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(os.open("file", os.O_WRONLY | os.O_CREAT, dir_fd=child))
        os.close(fd)
        fd = child
    os.close(fd)


@pytest.mark.usefixtures("few_descriptors")
def test_a_tree_deeper_than_path_max_and_the_descriptor_limit_is_removed(tmp_path: Path) -> None:
    top = tmp_path / "deep"
    _nest(top, 1200)  # 1,200 levels of 42-character names: 50 kB of path

    remove_tree(top)

    assert list(tmp_path.iterdir()) == []


def test_links_are_removed_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept").write_text("not the bundle's")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "to-dir").symlink_to(outside)
    (tree / "to-file").symlink_to(outside / "kept")

    remove_tree(tree)

    assert not tree.exists()
    assert (outside / "kept").read_text() == "not the bundle's"


def test_a_file_a_link_or_nothing_at_the_path_is_fine(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")

    for name in ("file", "link", "missing", "missing/below"):
        remove_tree(tmp_path / name)

    assert list(tmp_path.iterdir()) == []
