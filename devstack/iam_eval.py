"""IAM policy statement evaluation with AWS's semantics, for the embedded S3 (moto) to enforce.

moto 5.2.5 enforces identity policies when its IAM auth is on, but evaluates statements in ways
that would widen the minter's scoped credentials:

- Action and Resource patterns are used as regular expressions with only `*` translated, so a
  `.`, `+` or `|` in an object key acts as a regex operator;
- condition operators other than StringEquals are ignored, so `ListBucket` limited by an
  `s3:prefix` StringLike condition lists the whole bucket; and S3 requests pass no condition
  context at all;
- a condition that does not hold is an explicit Deny, overriding every other statement.

`evaluate` implements the documented semantics for the subset the minter's policies, role trust
policies and the admin policy use (Action/NotAction, Resource/NotResource, AWS principals, string
condition operators, `...IfExists`); an unsupported condition operator never matches. `install`
(run inside the moto process only) puts it in place of moto's statement check and gives S3 list
requests their `s3:prefix` context.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

Verdict = Literal["allow", "deny"] | None

_CONTEXT: ContextVar[Mapping[str, str] | None] = ContextVar("iam_condition_context",
                                                            default=None)


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    # IAM wildcards: `*` is any run of characters (slashes included), `?` is one character;
    # everything else is literal.
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


_STRING_OPERATORS: dict[str, Callable[[str, list[str]], bool]] = {
    "StringEquals": lambda actual, expected: actual in expected,
    "StringNotEquals": lambda actual, expected: actual not in expected,
    "StringEqualsIgnoreCase": lambda actual, expected: actual.lower() in
    {value.lower() for value in expected},
    "StringNotEqualsIgnoreCase": lambda actual, expected: actual.lower() not in
    {value.lower() for value in expected},
    "StringLike": lambda actual, expected: any(_glob(value).fullmatch(actual)
                                               for value in expected),
    "StringNotLike": lambda actual, expected: not any(_glob(value).fullmatch(actual)
                                                      for value in expected),
}
# A key missing from the request makes a negated operator true and any other operator false.
_NEGATED = frozenset({"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike"})


def evaluate(statement: Mapping[str, Any], *, action: str, resource: str,
             principal: str | None = None, context: Mapping[str, str] | None = None) -> Verdict:
    """What one policy statement says about a request: "allow", "deny", or None (not concerned)."""
    applies = (
        _matches(statement, "Action", action, ignore_case=True)
        and _principal_matches(statement.get("Principal"), principal)
        and _matches(statement, "Resource", resource, ignore_case=False)
        and _conditions_hold(statement.get("Condition") or {}, context or {})
    )
    if not applies:
        return None
    return "allow" if statement.get("Effect") == "Allow" else "deny"


def s3_context(path_and_query: str) -> dict[str, str]:
    """The condition keys an S3 request supplies that the minter's policies use (`s3:prefix`)."""
    query = parse_qs(urlsplit(path_and_query).query, keep_blank_values=True)
    return {"s3:prefix": query["prefix"][0]} if "prefix" in query else {}


def install() -> None:
    """Make moto (in this process) evaluate statements with `evaluate`."""
    from moto.iam.access_control import (  # noqa: PLC0415 - moto exists only in its own process
        IAMPolicyStatement,
        PermissionResult,
        S3IAMRequest,
    )

    results = {"allow": PermissionResult.PERMITTED, "deny": PermissionResult.DENIED,
               None: PermissionResult.NEUTRAL}

    def is_action_permitted(self: Any, action: str, resource: str = "*",
                            principal: str | None = None,
                            incoming_condition_values: Mapping[str, str] | None = None) -> Any:
        context = (incoming_condition_values if incoming_condition_values is not None
                   else _CONTEXT.get())
        return results[evaluate(self._statement, action=action, resource=resource,
                                principal=principal, context=context)]

    check_s3 = S3IAMRequest.check_action_permitted

    def check_action_permitted(self: Any, resource: str) -> None:
        token = _CONTEXT.set(s3_context(self._path))
        try:
            check_s3(self, resource)
        finally:
            _CONTEXT.reset(token)

    # Replacing moto's own evaluation is the point (it runs only in the moto process).
    IAMPolicyStatement.is_action_permitted = is_action_permitted  # type: ignore[method-assign]
    S3IAMRequest.check_action_permitted = check_action_permitted  # type: ignore[method-assign]


def _matches(statement: Mapping[str, Any], element: str, value: str, *, ignore_case: bool) -> bool:
    if element in statement:
        return _any_glob(statement[element], value, ignore_case)
    if f"Not{element}" in statement:
        return not _any_glob(statement[f"Not{element}"], value, ignore_case)
    return element == "Resource"  # trust policies name no resource


def _any_glob(patterns: str | list[str], value: str, ignore_case: bool) -> bool:
    values = [patterns] if isinstance(patterns, str) else patterns
    return any(_glob(pattern, ignore_case).fullmatch(value) for pattern in values)


def _principal_matches(expected: Any, principal: str | None) -> bool:
    if expected is None:
        return True  # an identity policy: the principal is whoever holds it
    if expected == "*":
        return True
    if principal is None or not isinstance(expected, Mapping):
        return False
    named = expected.get("AWS", [])
    names = [named] if isinstance(named, str) else list(named)
    account = principal.split(":")[4] if principal.count(":") >= 5 else None
    return any(name in ("*", principal, account, f"arn:aws:iam::{account}:root")
               for name in names)


def _conditions_hold(conditions: Mapping[str, Mapping[str, Any]],
                     context: Mapping[str, str]) -> bool:
    context = {key.lower(): value for key, value in context.items()}  # keys ignore case
    for operator, tests in conditions.items():
        base, if_exists = operator.removesuffix("IfExists"), operator.endswith("IfExists")
        compare = _STRING_OPERATORS.get(base)
        if compare is None:
            return False
        for key, expected in tests.items():
            values = [expected] if isinstance(expected, str) else list(expected)
            actual = context.get(key.lower())
            if actual is None:
                if not (if_exists or base in _NEGATED):
                    return False
            elif not compare(actual, values):
                return False
    return True
