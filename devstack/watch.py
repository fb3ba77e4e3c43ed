"""Waiting for a bundle to change, for `udf-runner invoke --watch`.

The kernel says when something changed (inotify, through `watchfiles`' Rust watcher): nothing
here polls modification times. A folder is watched with everything below it. A zip is watched
through its parent folder, not by itself: build tools and editors often replace a file by
renaming a new one over it, which ends a watch on the old file.

The watcher starts before the first run and keeps the changes made while a run is going, so a
save made during a run triggers the next one at once. `watchfiles.watch()` would create its
watcher only when first iterated, after the first run: hence its Rust backend, `RustNotify`,
which watchfiles documents and types for direct use (the version is pinned in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Self

from watchfiles._rust_notify import RustNotify

#: A change ends the wait once nothing else changed for this long (a build writes many files).
SETTLE_MS = 100
#: And at the latest after this long, however busy the folder is.
DEBOUNCE_MS = 1_600


class BundleWatcher:
    """Changes to a bundle folder or zip; `wait()` blocks until there is one."""

    def __init__(self, bundle: Path) -> None:
        self._bundle = bundle.resolve()
        self._is_dir = self._bundle.is_dir()
        watched = self._bundle if self._is_dir else self._bundle.parent
        # Positional only: paths, debug, force_polling, poll_delay_ms, recursive,
        # ignore_permission_denied.
        self._notify = RustNotify([str(watched)], False, False, 0, self._is_dir, False)

    def wait(self) -> set[Path]:
        """The paths that changed, once some did; KeyboardInterrupt on a signal (Ctrl-C, or
        SIGTERM when its handler raises it)."""
        while True:
            changes = self._notify.watch(DEBOUNCE_MS, SETTLE_MS, 0, None)
            if changes == "signal":
                raise KeyboardInterrupt
            if isinstance(changes, set):
                changed = {Path(path) for _, path in changes}
                if self._is_dir:
                    return changed
                if self._bundle in changed:
                    return {self._bundle}

    def close(self) -> None:
        """Stop watching."""
        self._notify.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
