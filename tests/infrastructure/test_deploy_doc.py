"""docs/deploy.md works as written: one non-interactive `sam deploy` naming every parameter the
template requires, a smoke test, a teardown, a cost note; and no page suggests writing a token
or keys to a file.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from samcli.cli.types import CfnParameterOverridesType

from tests.infrastructure.test_template_samconfig import PARAMETERS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = (ROOT / "docs" / "deploy.md").read_text()
_FENCE = re.compile(r"^```\w*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def commands(markdown: str) -> list[list[str]]:
    """Every shell command of the page's code blocks, continuation lines joined, comments cut."""
    found = []
    for block in _FENCE.findall(markdown):
        for line in block.replace("\\\n", " ").splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # not shell (Python, JSON)
                continue
            if words:
                found.append(words)
    return found


def sam_deploys(markdown: str) -> list[list[str]]:
    return [words for words in commands(markdown) if words[:2] == ["sam", "deploy"]]


def one_command() -> list[str]:
    complete = [words for words in sam_deploys(DEPLOY) if "--parameter-overrides" in words]
    assert len(complete) == 1, complete
    return complete[0]


def overrides(words: list[str]) -> dict[str, str]:
    start = words.index("--parameter-overrides") + 1
    end = next((i for i in range(start, len(words)) if words[i].startswith("--")), len(words))
    return CfnParameterOverridesType().convert(" ".join(words[start:end]), None, None)  # type: ignore[no-any-return]


def test_one_sam_deploy_needs_no_answers() -> None:
    words = one_command()
    assert "--guided" not in words
    assert "--no-confirm-changeset" in words
    assert words[words.index("--capabilities") + 1] == "CAPABILITY_IAM"
    assert {"--stack-name", "--region", "--resolve-s3"} <= set(words)


def test_the_one_command_gives_every_required_parameter_a_value_cloudformation_accepts() -> None:
    given = overrides(one_command())
    required = {name for name, spec in PARAMETERS.items() if "Default" not in spec}
    assert required <= set(given) <= set(PARAMETERS), (required - set(given), set(given))
    for name, value in given.items():
        spec = PARAMETERS[name]
        if "AllowedValues" in spec:
            assert value in [str(v) for v in spec["AllowedValues"]], (name, value)
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), (name, value)
        if "MinValue" in spec:
            assert spec["MinValue"] <= int(value) <= spec["MaxValue"], (name, value)


def test_a_smoke_test_invokes_the_alias_and_expects_a_structured_result() -> None:
    invokes = [words for words in commands(DEPLOY) if words[:3] == ["aws", "lambda", "invoke"]]
    assert invokes
    assert "RunnerFunctionAliasArn" in DEPLOY
    assert "Task.InvalidPayload" in DEPLOY.split('id="smoke-test"')[1].split("\n## ")[0]


def test_teardown_deletes_the_stack_without_prompting() -> None:
    deletes = [words for words in commands(DEPLOY) if words[:2] == ["sam", "delete"]]
    assert deletes
    assert all("--no-prompts" in words for words in deletes)


def test_the_cost_note_covers_memory_duration_and_tenant_cold_starts() -> None:
    note = DEPLOY.split('id="cost"')[1].split("\n## ")[0]
    for topic in ("Memory", "Duration", "Tenant cold starts", "GB-second"):
        assert topic in note


#: What must never be written to a file: the output of the commands that print tokens or the
#: local stack's keys, and anything named like a secret.
_SECRET_SOURCES = re.compile(r"udf-runner (token|devstack)|TOKEN|SECRET|ACCESS_KEY|credentials",
                             re.IGNORECASE)


def writes_a_file(words: list[str]) -> bool:
    """Whether the command redirects its output into a file (or through `tee`)."""
    for index, word in enumerate(words):
        redirect = word.lstrip("0123456789&")
        if word == "tee":
            return True
        if redirect.startswith(">"):
            target = redirect.lstrip(">") or (words[index + 1] if index + 1 < len(words) else "")
            if not target.startswith(("/dev/", "&")):
                return True
    return False


def suggests_writing_a_secret(words: list[str]) -> bool:
    return bool(_SECRET_SOURCES.search(" ".join(words))) and writes_a_file(words)


@pytest.mark.parametrize("page", [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_page_suggests_writing_a_secret_to_a_file(page: Path) -> None:
    for words in commands(page.read_text()):
        assert not suggests_writing_a_secret(words), " ".join(words)


@pytest.mark.parametrize(("line", "secret"), [
    ("udf-runner token events/provided-success.json > /tmp/task.json", True),
    ("udf-runner devstack >> env.sh", True),
    ("echo $AWS_SECRET_ACCESS_KEY | tee keys.txt", True),
    ("udf-runner token events/timeout.json >/tmp/task.json", True),
    ("udf-runner token events/timeout.json | sam local invoke -e -", False),
    ("aws lambda invoke --function-name f --payload '{}' /dev/stdout 2>&1", False),
    ("sam pipeline bootstrap --github-org <org> --oidc-provider-url https://token.x", False),
])
def test_the_secret_check(line: str, secret: bool) -> None:
    assert suggests_writing_a_secret(shlex.split(line)) is secret
