"""Nothing the bundle writes is lost when it answers: the runner keeps reading the child's
output until the runtime is back in `next`, has exited or closed its pipes (bounded by
`UDF_RUNNER_LOG_FLUSH_GRACE_MS`), and says how much it dropped when it could not keep it all.

Node's console records reach the runner synchronously through Lambda's telemetry log frames;
a plain-Python bootstrap's buffered prints arrive only as it exits, after its answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.settings import Settings
from tests.support import fixture_bundles
from tests.support.fixture_bundles import FIXTURES, Run

LAYER = FIXTURES.parent.parent / "layers" / "nodejs" / "build"
CHATTY = FIXTURES / "node" / "handlers" / "chatty"
UNFLUSHED = FIXTURES / "python_unflushed"
LIFECYCLE = fixture_bundles.bash_bundle("lifecycle")


@pytest.fixture
def node_settings(work_root: Path) -> Settings:
    if not (LAYER / "bin" / "node").exists():
        pytest.fail("the Node layer is not built: run `make setup`", pytrace=False)
    return Settings.from_env({"UDF_RUNNER_WORK_ROOT": str(work_root),
                              "UDF_RUNNER_NODE_LAYER": str(LAYER)})


def _chatty(settings: Settings, lines: int, *, raw: bool = False) -> Run:
    event = json.dumps({"lines": lines, "raw": raw}).encode()
    return fixture_bundles.invoke(CHATTY, settings, runtime="nodejs", handler="index.handler",
                                  event=event, timeout_ms=30_000)


def _numbered(run: Run, lines: int) -> list[int]:
    """The line numbers of the chatty fixture's lines that reached the log stream, in order."""
    marker = f" of {lines}"
    return [int(text.rpartition("line ")[2].split()[0]) for text in run.printed("")
            if marker in text]


def _accounted(run: Run) -> int:
    """Bytes printed minus those delivered and those reported dropped (0 or, when the last
    delivered piece was cut, -1 for its missing newline)."""
    logs = run.result.logs
    delivered = sum(len(line.partition("] ")[2].encode()) + 1 for line in run.lines)
    return logs.bytes - logs.dropped_bytes - delivered


def test_3000_console_lines_of_a_node_handler_all_reach_the_log_stream(
        node_settings: Settings) -> None:
    run = _chatty(node_settings, 3000)

    assert run.response == {"printed": 3000}
    assert _numbered(run, 3000) == list(range(3000))
    logs = run.result.logs
    assert (logs.truncated, logs.dropped_bytes) == (False, 0)
    assert logs.tail.endswith(f"line 2999 of 3000 {'x' * 40}\n")
    assert _accounted(run) == 0


def test_node_output_over_the_keep_limit_is_truncated_with_the_dropped_byte_count(
        node_settings: Settings) -> None:
    lines = 20_000  # about 1.2 MB straight to process.stdout, over the 1 MiB kept
    run = _chatty(node_settings, lines, raw=True)

    logs = run.result.logs
    assert logs.truncated is True
    assert logs.dropped_bytes > 0
    assert _accounted(run) in (0, -1)
    numbers = _numbered(run, lines)
    assert numbers == list(range(len(numbers)))  # a prefix, in order, nothing skipped


@pytest.mark.parametrize("after", ["exit", "next"])
def test_an_unflushed_python_bootstrap_loses_no_line(settings: Settings, after: str) -> None:
    run = fixture_bundles.invoke(UNFLUSHED, settings, handler=after)

    assert run.response == {"printed": 3000}
    assert run.printed("line ") == [f"{number} of 3000" for number in range(3000)]
    logs = run.result.logs
    assert (logs.truncated, logs.dropped_bytes) == (False, 0)
    assert logs.tail.endswith("line 2999 of 3000\n")


def test_a_runtime_still_writing_when_the_grace_ends_is_reported_truncated(
        work_root: Path) -> None:
    settings = Settings.from_env({"UDF_RUNNER_WORK_ROOT": str(work_root),
                                  "UDF_RUNNER_LOG_FLUSH_GRACE_MS": "100"})

    run = fixture_bundles.invoke(LIFECYCLE, settings, handler="chatty-after-answer")

    assert run.result.status == "succeeded", run.result.error
    assert run.printed("still talking")
    assert run.result.logs.truncated is True
    assert _accounted(run) in (0, -1)

