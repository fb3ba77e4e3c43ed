"""`Layout`: what a bundle holds at its root, which runtime it looks like, and the likely fix for
the classic packaging mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.bundle.layout import Layout


@pytest.mark.parametrize(("names", "inferred"), [
    (["bootstrap", "lib/libssl.so"], ("provided", None)),
    (["bootstrap", "index.js"], ("provided", None)),  # a bootstrap decides: it is what runs
    (["index.js", "package.json", "node_modules/ethers/index.js"], ("nodejs", "index.handler")),
    (["index.mjs", ".DS_Store", "__MACOSX/", "__MACOSX/._index.mjs"], ("nodejs", "index.handler")),
    (["app.cjs"], ("nodejs", "app.handler")),
    (["index.js", "index.mjs"], ("nodejs", "index.handler")),  # one module, as the client loads
    (["index.js", "app.js"], None),
    (["dist/index.mjs"], None),
    ([], None),
])
def test_the_runtime_is_inferred_only_without_doubt(
        names: list[str], inferred: tuple[str, str | None] | None) -> None:
    assert Layout.of_names(names).inferred() == inferred


@pytest.mark.parametrize(("names", "folder"), [
    (["dist/", "dist/index.mjs", "dist/package.json"], "dist"),
    (["build/bootstrap"], "build"),
    # Finder's "Compress" of a folder: the folder, and its resource forks beside it.
    (["bundle/", "bundle/index.js", "__MACOSX/", "__MACOSX/bundle/._index.js", ".DS_Store"],
     "bundle"),
])
def test_a_zip_of_the_folder_names_the_folder_and_the_fix(names: list[str],
                                                          folder: str) -> None:
    layout = Layout.of_names(names)

    for runtime in ("provided", "nodejs"):
        assert layout.describe(runtime) == (
            f"its root holds {folder}/; the bundle's files are under {folder}/: zip the "
            f"folder's contents, not the folder (cd {folder} && zip -r ../bundle.zip .)")


def test_a_node_bundle_run_as_a_custom_runtime_is_told_its_runtime() -> None:
    layout = Layout.of_names(["index.mjs", "package.json"])

    assert layout.describe("provided") == (
        "its root holds index.mjs, package.json; it looks like a Node.js bundle: run it with "
        "runtime 'nodejs' and handler 'index.handler'")


def test_a_custom_runtime_run_as_node_is_told_its_runtime() -> None:
    assert Layout.of_names(["bootstrap"]).describe("nodejs") == (
        "its root holds bootstrap; it has a bootstrap: run it with runtime 'provided'")


def test_a_long_root_is_summed_up() -> None:
    layout = Layout.of_names([f"file{i}.txt" for i in range(8)] + ["bad\nname"])

    assert layout.summary() == "bad?name, file0.txt, file1.txt, file2.txt, file3.txt and 4 more"
    assert Layout.of_names([]).summary() == "nothing (the bundle is empty)"


def test_an_extracted_folder_reads_the_same(tmp_path: Path) -> None:
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "index.mjs").write_text("export const handler = () => 1;\n")
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / ".DS_Store").write_bytes(b"\0")

    layout = Layout.of_folder(tmp_path)

    assert layout == Layout.of_names(["dist/index.mjs", "__MACOSX/._x", ".DS_Store"])
    assert layout.wrapped == Layout(("index.mjs",))
