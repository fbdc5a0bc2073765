"""Admission-time validation as the CRDs carry it: CEL rules (x-kubernetes-validations) in plain words.

Every check a user can fail is a CEL rule with a message, never an OpenAPI `pattern` (the API server
prints a pattern as a raw regular expression) nor an `enum` or a tight `maxLength` (the API server counts
those as "blocking": it then skips every CEL rule and adds "some validation rules were not checked",
hiding the other mistakes). A message is a predicate, e.g. "must be an AWS region such as us-east-1":
crdgen prefixes the path of the field, so it reads "spec.region must be an AWS region such as us-east-1".
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pydantic import Field, JsonValue

Rule = dict[str, JsonValue]


def cel_string(text: str) -> str:
    """`text` as a CEL string literal (regular expressions keep their backslashes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def rule(expr: str, message: str, *, field: str = "", reason: str = "", dynamic: bool = False) -> Rule:
    """One CEL rule. `message` is a predicate that crdgen prefixes with the path of the field (`field`,
    relative to the object the rule is on, when the rule is on a parent: CEL transition rules and rules
    across fields must be). `dynamic`: `message` is a CEL expression for a string (messageExpression)."""
    out: Rule = {"rule": expr, ("messageExpression" if dynamic else "message"): message}
    if field:
        out["fieldPath"] = field
    if reason:
        out["reason"] = reason
    return out


def ceiling(limit: int) -> int:
    """maxLength/maxItems/maxProperties for a field whose real limit is `limit`, checked by a CEL rule.

    CEL's cost estimation needs every string and list bounded, but a value over the bound is refused
    before CEL runs, without the rule's words (and the API server skips every other rule, see above).
    Twice the real limit keeps the bound where only an absurd value meets it."""
    return 2 * limit


@dataclass(frozen=True)
class Syntax:
    """What a kind of string field accepts: an RE2 regular expression (as CEL's matches() takes it), the
    same in words, and the length limit the words state ("{max}" in them is replaced by it)."""

    regex: str
    words: str
    max_length: int
    measured: str = "self"  # the part of the value whose length is limited (e.g. the name in an ARN)

    def limited(self, max_length: int) -> Syntax:
        return replace(self, max_length=max_length)

    def check(self, value: str = "self") -> str:
        """CEL: `value` is well-formed."""
        measured = self.measured.replace("self", value)
        sized = f"size({measured}) >= 1 && size({measured}) <= {self.max_length}"
        return f"{sized} && {value}.matches({cel_string(self.regex)})"

    def rule(self) -> Rule:
        return rule(self.check(), f"must be {self.words.format(max=self.max_length)}")


def _checked(syntax: Syntax, rules: tuple[Rule, ...]) -> dict[str, Any]:
    return {
        "max_length": ceiling(syntax.max_length),
        "json_schema_extra": {"x-kubernetes-validations": [syntax.rule(), *rules]},
    }


def text(description: str, syntax: Syntax, *rules: Rule, default: Any = None, alias: str | None = None) -> Any:
    """A string field checked against `syntax` (and `rules`) at admission. Pass default=... if required, and
    alias= where camelCase would spell the name otherwise (maxTTL)."""
    return Field(default, description=description, alias=alias, **_checked(syntax, rules))


def item(description: str, syntax: Syntax) -> Any:
    """The same for the strings in a list: list[Annotated[str, item(...)]]."""
    return Field(description=description, **_checked(syntax, ()))


def items(description: str, limit: int) -> Any:
    """A list field of at most `limit` items (a CEL rule, see ceiling)."""
    return Field(
        None,
        description=description,
        max_length=ceiling(limit),
        json_schema_extra={
            "x-kubernetes-validations": [rule(f"size(self) <= {limit}", f"must have at most {limit} entries")]
        },
    )


def exactly_one(*fields: str) -> Rule:
    """Exactly one of `fields` (of the object the rule is on) is set."""
    has = ", ".join(f"has(self.{f})" for f in fields)
    return rule(f"[{has}].filter(x, x).size() == 1", f"must set exactly one of {', '.join(fields)}")


IMMUTABLE = rule("self == oldSelf", "is immutable")


def fixed_once_created(name: str) -> Rule:
    """Optional field `name` cannot be added, changed or removed on update. On the parent: a transition
    rule on an optional field itself runs only when both the old and the new object have it."""
    expr = f"has(self.{name}) == has(oldSelf.{name}) && (!has(self.{name}) || self.{name} == oldSelf.{name})"
    return rule(expr, "is immutable: it cannot be added, changed or removed after creation", field=f".{name}")


def one_of_words(values: list[Any]) -> str:
    """'a, b or c'."""
    words = [str(v) for v in values]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def enum_rule(values: list[Any]) -> Rule:
    """An enum as a CEL rule: a value outside an OpenAPI enum is a blocking error (see above)."""
    listed = ", ".join(cel_string(v) if isinstance(v, str) else str(v) for v in values)
    return rule(f"self in [{listed}]", f"must be {one_of_words(values)}")


def is_set(path: str) -> str:
    """CEL: every step of `path` (e.g. 'self.source.latestSnapshot.endpoint') is set."""
    parts = path.split(".")
    return " && ".join(f"has({'.'.join(parts[: i + 1])})" for i in range(1, len(parts)))
