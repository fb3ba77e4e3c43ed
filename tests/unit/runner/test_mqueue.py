"""Finding mqueue filesystems, whose queues the scratch cleanup removes by owner."""

from __future__ import annotations

from pathlib import Path

from runner.containment.mqueue import mounts

TABLE = """\
/dev/vda / ext4 rw,relatime 0 0
proc /proc proc rw,relatime 0 0
mqueue /dev/mqueue mqueue rw,nosuid,nodev,noexec,relatime 0 0
none /srv/with\\040space mqueue rw 0 0
"""


def test_every_mqueue_mount_is_found() -> None:
    assert mounts(TABLE) == [Path("/dev/mqueue"), Path("/srv/with space")]


def test_none_mounted_is_none_found() -> None:
    assert mounts("proc /proc proc rw 0 0\n") == []
