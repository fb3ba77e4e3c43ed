"""Bundles built from source by each toolchain's own recipe, and the reference Runtime API emulator.

- Rust: `tests/fixtures/rust_lambda` on the official `lambda_runtime` crate, built by
  cargo-lambda exactly as the README's recipe does (`cargo lambda build --release
  --output-format zip`): panics abort, cargo-lambda's default. The same crate is built a second
  time with its `unwind` profile, for a bundle whose Cargo.toml keeps unwinding.
- Go: each package of `tests/fixtures/go_lambda` on `aws-lambda-go`, built and zipped as the
  README's recipe does.
- The RIE: `aws-lambda-rie` from the Go module proxy, at a pinned pseudo-version.

Builds are keyed by everything that goes into them (sources, lock files, commands, tool versions)
and kept under `${XDG_CACHE_HOME:-~/.cache}/udf-runner`, outside the clone, so only the first
run on a machine pays for them (`devstack.build_cache`). `python -m tests.support.toolchains`
(`make fixtures`) builds them all, the Rust/Polars sample included.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from devstack import transfer_stats
from devstack.build_cache import (
    CARGO_LAMBDA_RELEASE,
    build_key,
    cache_root,
    cached,
    locked,
    require,
    require_rust,
    versions,
)
from devstack.build_cache import run as _run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RUST_FIXTURE = FIXTURES / "rust_lambda"
GO_FIXTURE = FIXTURES / "go_lambda"
#: The Go fixture's main packages, one bundle each.
GO_BUNDLES = ("echo", "error", "panic", "deadline", "stream", "sigterm", "readerror")
#: The README's recipes, run as they are written there.
RUST_RELEASE = CARGO_LAMBDA_RELEASE
RUST_UNWIND = ("cargo", "lambda", "build", "--profile", "unwind", "--output-format", "zip",
               "--locked")
GO_BUILD = ("go", "build", "-tags", "lambda.norpc", "-o", "bootstrap")
GO_ENV = {"GOOS": "linux", "GOARCH": "amd64", "CGO_ENABLED": "0"}
ZIP = ("zip", "-q", "bootstrap.zip", "bootstrap")
#: The emulator's tags are not semver; the proxy serves commits as pseudo-versions.
RIE_PACKAGE = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"
RIE_VERSION = "v0.0.0-20261030222936-bef5c4ba774d"


@dataclass(frozen=True)
class Bundle:
    """A bundle as its toolchain zipped it, and the same unpacked (its `bootstrap` executable)."""

    zip: Path
    folder: Path


@dataclass(frozen=True)
class RustBundles:
    """The Rust fixture with panics aborting (cargo-lambda's default) and unwinding."""

    abort: Bundle
    unwind: Bundle


def _unpacked(zip_path: Path) -> Bundle:
    """The zip next to its contents, unpacked by Info-ZIP (which keeps the modes it records)."""
    folder = zip_path.parent / "bundle"
    _run(["unzip", "-q", "-o", str(zip_path), "-d", str(folder)])
    return Bundle(zip_path, folder)


# --- Rust ---------------------------------------------------------------------------------------

def rust_bundles() -> RustBundles:
    """The `lambda_runtime` fixture, built with cargo-lambda both ways (cached)."""
    require_rust()
    key = build_key(*RUST_RELEASE, *RUST_UNWIND,
                    *versions(["rustc", "-V"], ["cargo", "lambda", "--version"]),
                    trees=[RUST_FIXTURE])
    dest = cached("rust-lambda", key, _build_rust)
    return RustBundles(abort=_bundle_in(dest / "abort"), unwind=_bundle_in(dest / "unwind"))


def _bundle_in(folder: Path) -> Bundle:
    return Bundle(folder / "bootstrap.zip", folder / "bundle")


def _build_rust(dest: Path) -> None:
    target = cache_root() / "cargo-target"
    built = target / "lambda" / "lambda-fixture" / "bootstrap.zip"
    # One target dir for every build of the fixture: dependencies compile once per profile.
    with locked(target.with_name("cargo-target.lock")):
        for variant, command in (("abort", RUST_RELEASE), ("unwind", RUST_UNWIND)):
            _run(command, cwd=RUST_FIXTURE, env={"CARGO_TARGET_DIR": str(target)})
            (dest / variant).mkdir()
            shutil.copy2(built, dest / variant / "bootstrap.zip")
            _unpacked(dest / variant / "bootstrap.zip")


# --- Go -----------------------------------------------------------------------------------------

def _require_go() -> None:
    require("go", "install Go 1.26 or later (https://go.dev/dl) and put it on PATH")


def go_bundles() -> dict[str, Bundle]:
    """Each `aws-lambda-go` fixture by package name (cached)."""
    _require_go()
    key = build_key(*GO_BUILD, *ZIP, repr(sorted(GO_ENV.items())),
                    *versions(["go", "version"]), trees=[GO_FIXTURE])
    dest = cached("go-lambda", key, _build_go)
    return {name: _bundle_in(dest / name) for name in GO_BUNDLES}


def _build_go(dest: Path) -> None:
    for name in GO_BUNDLES:
        out = dest / name
        out.mkdir()
        _run([*GO_BUILD[:-1], str(out / "bootstrap"), f"./{name}"], cwd=GO_FIXTURE, env=GO_ENV)
        _run(ZIP, cwd=out)
        (out / "bootstrap").unlink()
        _unpacked(out / "bootstrap.zip")


# --- The Runtime Interface Emulator -------------------------------------------------------------

def rie() -> Path:
    """`aws-lambda-rie`, built from the Go module proxy (cached)."""
    _require_go()
    key = build_key(RIE_PACKAGE, RIE_VERSION, *versions(["go", "version"]))
    return cached("aws-lambda-rie", key, _build_rie) / "aws-lambda-rie"


def _build_rie(dest: Path) -> None:
    _run(["go", "install", "-ldflags", "-s -w", f"{RIE_PACKAGE}@{RIE_VERSION}"],
         env={"GOBIN": str(dest), "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"})


def main() -> None:
    """Build (or find in the cache) every fixture, before the tests: a cold Rust build takes
    minutes, more than one test's timeout."""
    for name, build in (("aws-lambda-rie", rie), ("go fixtures", go_bundles),
                        ("rust fixtures", rust_bundles),
                        ("rust/polars sample", transfer_stats.build)):
        started = time.monotonic()
        build()
        sys.stdout.write(f"{name}: ready in {time.monotonic() - started:.1f} s\n")


if __name__ == "__main__":
    main()
