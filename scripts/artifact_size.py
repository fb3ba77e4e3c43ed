"""Print the unzipped size of every built function with its layers; fail above Lambda's limit.

    python scripts/artifact_size.py [BUILD_DIR]      (default: .aws-sam/build)

Lambda refuses a function whose code and layers take more than 250 MB unzipped, and says so only
at deploy time. This reads the template `sam build` wrote into BUILD_DIR to learn which layers
each function uses, adds up the files of the function's and its layers' build directories, and
exits 1 when a sum is over the limit (2 when the build is missing or unreadable).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

from runner.settings import LAMBDA_UNZIPPED_LIMIT

EXIT_OK, EXIT_TOO_LARGE, EXIT_NO_BUILD = 0, 1, 2
_FUNCTION_TYPES = {"AWS::Serverless::Function", "AWS::Lambda::Function"}
_LAYER_TYPES = {"AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"}
_MB = 1024 * 1024


class BuildError(Exception):
    """The build directory or its template is missing or not what `sam build` writes."""


@dataclass(frozen=True)
class Part:
    """One directory of a function's deployment: its own code or a layer."""

    name: str
    kind: str
    bytes: int


@dataclass(frozen=True)
class FunctionSize:
    """A function with the layers it uses, as Lambda counts them against the limit."""

    name: str
    parts: tuple[Part, ...]

    @property
    def total(self) -> int:
        """Unzipped bytes of the function's code and all its layers."""
        return sum(part.bytes for part in self.parts)


def tree_bytes(root: Path) -> int:
    """Bytes of the regular files under `root`, following file links as `sam package` does."""
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            total += (Path(directory) / name).stat().st_size
    return total


def measure(build_dir: Path) -> list[FunctionSize]:
    """The size of every function `sam build` put in `build_dir`, with its layers."""
    resources = _resources(build_dir / "template.yaml")
    layers = {name: res for name, res in resources.items() if res.get("Type") in _LAYER_TYPES}
    sizes = []
    for name, resource in resources.items():
        if resource.get("Type") not in _FUNCTION_TYPES:
            continue
        props = resource.get("Properties", {})
        parts = [Part(name, "function", tree_bytes(_code_dir(build_dir, name, props)))]
        for layer in _layer_refs(name, props):
            if layer not in layers:
                raise BuildError(f"{name} uses {layer}, which this build does not contain")
            layer_props = layers[layer].get("Properties", {})
            parts.append(Part(layer, "layer", tree_bytes(_code_dir(build_dir, layer, layer_props))))
        sizes.append(FunctionSize(name, tuple(parts)))
    return sizes


def report(sizes: Sequence[FunctionSize], limit: int = LAMBDA_UNZIPPED_LIMIT) -> Iterator[str]:
    """Lines describing `sizes` against `limit`."""
    for size in sizes:
        for i, part in enumerate(size.parts):
            prefix = "" if i == 0 else "  + "
            yield f"{prefix}{part.name} ({part.kind}): {_mb(part.bytes)}"
        verdict = "OK" if size.total <= limit else "OVER THE LIMIT"
        yield (f"  = {size.name} unzipped, function plus layers: {_mb(size.total)} "
               f"({size.total} bytes) of {_mb(limit)} ({limit} bytes): {verdict}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: print the report, return the exit status."""
    args = sys.argv[1:] if argv is None else argv
    build_dir = Path(args[0] if args else ".aws-sam/build")
    try:
        sizes = measure(build_dir)
    except BuildError as e:
        sys.stderr.write(f"artifact_size: {e}\n")
        return EXIT_NO_BUILD
    if not sizes:
        sys.stderr.write(f"artifact_size: no function in {build_dir / 'template.yaml'}\n")
        return EXIT_NO_BUILD
    sys.stdout.writelines(line + "\n" for line in report(sizes))
    over = any(size.total > LAMBDA_UNZIPPED_LIMIT for size in sizes)
    return EXIT_TOO_LARGE if over else EXIT_OK


def _resources(template: Path) -> Mapping[str, Any]:
    if not template.is_file():
        raise BuildError(f"{template} not found: run `sam build` first")
    document, problems = decode(str(template))
    if problems or not isinstance(document, dict):
        raise BuildError(f"{template} is not a readable template: {problems}")
    resources = document.get("Resources", {})
    if not isinstance(resources, dict):
        raise BuildError(f"{template} has no Resources mapping")
    return resources


def _code_dir(build_dir: Path, name: str, props: Mapping[str, Any]) -> Path:
    uri = props.get("CodeUri", props.get("ContentUri"))
    if not isinstance(uri, str):
        raise BuildError(f"{name} has no local build directory (CodeUri/ContentUri: {uri!r})")
    path = build_dir / uri
    if not path.is_dir():
        raise BuildError(f"{name}: {path} is not a directory")
    return path


def _layer_refs(name: str, props: Mapping[str, Any]) -> list[str]:
    refs = []
    for layer in props.get("Layers", []):
        if not (isinstance(layer, dict) and isinstance(layer.get("Ref"), str)):
            raise BuildError(f"{name} uses a layer this build cannot measure: {layer!r}")
        refs.append(layer["Ref"])
    return refs


def _mb(n: int) -> str:
    return f"{n / _MB:.1f} MiB"


if __name__ == "__main__":
    sys.exit(main())
