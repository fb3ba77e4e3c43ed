"""The task payload is strict; the exported schemas are current."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runner import schema
from runner.models import TaskPayload
from tests.support.payloads import payload

ROOT = Path(__file__).resolve().parents[3]


def test_a_valid_payload_parses_with_defaults() -> None:
    parsed = TaskPayload.model_validate(payload())

    assert parsed.inputs.queries == {}
    assert parsed.outputs is None
    assert parsed.env == {}


def test_the_token_is_never_shown_in_the_model() -> None:
    parsed = TaskPayload.model_validate(payload())

    assert parsed.capability_token.get_secret_value() not in repr(parsed)
    assert parsed.capability_token.get_secret_value() not in str(parsed.model_dump())


@pytest.mark.parametrize(("change", "field"), [
    ({"surprise": 1}, "surprise"),
    ({"schema_version": 2}, "schema_version"),
    ({"attempt": "1"}, "attempt"),
    ({"attempt": 0}, "attempt"),
    ({"timeout_ms": 0}, "timeout_ms"),
    ({"timeout_ms": 900_001}, "timeout_ms"),
    ({"task_id": "../etc"}, "task_id"),
    ({"env": {"AWS_SECRET_ACCESS_KEY": "x"}}, "env"),
    ({"env": {"aws_region": "x"}}, "env"),
    ({"env": {"LD_PRELOAD": "/x.so"}}, "env"),
    ({"env": {"NODE_OPTIONS": "--inspect"}}, "env"),
    ({"env": {"NODE_OPTIONS": "--enable-source-maps --require /tmp/x.js"}}, "env"),
    ({"env": {"NODE_OPTIONS": "--max-old-space-size=100000"}}, "env"),
    ({"env": {"_HANDLER": "x"}}, "env"),
    ({"env": {"TRACE_TASK_ID": "x"}}, "env"),
    ({"env": {"PATH": "/tmp"}}, "env"),
    ({"env": {"BIG": "x" * 4096, "MORE": "y"}}, "env"),
    ({"env": {"1BAD": "x"}}, "env"),
    ({"outputs": {"s3_prefix": "s3://udf-outputs/no-trailing-slash"}}, "outputs"),
    ({"inputs": {"datasets": ["Bad Name"]}}, "inputs"),
    ({"inputs": {"queries": {"q": ""}}}, "inputs"),
])
def test_invalid_payloads_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TaskPayload.model_validate(payload(**change))

    assert field in str(caught.value)


@pytest.mark.parametrize(("bundle", "field"), [
    ({"sha256": "AB" * 32}, "sha256"),
    ({"sha256": "ab" * 31}, "sha256"),
    ({"uri": "https://udf-bundles/acme/b.zip"}, "uri"),
    ({"uri": "s3://udf-bundles/"}, "uri"),
    ({"uri": "s3://Bad_Bucket/key"}, "uri"),
    ({"runtime": "python3.13"}, "runtime"),
    ({"runtime": "nodejs"}, "handler"),
    ({"runtime": "nodejs", "handler": "index"}, "handler"),
    ({"runtime": "nodejs", "handler": "../index.handler"}, "handler"),
    ({"handler": "/abs.handler"}, "handler"),
    ({"extra": True}, "extra"),
])
def test_invalid_bundle_references_are_rejected(bundle: dict[str, Any], field: str) -> None:
    base = payload()["bundle"] | bundle
    with pytest.raises(ValidationError) as caught:
        TaskPayload.model_validate(payload(bundle=base))

    assert field in str(caught.value)


def test_node_options_may_turn_source_maps_on() -> None:
    parsed = TaskPayload.model_validate(payload(env={"NODE_OPTIONS": "--enable-source-maps"}))

    assert parsed.env == {"NODE_OPTIONS": "--enable-source-maps"}


def test_a_refused_node_option_is_named() -> None:
    with pytest.raises(ValidationError) as caught:
        TaskPayload.model_validate(payload(env={"NODE_OPTIONS": "--enable-source-maps --inspect"}))

    assert "NODE_OPTIONS may hold only --enable-source-maps, not --inspect" in str(caught.value)


def test_a_nested_node_handler_is_accepted() -> None:
    bundle = payload()["bundle"] | {"runtime": "nodejs", "handler": "src/handlers/alert.handler"}

    assert TaskPayload.model_validate(payload(bundle=bundle)).bundle.handler == \
        "src/handlers/alert.handler"


@pytest.mark.parametrize(("bundle", "outputs", "accepted"), [
    ({"uri": "s3://udf-bundles/" + "k" * 1024}, None, True),
    ({"uri": "s3://udf-bundles/" + "k" * 1025}, None, False),
    ({"uri": "s3://udf-bundles/a\n.zip"}, None, False),
    ({"uri": "s3://udf-bundles/a.zip\n"}, None, False),
    ({}, {"s3_prefix": "s3://udf-outputs/" + "p" * 1023 + "/"}, True),
    ({}, {"s3_prefix": "s3://udf-outputs/" + "p" * 1024 + "/"}, False),
    ({}, {"s3_prefix": "s3://udf-outputs/"}, True),
    ({"handler": "h" * 128}, None, True),
    ({"handler": "h" * 129}, None, False),
    ({"handler": "index.handler\n"}, None, False),
])
def test_uri_keys_and_handlers_are_bounded(bundle: dict[str, Any], outputs: dict[str, str] | None,
                                           accepted: bool) -> None:
    """S3's 1,024-character keys and the 128-character handler, checked apart from the patterns
    (whose counted repetitions were slow to compile); no trailing newline slips through."""
    change: dict[str, Any] = {"bundle": payload()["bundle"] | bundle}
    if outputs is not None:
        change["outputs"] = outputs
    if accepted:
        TaskPayload.model_validate(payload(**change))
    else:
        with pytest.raises(ValidationError):
            TaskPayload.model_validate(payload(**change))


def test_committed_json_schemas_are_current() -> None:
    for name, text in schema.render().items():
        committed = (ROOT / "schemas" / name).read_text()
        assert committed == text, f"schemas/{name} is stale: run python -m runner.schema"
