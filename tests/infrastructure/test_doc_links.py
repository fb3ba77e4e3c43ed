"""The repository explains itself: every document and file it cites is in it.

Code comments, docstrings and docs cite `docs/<page>.md#<anchor>` and files such as
`runner/bundle/extract.py`; Markdown links point at files of the repository. A citation of
material outside the repository (the design notes it was built from), of a page or file that
does not exist (moved, renamed), or of an anchor a page does not have, fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Folders that are not the project's own text: tools, dependencies, build output.
_SKIPPED_DIRS = frozenset({
    ".git", ".venv", "node_modules", "build", ".aws-sam", "__pycache__", ".mypy_cache",
    ".ruff_cache", ".pytest_cache", "target", "results",
})
_TEXT_SUFFIXES = frozenset({".py", ".md", ".yaml", ".yml", ".toml", ".json", ".sh", ".mjs",
                            ".js", ".cjs", ".rs", ".txt"})
_TEXT_NAMES = frozenset({"Makefile", "bootstrap", "run"})

#: What only the material outside the repository is called (spelt in pieces so that neither
#: this check nor a `git grep` for the names finds this file).
_OUTSIDE = re.compile("|".join([
    r"\.\./" + "sha" + "red", "/work/" + "sha" + "red", "DES" + r"IGN\.md",
    "runtime-api-check" + "list", "check" + r"list items?\s+\d", "peers-and-" + "security",
    "official-" + r"clients\.md", "cold-" + r"start\.md", "architecture-" + r"review\.md",
    "toolchain-" + r"here\.md", "STYLE" + r"\.md",
]))
#: `docs/page.md` or `docs/sub/page.md#anchor`, cited from anywhere: relative to the root.
_DOC_CITATION = re.compile(r"(?<![\w./-])(docs/[\w./-]+\.md)(?:#([\w-]+))?")
#: A file of the repository named by its path from the root, e.g. `runner/bundle/extract.py`.
_FILE_CITATION = re.compile(
    r"(?<![\w./-])((?:runner|devstack|tests|benchmarks|scripts|layers|contracts|schemas|events|"
    r"samples)/[\w./-]+\.(?:py|md|json|yaml|yml|toml|sh|mjs|js))\b")
#: A Markdown link target (relative to the file it is in).
_MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
_ANCHOR_ID = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']""")


def _tracked_text_files() -> Iterator[Path]:
    stack = [ROOT]
    while stack:
        folder = stack.pop()
        for entry in sorted(folder.iterdir()):
            if entry.is_dir():
                if entry.name not in _SKIPPED_DIRS and not entry.is_symlink() and \
                        not entry.name.endswith(".egg-info"):
                    stack.append(entry)
            elif entry.suffix in _TEXT_SUFFIXES or entry.name in _TEXT_NAMES:
                yield entry


#: Every file checked; this one is left out, since its own checks cite broken things on purpose.
FILES = sorted(path for path in _tracked_text_files() if path != Path(__file__).resolve())
#: A page, as if it were in docs/, for the checks of the checker itself.
PROBE = ROOT / "docs" / "contract.md"


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace")


def _slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    """Every anchor a Markdown page defines: explicit `<a id>`s and heading slugs."""
    text = _text(page)
    found = set(_ANCHOR_ID.findall(text))
    found.update(_slug(line.lstrip("#")) for line in text.splitlines()
                 if line.startswith("#"))
    return frozenset(found)


def broken_citations(path: Path, text: str) -> list[str]:
    """What `path`, whose content is `text`, cites outside the repository or not in it."""
    problems = [f"cites material outside the repository: {m.group()!r}"
                for m in _OUTSIDE.finditer(text)]
    for match in _DOC_CITATION.finditer(text):
        problems += _check_target(ROOT / match[1], match[2], match.group())
    # Scripts name paths of other trees (an npm package's scripts/); prose and comments do not.
    citing = _FILE_CITATION.finditer(text) if path.suffix in (".py", ".md", ".txt") else ()
    for match in citing:
        if not _SKIPPED_DIRS.intersection(Path(match[1]).parts):  # generated, not tracked
            problems += _check_target(ROOT / match[1], None, match[1])
    if path.suffix == ".md":
        for target in _MD_LINK.findall(text):
            problems += _check_link(path, target)
    return problems


def _check_link(page: Path, target: str) -> list[str]:
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
        return []
    location, _, anchor = target.partition("#")
    return _check_target(page.parent / location if location else page, anchor or None, target)


def _check_target(target: Path, anchor: str | None, cited: str) -> list[str]:
    if not target.resolve().is_relative_to(ROOT):
        return [f"cites {cited!r}, outside the repository"]
    if not target.exists():
        return [f"cites {cited!r}, which does not exist"]
    if anchor is not None and target.suffix == ".md" and anchor not in anchors(target):
        return [f"cites {cited!r}, but {target.relative_to(ROOT)} has no anchor {anchor!r}"]
    return []


def test_the_walk_finds_the_projects_files() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in FILES}
    assert {"README.md", "docs/contract.md", "docs/runtime-api.md",
            "runner/runtime_api/server.py"} <= names
    assert not any("node_modules" in name for name in names)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_citation_is_in_the_repository(path: Path) -> None:
    assert broken_citations(path, _text(path)) == []


@pytest.mark.parametrize(("text", "problem"), [
    ("see ../" + "sha" + "red/" + "DES" + "IGN.md", "outside the repository"),
    ("(check" + "list item 17)", "outside the repository"),
    ("docs/no-such-page.md", "does not exist"),
    ("docs/runtime-api.md#no-such-anchor", "has no anchor"),
    ("the reader (runner/ziparchive.py)", "does not exist"),
    ("[x](../../elsewhere.md)", "outside the repository"),
    ("[x](contract.md#nope)", "has no anchor"),
])
def test_a_broken_citation_is_found(text: str, problem: str) -> None:
    found = broken_citations(PROBE, text)
    assert found
    assert all(problem in line for line in found), found


def test_sound_citations_pass() -> None:
    text = ("docs/runtime-api.md#next, docs/contract.md#error-types, [c](contract.md#result), "
            "[s](../schemas), [h](https://example.com/x.md), [t](#the-contract), "
            "runner/bundle/extract.py, `tests/unit/runner/test_extract.py`, "
            "benchmarks/results/latest.json")
    assert broken_citations(PROBE, text) == []
