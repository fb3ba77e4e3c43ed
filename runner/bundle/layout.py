"""What a bundle holds at its root, read from its entry names or its extracted folder: whether
it has an entrypoint for a runtime, which runtime it looks like, and, when it has none, what it
holds instead and the likely fix (the classic packaging mistakes: a zip of the folder instead of
its contents, a Node bundle run as a custom runtime).

Entries that macOS tools add beside a bundle's files (`__MACOSX/`, `.DS_Store`) are ignored
here. They are extracted like any other file, where they are harmless: nothing runs them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BOOTSTRAP", "IGNORED", "NODE_EXTENSIONS", "Layout"]

#: A custom runtime's entrypoint at the bundle root (Lambda's convention for `provided`).
BOOTSTRAP = "bootstrap"
#: Root entries that say nothing about the bundle: macOS Finder's resource forks and folder view
#: settings.
IGNORED = frozenset({"__MACOSX", ".DS_Store"})
#: Files the Node client loads as a handler's module.
NODE_EXTENSIONS = (".js", ".mjs", ".cjs")
#: How many root entries a message names.
_SHOWN = 5
_NAME_SHOWN = 60


@dataclass(frozen=True)
class Layout:
    """A bundle's root: its entries (folders end with `/`), and the same for the one folder
    that holds everything, when that is all the root has."""

    root: tuple[str, ...]
    wrapped: Layout | None = None

    @classmethod
    def of_names(cls, names: Iterable[str]) -> Layout:
        """The layout of a zip with these entry names."""
        paths = [([part for part in name.split("/") if part not in ("", ".")], name.endswith("/"))
                 for name in names]
        return cls._of_paths([(parts, is_dir) for parts, is_dir in paths if parts])

    @classmethod
    def _of_paths(cls, paths: list[tuple[list[str], bool]]) -> Layout:
        root: set[str] = set()
        for parts, is_dir in paths:
            if parts[0] in IGNORED:
                continue
            root.add(parts[0] + "/" if len(parts) > 1 or is_dir else parts[0])
        layout = cls(tuple(sorted(root)))
        folder = layout.wrapper
        if folder is None:
            return layout
        inner = [(parts[1:], is_dir) for parts, is_dir in paths
                 if parts[0] == folder and len(parts) > 1]
        return cls(layout.root, cls._of_paths(inner))

    @classmethod
    def of_folder(cls, folder: Path) -> Layout:
        """The layout of an extracted bundle."""
        root = cls(_listing(folder))
        wrapper = root.wrapper
        return cls(root.root, cls(_listing(folder / wrapper)) if wrapper else None)

    @property
    def wrapper(self) -> str | None:
        """The one folder the root holds, with nothing beside it (`dist` for `dist/...`)."""
        if len(self.root) == 1 and self.root[0].endswith("/"):
            return self.root[0].removesuffix("/")
        return None

    @property
    def has_bootstrap(self) -> bool:
        """Whether a custom runtime's `bootstrap` is at the root."""
        return BOOTSTRAP in self.root

    @property
    def node_handlers(self) -> tuple[str, ...]:
        """`<module>.handler` for each Node module file at the root, `index` first."""
        modules = sorted({name.rsplit(".", 1)[0] for name in self.root
                          if name.endswith(NODE_EXTENSIONS) and not name.startswith(".")},
                         key=lambda module: (module != "index", module))
        return tuple(f"{module}.handler" for module in modules)

    def inferred(self) -> tuple[str, str | None] | None:
        """(runtime, handler) when the layout says it without doubt: a `bootstrap` means a
        custom runtime; else one Node module at the root (`index.js`, `app.mjs` ...) means
        Node, with its `handler` export. None when it does not."""
        if self.has_bootstrap:
            return "provided", None
        handlers = self.node_handlers
        return ("nodejs", handlers[0]) if len(handlers) == 1 else None

    def summary(self) -> str:
        """The first few root entries, for a message."""
        if not self.root:
            return "nothing (the bundle is empty)"
        shown = ", ".join(_printable(name) for name in self.root[:_SHOWN])
        more = len(self.root) - _SHOWN
        return shown + (f" and {more} more" if more > 0 else "")

    def fix(self, runtime: str) -> str | None:
        """The likely fix for a bundle with no entrypoint for `runtime`, if one is apparent."""
        wrapper = self.wrapper
        if wrapper is not None and self.wrapped is not None and self.wrapped.root:
            shown = _printable(wrapper)
            return (f"the bundle's files are under {shown}/: zip the folder's contents, not the "
                    f"folder (cd {shown} && zip -r ../bundle.zip .)")
        if runtime == "provided" and self.node_handlers:
            return (f"it looks like a Node.js bundle: run it with runtime 'nodejs' and handler "
                    f"{self.node_handlers[0]!r}")
        if runtime == "nodejs" and self.has_bootstrap:
            return "it has a bootstrap: run it with runtime 'provided'"
        return None

    def describe(self, runtime: str) -> str:
        """What the root holds and the likely fix, to follow "the bundle has no ..."."""
        fix = self.fix(runtime)
        return f"its root holds {self.summary()}" + (f"; {fix}" if fix else "")


def _listing(folder: Path) -> tuple[str, ...]:
    try:
        with os.scandir(folder) as entries:
            return tuple(sorted(entry.name + "/" if entry.is_dir(follow_symlinks=False)
                                else entry.name for entry in entries
                                if entry.name not in IGNORED))
    except OSError:
        return ()


def _printable(name: str) -> str:
    """A name as a message may show it: controls replaced, cut when long."""
    text = "".join(char if char.isprintable() else "?" for char in name)
    return text if len(text) <= _NAME_SHOWN else text[:_NAME_SHOWN] + "…"
