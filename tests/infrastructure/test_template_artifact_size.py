"""scripts/artifact_size.py: function plus layers, unzipped, against Lambda's 250 MB.

Build directories are laid out as `sam build` writes them; big files are sparse, so a test
"weighing" 250 MB uses no disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.settings import LAMBDA_UNZIPPED_LIMIT
from scripts import artifact_size

MIB = 1024 * 1024
BUILT_TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  RunnerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: RunnerFunction
      Handler: runner.app.lambda_handler
      Runtime: python3.13
      Layers:
      - !Ref NodeRuntimeLayer
  NodeRuntimeLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: NodeRuntimeLayer
"""


def sparse(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(size)


@pytest.fixture
def build_dir(tmp_path: Path) -> Path:
    build = tmp_path / "build"
    build.mkdir()
    (build / "template.yaml").write_text(BUILT_TEMPLATE)
    return build


def test_function_and_its_layers_are_added_up(build_dir: Path) -> None:
    sparse(build_dir / "RunnerFunction" / "runner" / "app.py", 3 * MIB)
    sparse(build_dir / "RunnerFunction" / "pydantic_core" / "core.so", 5 * MIB)
    sparse(build_dir / "NodeRuntimeLayer" / "bin" / "node", 100 * MIB)

    [size] = artifact_size.measure(build_dir)

    assert size.name == "RunnerFunction"
    assert [(p.name, p.kind, p.bytes) for p in size.parts] == [
        ("RunnerFunction", "function", 8 * MIB), ("NodeRuntimeLayer", "layer", 100 * MIB)]
    assert size.total == 108 * MIB


def test_linked_files_count_as_what_they_point_to(build_dir: Path) -> None:
    sparse(build_dir / "NodeRuntimeLayer" / "bin" / "node", 10 * MIB)
    (build_dir / "NodeRuntimeLayer" / "bin" / "nodejs").symlink_to("node")
    (build_dir / "RunnerFunction").mkdir()

    [size] = artifact_size.measure(build_dir)

    assert size.parts[1].bytes == 20 * MIB


def test_main_prints_the_sizes_and_passes_at_the_limit(
        build_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sparse(build_dir / "RunnerFunction" / "big", LAMBDA_UNZIPPED_LIMIT - 50 * MIB)
    sparse(build_dir / "NodeRuntimeLayer" / "big", 50 * MIB)

    assert artifact_size.main([str(build_dir)]) == artifact_size.EXIT_OK

    out = capsys.readouterr().out
    assert "RunnerFunction (function): 200.0 MiB" in out
    assert "+ NodeRuntimeLayer (layer): 50.0 MiB" in out
    limit = f"{LAMBDA_UNZIPPED_LIMIT} bytes"
    assert f"250.0 MiB ({limit}) of 250.0 MiB ({limit}): OK" in out


def test_main_fails_above_the_limit(build_dir: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    sparse(build_dir / "RunnerFunction" / "big", 200 * MIB)
    sparse(build_dir / "NodeRuntimeLayer" / "big", 50 * MIB + 1)

    assert artifact_size.main([str(build_dir)]) == artifact_size.EXIT_TOO_LARGE

    assert "OVER THE LIMIT" in capsys.readouterr().out


def test_a_missing_build_is_its_own_failure(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert artifact_size.main([str(tmp_path / "nothing")]) == artifact_size.EXIT_NO_BUILD

    assert "run `sam build` first" in capsys.readouterr().err


def test_a_layer_outside_the_build_cannot_be_measured(build_dir: Path) -> None:
    (build_dir / "template.yaml").write_text(BUILT_TEMPLATE.replace(
        "- !Ref NodeRuntimeLayer", "- arn:aws:lambda:us-east-1:123456789012:layer:other:1"))
    (build_dir / "RunnerFunction").mkdir()

    with pytest.raises(artifact_size.BuildError, match="cannot measure"):
        artifact_size.measure(build_dir)

